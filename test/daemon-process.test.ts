import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../engine/db/connect.ts';
import { startCli } from './helpers/cli.ts';
import { createPostgresDatabase } from './helpers/db.ts';
import { eventually } from './helpers/eventually.ts';
import { type Receiver, startReceiver } from './helpers/receiver.ts';

/**
 * Real `flows daemon` processes: stopped with SIGTERM, killed with SIGKILL and restarted,
 * and two of them sharing one Postgres.
 */

const ITEMS = 60;

const config = `
business: { name: Test Co, timezone: Europe/London }
daemon: { workers: 2, lease: 2s, poll: 500ms, stop_timeout: 10s }
`;

// Deliveries to an outside system, one at a time: slow enough to stop or kill mid-run.
const deliver = `
name: deliver
trigger: { webhook: { path: /hooks/deliver } }
inputs:
  event: { type: object }
steps:
  - id: each
    foreach: "\${{ range(0, ${ITEMS}) }}"
    concurrency: 2
    steps:
      - id: post
        uses: http.request
        retry: { attempts: 5, backoff: 10ms }
        with:
          url: "\${{ inputs.event.url }}/deliver"
          method: POST
          idempotency_header: Idempotency-Key
          body: { n: "\${{ item }}" }
      - id: save
        uses: sql.insert
        with: { table: delivered, row: { run_id: "\${{ run.id }}", n: "\${{ item }}" } }
`;

// Fires every 2 seconds (a six-field cron: seconds first).
const tick = `
name: tick
trigger: { schedule: { cron: "*/2 * * * * *", timezone: UTC, overlap: queue } }
steps:
  - id: note
    uses: sql.insert
    with: { table: ticks, row: { run_id: "\${{ run.id }}" } }
`;

interface DaemonProcess {
  url: string;
  child: ReturnType<typeof startCli>['child'];
  done: ReturnType<typeof startCli>['done'];
  output: () => string;
}

async function startDaemon(dir: string, db: string): Promise<DaemonProcess> {
  const started = startCli(['--db', db, 'daemon', '--port', '0'], { cwd: dir, env: { FLOWS_LOG_LEVEL: 'info' } });
  let url = '';
  await eventually(
    () => {
      const m = /listening on (http:\/\/[^\s"]+)/.exec(started.output());
      if (m) url = m[1]!;
      if (started.child.exitCode !== null) throw new Error(`the daemon exited: ${started.output()}`);
      return Boolean(url);
    },
    'the daemon to listen',
    60_000,
  );
  return { url, ...started };
}

/** Runs the daemon is executing right now (its health endpoint says). */
async function running(daemon: DaemonProcess): Promise<number> {
  const health = (await (await fetch(`${daemon.url}/healthz`)).json()) as { running: number };
  return health.running;
}

async function post(url: string, body: unknown): Promise<{ status: string; run_id: string }> {
  const res = await fetch(`${url}/hooks/deliver`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  expect(res.status).toBe(200);
  return (await res.json()) as { status: string; run_id: string };
}

/** The daemon's "run started" log records of one run; every line of its log is JSON. */
function runStarts(log: string, runId: string): { resumed: boolean }[] {
  const records = log
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { msg: string; run?: string; resumed?: boolean });
  return records.filter((r) => r.msg === 'run started' && r.run === runId).map((r) => ({ resumed: r.resumed! }));
}

function project(pipelines: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'flows-daemon-'));
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(join(dir, 'pipelines', 'flows.config.yaml'), config);
  for (const [name, text] of Object.entries(pipelines)) writeFileSync(join(dir, 'pipelines', `${name}.yaml`), text);
  return dir;
}

const targets = [{ name: 'pglite' as const }, ...(process.env.TEST_DATABASE_URL ? [{ name: 'postgres' as const }] : [])];

describe.each(targets)('a daemon process on $name', ({ name }) => {
  let dir: string;
  let dbArg: string;
  let dropDb = async () => {};
  let receiver: Receiver;
  beforeAll(async () => {
    dir = project({ deliver });
    if (name === 'postgres') {
      const created = await createPostgresDatabase(process.env.TEST_DATABASE_URL!);
      dbArg = created.url;
      dropDb = created.drop;
    } else dbArg = join(dir, 'db');
    const db = await open();
    await db.query('CREATE TABLE delivered (run_id text NOT NULL, n int NOT NULL, PRIMARY KEY (run_id, n))');
    await db.close();
    receiver = await startReceiver(15);
  });
  afterAll(async () => {
    await receiver.close();
    await dropDb();
  });

  const open = () => openDatabase(name === 'postgres' ? { url: dbArg } : { dataDir: dbArg });
  const runRow = async (id: string) => {
    const db = await open();
    try {
      const [row] = await db.query<{ status: string; claimed_by: string | null }>('SELECT status, claimed_by FROM flow_runs WHERE id = $1', [id]);
      const [{ n }] = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM delivered WHERE run_id = $1', [id])) as [{ n: number }];
      const [{ doubt }] = (await db.query<{ doubt: number }>("SELECT count(*)::int AS doubt FROM flow_effects WHERE run_id = $1 AND status = 'reserved'", [id])) as [{ doubt: number }];
      return { ...row!, delivered: n, doubt };
    } finally {
      await db.close();
    }
  };

  it('stops on SIGTERM within the limit, hands the run back, and a restart finishes it', async () => {
    receiver.byKey.clear();
    const daemon = await startDaemon(dir, dbArg);
    const { run_id } = await post(daemon.url, { url: receiver.url });
    await eventually(() => receiver.byKey.size >= 10, 'deliveries to begin');
    const stoppedAt = Date.now();
    daemon.child.kill('SIGTERM');
    const result = await daemon.done;
    expect(result.code).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    expect(result.stderr).toMatch(/"signal":"SIGTERM".*"msg":"stopping: in-flight steps finish/);

    const stopped = await runRow(run_id); // (after the daemon: the embedded database is one process's)
    expect(stopped).toMatchObject({ status: 'queued', claimed_by: null, doubt: 0 }); // in-flight steps finished
    expect(stopped.delivered).toBeLessThan(ITEMS);
    expect(runStarts(result.stderr, run_id)).toEqual([{ resumed: false }]); // a new run, though the daemon claimed it from the queue

    const again = await startDaemon(dir, dbArg);
    try {
      await eventually(async () => receiver.byKey.size === ITEMS && (await running(again)) === 0, 'the run to finish after the restart', 60_000);
    } finally {
      again.child.kill('SIGTERM');
      expect((await again.done).code).toBe(0);
    }
    expect(await runRow(run_id)).toMatchObject({ status: 'completed', delivered: ITEMS });
    expect(runStarts(again.output(), run_id)).toEqual([{ resumed: true }]);
    expect(receiver.byKey.size).toBe(ITEMS);
    expect([...receiver.byKey.values()].every((n) => n === 1)).toBe(true); // nothing sent twice
  });

  it('after SIGKILL, a restarted daemon takes the run over when its lease runs out, repeating nothing recorded', async () => {
    receiver.byKey.clear();
    const daemon = await startDaemon(dir, dbArg);
    const { run_id } = await post(daemon.url, { url: receiver.url, attempt: 'kill' });
    await eventually(() => receiver.byKey.size >= 15, 'deliveries to begin');
    daemon.child.kill('SIGKILL');
    expect((await daemon.done).signal).toBe('SIGKILL');
    const countsAtKill = new Map(receiver.byKey);
    // (The embedded database is one process's: the lock of the killed one is taken over.)
    const killed = await runRow(run_id);
    expect(killed.status).toBe('running'); // it never got to hand the run back

    const db = await open();
    const doneKeys = (await db.query<{ key: string }>("SELECT key FROM flow_effects WHERE run_id = $1 AND step_id = 'post' AND status = 'done'", [run_id])).map((r) => r.key);
    await db.close();

    const again = await startDaemon(dir, dbArg);
    try {
      await eventually(async () => receiver.byKey.size === ITEMS && (await running(again)) === 0, 'the run to be taken over and finished', 60_000);
    } finally {
      again.child.kill('SIGTERM');
      await again.done;
    }
    expect(again.output()).toContain('run lease ran out');
    expect(await runRow(run_id)).toMatchObject({ status: 'completed', delivered: ITEMS });
    expect(receiver.byKey.size).toBe(ITEMS);
    // Deliveries recorded as done before the kill were not made again; only those in flight
    // at the kill (in doubt) could be, and with the same idempotency key.
    for (const key of doneKeys) expect(receiver.byKey.get(key)).toBe(countsAtKill.get(key));
    expect([...receiver.byKey.values()].filter((n) => n > 1).length).toBeLessThanOrEqual(2);
  });
});

describe.runIf(process.env.TEST_DATABASE_URL)('two daemons on one Postgres', () => {
  let dir: string;
  let url: string;
  let drop = async () => {};
  let receiver: Receiver;
  beforeAll(async () => {
    dir = project({ deliver, tick });
    const created = await createPostgresDatabase(process.env.TEST_DATABASE_URL!);
    url = created.url;
    drop = created.drop;
    const db = await openDatabase({ url });
    await db.query('CREATE TABLE delivered (run_id text NOT NULL, n int NOT NULL, PRIMARY KEY (run_id, n))');
    await db.query('CREATE TABLE ticks (run_id text PRIMARY KEY)');
    await db.close();
    receiver = await startReceiver(10);
  });
  afterAll(async () => {
    await receiver.close();
    await drop();
  });

  it('fire each schedule once, execute each run once, and take over a killed one', async () => {
    const a = await startDaemon(dir, url);
    const b = await startDaemon(dir, url);
    let bAlive = true;
    try {
      // Runs posted to either daemon; both execute them.
      const runs = await Promise.all(Array.from({ length: 6 }, (_, i) => post(i % 2 ? b.url : a.url, { url: receiver.url, n: i })));
      expect(new Set(runs.map((r) => r.run_id)).size).toBe(6);
      // Let both daemons work a while, then kill one mid-run.
      await eventually(() => receiver.total() >= 60, 'deliveries to begin');
      b.child.kill('SIGKILL');
      await b.done;
      bAlive = false;
      const db = await openDatabase({ url });
      try {
        await eventually(
          async () => {
            const [row] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM flow_runs WHERE pipeline = 'deliver' AND status = 'completed'");
            return row!.n === 6;
          },
          'every run to complete',
          90_000,
        );
        const delivered = await db.query<{ run_id: string; n: number }>('SELECT run_id, count(*)::int AS n FROM delivered GROUP BY run_id');
        expect(delivered).toHaveLength(6);
        expect(delivered.every((r) => r.n === ITEMS)).toBe(true);
        expect(receiver.byKey.size).toBe(6 * ITEMS);
        // At most the deliveries in flight at the kill were repeated (with their key).
        expect([...receiver.byKey.values()].filter((n) => n > 1).length).toBeLessThanOrEqual(4);

        await eventually(
          async () => ((await db.query<{ n: number }>("SELECT count(*)::int AS n FROM flow_runs WHERE pipeline = 'tick'"))[0]!.n >= 4),
          'four schedule fires',
          30_000,
        );
        // The schedule: one run per fire time, no fire twice, no gap while a daemon was up.
        const fires = (await db.query<{ trigger_ref: string }>("SELECT trigger_ref FROM flow_runs WHERE pipeline = 'tick' ORDER BY trigger_ref")).map((r) => r.trigger_ref);
        expect(fires.length).toBeGreaterThanOrEqual(3);
        expect(new Set(fires).size).toBe(fires.length);
        const times = fires.map((f) => Date.parse(f));
        for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBe(2000);
        const [ticks] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM ticks');
        expect(ticks!.n).toBeGreaterThanOrEqual(fires.length - 2); // the newest fires may still be running
      } finally {
        await db.close();
      }
      expect(a.output()).toMatch(/run lease ran out/);
    } finally {
      a.child.kill('SIGTERM');
      if (bAlive) b.child.kill('SIGTERM');
      expect((await a.done).code).toBe(0);
    }
  });
});
