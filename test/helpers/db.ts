import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { type Database, openDatabase } from '../../engine/db/connect.ts';
import { businessMigrations } from '../../steps/tables.ts';

/** Every database test runs on the embedded database and, when TEST_DATABASE_URL is set, on Postgres. */
export interface TestDatabase {
  name: 'pglite' | 'postgres';
  open(): Promise<Database>;
}

const migrations = businessMigrations;
const pglite: TestDatabase = { name: 'pglite', open: () => openDatabase({ dataDir: 'memory://', migrations }) };

/** A fresh database on the server per call, dropped on close: tests never see each other's rows. */
export async function createPostgresDatabase(adminUrl: string, prefix = 'flows_test'): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end().catch(() => {});
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3000 });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A database of its own on the server, dropped when it is closed. */
export async function openFreshPostgres(adminUrl: string, prefix?: string): Promise<Database> {
  const created = await createPostgresDatabase(adminUrl, prefix);
  const db = await openDatabase({ url: created.url, migrations });
  return {
    ...db,
    kysely: db.kysely,
    query: db.query,
    async close() {
      await db.close();
      await created.drop();
    },
  };
}

const postgres = (adminUrl: string): TestDatabase => ({
  name: 'postgres',
  open: () => openFreshPostgres(adminUrl),
});

export const testDatabases: TestDatabase[] = process.env.TEST_DATABASE_URL ? [pglite, postgres(process.env.TEST_DATABASE_URL)] : [pglite];

/** The first row of a query that returns one. */
export async function first<T>(rows: Promise<T[]>): Promise<T> {
  const [row] = await rows;
  if (row === undefined) throw new Error('the query returned no row');
  return row;
}
