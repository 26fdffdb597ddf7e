import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { chromiumPath } from '../connectors/browser/browser.ts';
import { type ClaudeSandbox, SANDBOX_API_KEY as CLAUDE_KEY, startClaudeSandbox } from '../connectors/claude/sandbox.ts';
import { SANDBOX_KEY as SEMRUSH_KEY, type SemrushSandbox, startSemrushSandbox } from '../connectors/semrush/sandbox.ts';
import { SANDBOX_API_KEY as SPYFU_KEY, type SpyfuSandbox, startSpyfuSandbox } from '../connectors/spyfu/sandbox.ts';
import { openDatabase } from '../engine/db/connect.ts';
import { businessMigrations } from '../steps/tables.ts';
import { cli, startCli } from './helpers/cli.ts';
import { createPostgresDatabase } from './helpers/db.ts';
import { eventually } from './helpers/eventually.ts';
import { processTag, survivors } from './helpers/processes.ts';

/**
 * weekly-enrich killed with SIGKILL at random moments, as a CLI run (resumed with --resume)
 * and as a daemon run (taken over by a restarted daemon when its lease runs out), against
 * SEMrush, SpyFu and Claude sandboxes that live in this process and count every call. At the
 * end: every item finished once, nothing left in doubt, and no call whose effect was confirmed
 * was made again. A call cut short by a kill may be made again only because its step says so
 * (in_doubt: repeat) or the provider deduplicates, and each such repeat is counted.
 */
const PROSPECTS = 16;
const KILLS = 10; // per part, the CLI's and the daemon's: 20 a database
const root = join(import.meta.dirname, '..');
const targets = [{ name: 'pglite' as const }, ...(process.env.TEST_DATABASE_URL ? [{ name: 'postgres' as const }] : [])];
const haveChromium = existsSync(chromiumPath(process.env));

/** A seeded random source, so a failing sequence of kills can be replayed. */
/**
 * Kill points come from a seeded generator: CRASH_SEED=<n> moves every kill elsewhere (CI
 * runs a fresh seed each time), and the seed is printed so a failure can be replayed.
 */
const CRASH_SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 1e6));

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 0x1_0000_0000);
}

interface Sandboxes {
  semrush: SemrushSandbox;
  spyfu: SpyfuSandbox;
  claude: ClaudeSandbox;
  close(): Promise<void>;
}

async function sandboxes(): Promise<Sandboxes> {
  const semrush = await startSemrushSandbox({ faults: { latencyMs: 25 } });
  const spyfu = await startSpyfuSandbox({ faults: { latencyMs: 25 } });
  const claude = await startClaudeSandbox({ batchProcessingMs: 1200, faults: { latencyMs: 10 } });
  return {
    semrush,
    spyfu,
    claude,
    close: async () => void (await Promise.all([semrush.close(), spyfu.close(), claude.close()])),
  };
}

/** A project with weekly-enrich against the sandboxes as live services (sandboxes: never), and a webhook copy for the daemon. */
function project(s: Sandboxes, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'flows-crash-weekly-'));
  cpSync(join(root, 'pipelines', 'templates'), join(dir, 'pipelines', 'templates'), { recursive: true });
  cpSync(join(root, 'pipelines', 'prompts'), join(dir, 'pipelines', 'prompts'), { recursive: true });
  const config = parse(readFileSync(join(root, 'pipelines', 'flows.config.yaml'), 'utf8'));
  config.sandboxes = 'never';
  config.connectors.semrush = { ...config.connectors.semrush, base_url: s.semrush.url, key: '${{ env.SEMRUSH_API_KEY }}' };
  config.connectors.spyfu = { ...config.connectors.spyfu, base_url: s.spyfu.url, api_key: '${{ env.SPYFU_API_KEY }}' };
  config.connectors.claude = { ...config.connectors.claude, base_url: s.claude.url, api_key: '${{ env.ANTHROPIC_API_KEY }}' };
  // weekly-enrich sends no email and no LinkedIn invitation: under sandboxes: never a daemon
  // refuses to start with a mail server or a Phantombuster key it does not have.
  delete config.connectors.smtp;
  delete config.connectors.phantombuster;
  // Shared through Redis when REDIS_URL is set: a killed process's places come back after the hold.
  config.rate_limits = { semrush: { per_second: 200, concurrency: 20, hold: '2s' }, spyfu: { per_second: 200, concurrency: 20, hold: '2s' } };
  config.prospect_sources = { 'weekly-list': { type: 'csv', path: 'data/prospects.csv', columns: config.prospect_sources['weekly-list'].columns } };
  config.linkedin.weekly = 3;
  config.daemon = { workers: 1, lease: '1s', poll: '500ms', stop_timeout: '5s' };
  delete config.webhooks.verifiers;
  writeFileSync(join(dir, 'pipelines', 'flows.config.yaml'), stringify(config));
  const rows = Array.from({ length: PROSPECTS }, (_, i) => `Co ${i},${prefix}-${i}.example,P ${i},p${i}@${prefix}-${i}.example,https://www.linkedin.com/in/${prefix}-${i}/`);
  cpSync(join(root, 'pipelines', 'data'), join(dir, 'pipelines', 'data'), { recursive: true });
  writeFileSync(join(dir, 'pipelines', 'data', 'prospects.csv'), `Company,Website,Name,Email,LinkedIn\n${rows.join('\n')}\n`);
  const weekly = parse(readFileSync(join(root, 'pipelines', 'weekly-enrich.yaml'), 'utf8'));
  weekly.steps.find((s: { id: string }) => s.id === 'read').with.sources = ['weekly-list'];
  weekly.steps.find((s: { id: string }) => s.id === 'analyses').with.poll = '200ms';
  writeFileSync(join(dir, 'pipelines', 'weekly-enrich.yaml'), stringify(weekly));
  writeFileSync(join(dir, 'pipelines', 'weekly-now.yaml'), stringify({ ...weekly, name: 'weekly-now', trigger: { webhook: { path: '/hooks/weekly-now', inputs: {} } } }));
  return dir;
}

const env = { SEMRUSH_API_KEY: SEMRUSH_KEY, SPYFU_API_KEY: SPYFU_KEY, ANTHROPIC_API_KEY: CLAUDE_KEY };

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** The SEMrush and SpyFu calls the sandboxes have answered for one test's domains. */
function searchCalls(s: Sandboxes, prefix: string): number {
  const ours = (domain: string | null | undefined) => domain?.startsWith(`${prefix}-`) === true;
  return s.semrush.requests.filter((r) => ours(r.domain)).length + s.spyfu.requests.filter((r) => ours(r.domain)).length;
}

/**
 * How many search calls on the next kill lands: random, but drawn so that the kills left fit
 * in the search work left (PROSPECTS × 7 calls), whatever the seed: on average the kills
 * spread evenly over what remains, and none is drawn beyond it.
 */
function nextGap(rand: () => number, s: Sandboxes, prefix: string, killsLeft: number): number {
  const left = Math.max(1, PROSPECTS * 7 - searchCalls(s, prefix));
  return 1 + Math.floor(rand() * Math.max(1, (2 * left) / (killsLeft + 1) - 1));
}

/**
 * Waits until the sandboxes have answered `more` calls more (as `calls` counts them), then kills the process with
 * SIGKILL; returns false, killing nothing, when the process ends first or `finished` says
 * the work is done.
 */
async function killAfter(child: ReturnType<typeof startCli>, calls: () => number, more: number, finished: () => Promise<boolean> = async () => false): Promise<boolean> {
  const target = calls() + more;
  const kill = await new Promise<boolean>((resolve) => {
    let looking = false;
    const check = setInterval(() => {
      if (calls() >= target) {
        clearInterval(check);
        resolve(true);
      } else if (!looking) {
        looking = true;
        void finished().then((yes) => {
          looking = false;
          if (yes) {
            clearInterval(check);
            resolve(false);
          }
        });
      }
    }, 1);
    void child.done.then(() => {
      clearInterval(check);
      resolve(false);
    });
  });
  if (!kill) return false;
  child.child.kill('SIGKILL');
  await child.done;
  return true;
}

describe.skipIf(!haveChromium).each(targets)('weekly-enrich killed at random moments on $name', ({ name }) => {
  let s: Sandboxes;
  const dbs: { arg: string; drop(): Promise<void> }[] = [];
  beforeAll(async () => {
    s = await sandboxes();
  });
  afterAll(async () => {
    await s?.close();
    for (const db of dbs) await db.drop();
  });

  async function database(dir: string) {
    if (name === 'pglite') return { arg: join(dir, 'db'), drop: async () => {} };
    const created = await createPostgresDatabase(process.env.TEST_DATABASE_URL!, 'flows_crash');
    const db = { arg: created.url, drop: created.drop };
    dbs.push(db);
    return db;
  }
  const open = (arg: string) => openDatabase(name === 'postgres' ? { url: arg, migrations: businessMigrations } : { dataDir: arg, migrations: businessMigrations });

  /** Every item finished once, nothing in doubt, and a call repeated only where a repeat was counted. */
  async function expectExactlyOnce(arg: string, runId: string, prefix: string) {
    const db = await open(arg);
    try {
      const [run] = await db.query<{ status: string }>('SELECT status FROM flow_runs WHERE id = $1', [runId]);
      expect(run!.status).toBe('completed');
      expect(await db.query("SELECT key FROM flow_effects WHERE status = 'reserved'")).toEqual([]);
      // The search data was kept only until each item was recorded (it lives in prospect_intelligence).
      expect(await db.query("SELECT key FROM flow_effects WHERE step_id = 'intel' AND (transient OR output IS NOT NULL AND output <> 'null'::jsonb)")).toEqual([]);
      const items = await db.query<{ step_id: string; status: string; n: number }>('SELECT step_id, status, count(*)::int AS n FROM flow_items WHERE run_id = $1 GROUP BY 1, 2 ORDER BY 1, 2', [runId]);
      expect(items).toEqual(expect.arrayContaining([{ step_id: 'save', status: 'succeeded', n: PROSPECTS }, { step_id: 'enrich', status: 'succeeded', n: PROSPECTS }]));
      expect(items.filter((i) => i.status !== 'succeeded')).toEqual([]);
      const [{ n: stored }] = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM prospect_intelligence WHERE source = 'search' AND domain LIKE $1", [`${prefix}-%`])) as [{ n: number }];
      expect(stored).toBe(PROSPECTS);
      const repeats = new Map(
        (await db.query<{ item_key: string; repeats: number }>("SELECT item_key, repeats FROM flow_effects WHERE run_id = $1 AND step_id = 'intel'", [runId])).map((r) => [r.item_key, r.repeats]),
      );
      expect(repeats.size).toBe(PROSPECTS);
      // Calls per domain and endpoint, as the sandboxes saw them.
      const seen = new Map<string, number>();
      for (const r of s.semrush.requests) if (r.domain?.startsWith(`${prefix}-`)) seen.set(`${r.domain} semrush ${r.type}`, (seen.get(`${r.domain} semrush ${r.type}`) ?? 0) + 1);
      for (const r of s.spyfu.requests) if (r.domain?.startsWith(`${prefix}-`)) seen.set(`${r.domain} spyfu ${r.path}`, (seen.get(`${r.domain} spyfu ${r.path}`) ?? 0) + 1);
      const beyond: string[] = [];
      for (const [what, count] of seen) {
        const domain = what.split(' ')[0]!;
        if (count > 1 + (repeats.get(domain) ?? 0)) beyond.push(`${what}: ${count} calls, ${repeats.get(domain) ?? 0} repeats counted`);
      }
      expect(beyond).toEqual([]); // no confirmed call was made again
      expect(seen.size).toBe(PROSPECTS * 7);
      const repeated = [...repeats.values()].reduce((a, b) => a + b, 0);
      return { repeated, domainsRepeated: [...repeats.values()].filter((r) => r > 0).length };
    } finally {
      await db.close();
    }
  }

  it('as a CLI run resumed after each kill', async () => {
    const prefix = `cli${name}`;
    const dir = project(s, prefix);
    const db = await database(dir);
    const rand = random(CRASH_SEED + (name === 'pglite' ? 11 : 12));
    const args = ['--db', db.arg, '--log-level', 'warn'];
    const { tag, env: marked } = processTag();
    let runId: string | undefined;
    let kills = 0;
    for (let attempt = 0; attempt < 60; attempt++) {
      const child = startCli([...args, 'run', 'weekly-enrich', '--json', ...(runId ? ['--resume', runId] : [])], { cwd: dir, env: { ...env, ...marked } });
      const killed = kills < KILLS && (await killAfter(child, () => searchCalls(s, prefix), nextGap(rand, s, prefix, KILLS - kills)));
      if (!killed) {
        const result = await child.done;
        expect(result.code, result.stderr).toBe(0);
        runId = JSON.parse(result.stdout).run_id;
        break;
      }
      kills++;
      if (!runId) {
        const runs = await cli([...args, 'runs', '--json'], { cwd: dir, env });
        runId = JSON.parse(runs.stdout)[0]?.id;
      }
    }
    expect(kills).toBe(KILLS);
    // Nothing the killed runs started (their browsers above all) is still running.
    expect(await survivors(tag)).toEqual([]);
    const { repeated, domainsRepeated } = await expectExactlyOnce(db.arg, runId!, prefix);
    console.log(`weekly-enrich on ${name}, CLI (CRASH_SEED=${CRASH_SEED}): ${kills} kills; ${repeated} repeats of effects in doubt over ${domainsRepeated} domains`);
    expect(repeated).toBeGreaterThan(0); // the kills did land in the middle of paid calls
    const shown = await cli([...args, 'show', runId!, '--json'], { cwd: dir, env });
    const reported = (JSON.parse(shown.stdout).repeated as { repeats: number }[]).reduce((a, r) => a + r.repeats, 0);
    expect(reported).toBe(repeated);
  }, 600_000);

  it('as a daemon run taken over after each kill', async () => {
    const prefix = `dmn${name}`;
    const dir = project(s, prefix);
    const db = await database(dir);
    const rand = random(CRASH_SEED + (name === 'pglite' ? 21 : 22));
    const port = await freePort();
    const { tag, env: marked } = processTag();
    const start = () => startCli(['--db', db.arg, 'daemon', '--port', String(port)], { cwd: dir, env: { ...env, ...marked, FLOWS_LOG_LEVEL: 'info' } });
    const listening = (d: ReturnType<typeof startCli>) => eventually(() => d.output().includes('listening on'), 'the daemon to listen', 60_000);
    let daemon = start();
    await listening(daemon);
    const started = (await (await fetch(`http://127.0.0.1:${port}/hooks/weekly-now`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).json()) as { run_id: string };
    const runId = started.run_id;
    /** Whether the run has ended (any way: a run that failed must not keep the test waiting). */
    const completed = async () => {
      try {
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return /flows_runs\{pipeline="weekly-now",status="(completed|completed_with_errors|failed|needs_attention)"\} 1/.test(metrics);
      } catch {
        return false; // the daemon was just killed
      }
    };
    let kills = 0;
    while (kills < KILLS) {
      if (!(await killAfter(daemon, () => searchCalls(s, prefix), nextGap(rand, s, prefix, KILLS - kills), completed))) break;
      kills++;
      daemon = start();
      await listening(daemon);
    }
    await eventually(completed, 'the run to complete', 300_000);
    daemon.child.kill('SIGTERM');
    await daemon.done;
    expect(await survivors(tag)).toEqual([]);
    expect(kills).toBeGreaterThanOrEqual(KILLS - 2);
    const { repeated, domainsRepeated } = await expectExactlyOnce(db.arg, runId, prefix);
    console.log(`weekly-enrich on ${name}, daemon (CRASH_SEED=${CRASH_SEED}): ${kills} kills; ${repeated} repeats of effects in doubt over ${domainsRepeated} domains`);
  }, 600_000);
});
