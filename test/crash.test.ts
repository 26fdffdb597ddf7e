import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../engine/db/connect.ts';
import { cli, startCli } from './helpers/cli.ts';
import { createPostgresDatabase, first } from './helpers/db.ts';
import { processTag, survivors } from './helpers/processes.ts';
import { startReceiver } from './helpers/receiver.ts';

const ITEMS = 240;

const pipeline = `name: deliver
trigger: { manual: {} }
inputs:
  url: { type: string }
steps:
  - id: each
    foreach: { query: "SELECT id FROM targets", key: id, page_size: 50 }
    concurrency: 4
    steps:
      - id: post
        uses: http.request
        retry: { attempts: 5, backoff: 10ms }
        with:
          url: "\${{ inputs.url }}/deliver"
          method: POST
          idempotency_header: Idempotency-Key
          body: { id: "\${{ item.id }}" }
      - id: save
        uses: sql.insert
        with: { table: delivered, row: { id: "\${{ item.id }}", receipt: "\${{ steps.post.output.body.receipt }}" } }
`;

const targets = [{ name: 'pglite' as const }, ...(process.env.TEST_DATABASE_URL ? [{ name: 'postgres' as const }] : [])];

describe.each(targets)('a run killed mid-way on $name', ({ name }) => {
  let dir: string;
  let dbArg: string;
  let dropDb = async () => {};
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'flows-crash-'));
    mkdirSync(join(dir, 'pipelines'));
    writeFileSync(join(dir, 'pipelines', 'deliver.yaml'), pipeline);
    if (name === 'postgres') {
      const created = await createPostgresDatabase(process.env.TEST_DATABASE_URL!);
      dbArg = created.url;
      dropDb = created.drop;
    } else dbArg = join(dir, 'db');
    const db = await openDatabase(name === 'postgres' ? { url: dbArg } : { dataDir: dbArg });
    await db.query('CREATE TABLE targets (id int PRIMARY KEY)');
    await db.query(`INSERT INTO targets SELECT generate_series(1, ${ITEMS})`);
    await db.query('CREATE TABLE delivered (id int PRIMARY KEY, receipt text NOT NULL)');
    await db.close();
  });
  afterAll(() => dropDb());

  const open = () => openDatabase(name === 'postgres' ? { url: dbArg } : { dataDir: dbArg });

  it('is resumed: every item delivered once, nothing finished is repeated', async () => {
    const receiver = await startReceiver();
    try {
      const { tag, env } = processTag();
      const run = startCli(['--db', dbArg, 'run', 'deliver', '-i', `url=${receiver.url}`], { cwd: dir, env });
      // Kill it hard once a good part of the work is done (polling the receiver, not sleeping a fixed time).
      await new Promise<void>((resolve, reject) => {
        const check = setInterval(() => {
          if (receiver.total() >= ITEMS / 3) {
            clearInterval(check);
            run.child.kill('SIGKILL');
            resolve();
          }
        }, 2);
        run.done.then((r) => {
          clearInterval(check);
          reject(new Error(`the run ended before it was killed: ${r.code} ${r.stdout} ${r.stderr}`));
        });
      });
      const killed = await run.done;
      expect(killed.signal).toBe('SIGKILL');
      expect(await survivors(tag)).toEqual([]);
      const sentBeforeKill = receiver.total();
      expect(sentBeforeKill).toBeLessThan(ITEMS);

      const db = await open();
      const [runRow] = await db.query<{ id: string; status: string }>('SELECT id, status FROM flow_runs');
      expect(runRow!.status).toBe('running'); // it never got to record an end
      const doneBefore = new Set((await db.query<{ key: string }>("SELECT key FROM flow_effects WHERE status = 'done' AND step_id = 'post'")).map((r) => r.key));
      const inDoubt = new Set((await db.query<{ key: string }>("SELECT key FROM flow_effects WHERE status = 'reserved' AND step_id = 'post'")).map((r) => r.key));
      await db.close();
      const countsAtKill = new Map(receiver.byKey);

      const resumed = await cli(['--db', dbArg, 'run', 'deliver', '--resume', runRow!.id, '--json'], { cwd: dir });
      expect(resumed.stderr).toBe('');
      expect(resumed.code).toBe(0);
      const result = JSON.parse(resumed.stdout);
      expect(result).toMatchObject({ run_id: runRow!.id, status: 'completed' });
      expect(result.steps[0].items).toEqual({ total: ITEMS, succeeded: ITEMS, failed: 0, skipped: 0 });

      // Every effect recorded as done before the kill was not sent again.
      for (const key of doneBefore) expect(receiver.byKey.get(key)).toBe(countsAtKill.get(key));
      // Only effects in doubt (started, never confirmed) were sent again, with the same key.
      for (const [key, n] of receiver.byKey) if (n > 1) expect(inDoubt.has(key)).toBe(true);
      expect(receiver.byKey.size).toBe(ITEMS);

      const after = await open();
      const { n, receipts } = await first(after.query<{ n: number; receipts: number }>("SELECT count(*)::int AS n, count(*) FILTER (WHERE receipt LIKE 'rcpt-%')::int AS receipts FROM delivered"));
      const { effects } = await first(after.query<{ effects: number }>("SELECT count(*)::int AS effects FROM flow_effects WHERE status = 'done'"));
      await after.close();
      expect(n).toBe(ITEMS);
      expect(receipts).toBe(ITEMS);
      expect(effects).toBe(ITEMS * 2);
    } finally {
      receiver.server.close();
    }
  });

  it('stops gracefully on Ctrl-C with exit 130, and resumes', async () => {
    const db = await open();
    await db.query('DELETE FROM delivered');
    await db.query('DELETE FROM flow_effects');
    await db.close();
    const receiver = await startReceiver();
    try {
      const run = startCli(['--db', dbArg, 'run', 'deliver', '-i', `url=${receiver.url}`], { cwd: dir });
      await new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (receiver.total() >= 20) {
            clearInterval(check);
            run.child.kill('SIGINT');
            resolve();
          }
        }, 2);
      });
      const stopped = await run.done;
      expect(stopped.code).toBe(130);
      expect(stopped.stderr).toContain('stopping: letting in-flight items finish');
      const runId = /--resume (r-\S+)/.exec(stopped.stdout)![1]!;
      expect(stopped.stdout).toContain('interrupted');

      const shown = await cli(['--db', dbArg, 'show', runId, '--json'], { cwd: dir });
      expect(JSON.parse(shown.stdout).run.status).toBe('interrupted');
      // Graceful: what was in flight finished and was recorded, so nothing is in doubt.
      const check = await open();
      const { doubt } = await first(check.query<{ doubt: number }>("SELECT count(*)::int AS doubt FROM flow_effects WHERE status = 'reserved'"));
      await check.close();
      expect(doubt).toBe(0);

      const resumed = await cli(['--db', dbArg, 'run', 'deliver', '--resume', runId], { cwd: dir });
      expect(resumed.code).toBe(0);
      expect([...receiver.byKey.values()].every((n) => n === 1)).toBe(true);
      expect(receiver.byKey.size).toBe(ITEMS);
    } finally {
      receiver.server.close();
    }
  });
});
