import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import { type Migrations, migrateToLatest } from './migrations.ts';
import type { Tables } from './tables.ts';
import { isAlive } from '../processes.ts';

export interface Database {
  readonly kysely: Kysely<Tables>;
  readonly kind: 'pglite' | 'postgres';
  /** Where it is, fit to print: the password of a URL is masked. */
  readonly description: string;
  /** Runs one parameterised statement ($1, $2 ...) and returns its rows. */
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<R[]>;
  /**
   * Like query, for a statement the engine runs over and over (once per item): on Postgres
   * it is prepared once per connection, so each run sends only its values.
   */
  queryHot<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<R[]>;
  /**
   * Runs SQL that may hold several statements and no parameters (a library's schema set-up),
   * in turn with every other query.
   */
  script(text: string): Promise<Record<string, unknown>[]>;
  /** The Postgres URL, when on Postgres (a library that wants its own pool connects to it). */
  readonly url?: string;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** A postgres:// URL; without it the embedded database is used. */
  url?: string;
  /** The embedded database's data directory; `memory://` keeps it in memory. */
  dataDir?: string;
  /** Apply missing migrations (default true). */
  migrate?: boolean;
  /** Migrations of the tables the steps own (the registry's), applied with the engine's. */
  migrations?: Migrations;
  /** Postgres pool size (default 10). */
  poolSize?: number;
}

export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres (unparseable URL)';
  }
}

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  const pool = options.url ? await postgresPool(options.url, options.poolSize ?? 10) : undefined;
  const dataDir = options.dataDir ?? 'memory://';
  const unlock = pool || dataDir.startsWith('memory://') ? () => {} : lockDataDir(dataDir);
  let kysely: Kysely<Tables>;
  let embedded: import('@electric-sql/pglite').PGlite | undefined;
  try {
    if (pool) kysely = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
    else ({ kysely, client: embedded } = await pglite(dataDir));
    if (options.migrate !== false) await migrateToLatest(kysely, options.migrations);
  } catch (err) {
    unlock();
    throw err;
  }
  const query = async <R>(text: string, params: readonly unknown[] = []) => (await kysely.executeQuery<R>(CompiledQuery.raw(text, [...params]))).rows as R[];
  const names = new Map<string, string>();
  return {
    kysely,
    kind: pool ? 'postgres' : 'pglite',
    description: options.url ? maskUrl(options.url) : `embedded database at ${options.dataDir ?? 'memory://'}`,
    query,
    queryHot: pool
      ? async <R>(text: string, params: readonly unknown[] = []) => {
          let name = names.get(text);
          if (!name) {
            name = `flows_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
            names.set(text, name);
          }
          return (await pool.query({ name, text, values: [...params] })).rows as R[];
        }
      : query,
    url: options.url,
    script: async (text) => {
      if (pool) {
        const result = (await pool.query(text)) as unknown as { rows: Record<string, unknown>[] } | { rows: Record<string, unknown>[] }[];
        return (Array.isArray(result) ? result.at(-1)?.rows : result.rows) ?? [];
      }
      // PGlite runs a multi-statement script only through exec; holding kysely's connection
      // keeps it from interleaving with a transaction.
      return kysely.connection().execute(async () => (await embedded!.exec(text)).at(-1)?.rows ?? []);
    },
    close: async () => {
      await kysely.destroy();
      unlock();
    },
  };
}

/**
 * The embedded database is one process's: a second one writing the same folder would corrupt
 * it. A lock file holds the owner's pid; a lock whose process is gone is taken over.
 */
function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const lock = join(dataDir, 'flows.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(readFileSync(lock, 'utf8'));
      if (owner && owner !== process.pid && isAlive(owner)) {
        throw new Error(
          `the embedded database at ${dataDir} is in use by process ${owner}; wait for it to finish, ` +
            'or use Postgres (DATABASE_URL) to run several processes at once',
        );
      }
      if (owner === process.pid) throw new Error(`the embedded database at ${dataDir} is already open in this process`);
      rmSync(lock, { force: true });
    }
  }
  throw new Error(`could not lock the embedded database at ${dataDir}`);
}


async function postgresPool(url: string, max: number): Promise<import('pg').Pool> {
  const { default: pg } = await import('pg');
  // Bigint counts come back as numbers: our counts stay far below 2^53.
  pg.types.setTypeParser(20, (v: string) => Number(v));
  const pool = new pg.Pool({ connectionString: url, max });
  // A connection the server closes (a restart, a failover, or one ending while the pool shuts
  // down) must not crash the process: queries on it fail on their own, the pool replaces it.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

async function pglite(dataDir: string): Promise<{ kysely: Kysely<Tables>; client: import('@electric-sql/pglite').PGlite }> {
  const [{ PGlite }, { PGliteDialect }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('kysely-pglite-dialect'),
  ]);
  const client = await PGlite.create(dataDir, {
    parsers: { 20: (v: string) => Number(v) },
  });
  // PGlite runs each statement synchronously on this thread, and a chain of awaited
  // statements never returns to the event loop: yield before each one, so sockets and timers
  // are served between statements rather than after a whole run's worth of them.
  const query = client.query.bind(client);
  client.query = (async (...a: Parameters<typeof query>) => {
    await new Promise((resolve) => setImmediate(resolve));
    return query(...a);
  }) as typeof client.query;
  return { kysely: new Kysely<Tables>({ dialect: new PGliteDialect(client) }), client };
}
