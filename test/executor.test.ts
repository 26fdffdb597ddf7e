import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../engine/clock.ts';
import type { Database } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { executeRun, type ExecuteOptions } from '../engine/executor/run.ts';
import { createScrubber } from '../engine/secrets.ts';
import { RunStore } from '../engine/store/index.ts';
import { first, testDatabases } from './helpers/db.ts';
import { calls, pipelineFrom, testConfig } from './helpers/pipeline.ts';

describe.each(testDatabases)('executor on $name', ({ open }) => {
  let db: Database;
  let store: RunStore;
  let clock: ManualClock;
  const out = mkdtempSync(join(tmpdir(), 'flows-exec-'));

  beforeAll(async () => {
    db = await open();
    store = new RunStore(db);
    await db.query('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
    await db.query("INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 1234) g");
    await db.query('CREATE TABLE written (id int PRIMARY KEY, label text)');
  }, 60_000);
  afterAll(() => db?.close());
  beforeEach(() => {
    calls.reset();
    clock = new ManualClock(new Date('2026-11-23T10:00:00Z')); // a Monday, 10:00 in London
  });

  const run = (yaml: string, options: Partial<ExecuteOptions> = {}) =>
    executeRun({ pipeline: pipelineFrom(yaml), config: testConfig, store, clock, outDir: join(out, String(Math.random())), ...options });

  it('runs steps in order, passing outputs through expressions', async () => {
    const result = await run(`
name: chain
trigger: { manual: {} }
inputs: { greeting: { type: string, default: hi } }
steps:
  - id: pick
    uses: sql.query
    with: { sql: "SELECT id, name FROM items WHERE id <= $1 ORDER BY id", params: [3] }
  - id: shape
    uses: transform
    with:
      value:
        first: "\${{ steps.pick.output.rows[0].name }}"
        count: "\${{ steps.pick.output.count }}"
        text: "\${{ inputs.greeting }} \${{ length(steps.pick.output.rows) }}"
`);
    expect(result.status).toBe('completed');
    const steps = await store.runs.steps(result.run_id);
    expect(steps.map((s) => [s.step_id, s.status])).toEqual([
      ['pick', 'completed'],
      ['shape', 'completed'],
    ]);
    expect(steps[1]!.output).toEqual({ value: { first: 'item-1', count: 3, text: 'hi 3' } });
  });

  it('pages a foreach query and runs every item once, with bounded concurrency', async () => {
    let inFlight = 0;
    let peak = 0;
    const events = new RunEvents();
    events.on('item:done', () => inFlight--);
    const yaml = `
name: paged
trigger: { manual: {} }
steps:
  - id: each
    foreach: { query: "SELECT id, name FROM items", key: id, page_size: 100 }
    concurrency: 7
    steps:
      - id: shape
        uses: transform
        with: { value: "\${{ item.name }}" }
      - id: save
        uses: sql.insert
        with: { table: written, row: { id: "\${{ item.id }}", label: "\${{ steps.shape.output.value }}" } }
`;
    const pipeline = pipelineFrom(yaml);
    const original = pipeline.steps[0]!.steps![0]!.type!.run;
    (pipeline.steps[0]!.steps![0]!.type as { run: typeof original }).run = async (ctx, input) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      return original(ctx, input);
    };
    try {
      const result = await executeRun({ pipeline, config: testConfig, store, clock, events });
      expect(result.status).toBe('completed');
      expect(result.steps[0]!.items).toEqual({ total: 1234, succeeded: 1234, failed: 0, skipped: 0 });
    } finally {
      (pipeline.steps[0]!.steps![0]!.type as { run: typeof original }).run = original;
    }
    const { n, labels } = await first(db.query<{ n: number; labels: number }>("SELECT count(*)::int AS n, count(*) FILTER (WHERE label = 'item-' || id)::int AS labels FROM written"));
    expect(n).toBe(1234);
    expect(labels).toBe(1234);
    expect(peak).toBeLessThanOrEqual(7);
    expect(peak).toBeGreaterThan(1);
    await db.query('DELETE FROM written');
  });

  it('retries transient errors with growing backoff and gives up on non-retriable ones', async () => {
    const result = await run(`
name: retries
trigger: { manual: {} }
steps:
  - id: each
    uses: test.flaky
    foreach: "\${{ ['a', 'b', 'c', 'd'] }}"
    item_key: "\${{ item }}"
    retry: { attempts: 4, backoff: 1s, max_backoff: 3s }
    with:
      key: "\${{ item }}"
      failures: "\${{ item == 'a' ? 0 : item == 'b' ? 2 : 9 }}"
      mode: "\${{ item == 'd' ? 'fatal' : 'transient' }}"
`);
    expect(result.status).toBe('completed_with_errors');
    expect(calls.flaky.get('a')).toBe(1);
    expect(calls.flaky.get('b')).toBe(3);
    expect(calls.flaky.get('c')).toBe(4); // every attempt used
    expect(calls.flaky.get('d')).toBe(1); // NonRetriableError: no second attempt
    expect(result.failures.map((f) => [f.item, f.error]).sort()).toEqual([
      ['c', 'transient failure 4 for c (after 4 attempts)'],
      ['d', 'bad input for d'],
    ]);
    // Backoff: equal jitter within [d/2, d], doubling from 1s, capped at 3s.
    const waits = clock.sleeps;
    expect(waits).toHaveLength(5);
    for (const w of waits) expect(w).toBeGreaterThanOrEqual(500);
    for (const w of waits) expect(w).toBeLessThanOrEqual(3000);
  });

  it('waits as long as a RetryAfterError says', async () => {
    const result = await run(`
name: retry-after
trigger: { manual: {} }
steps:
  - id: once
    uses: test.flaky
    with: { key: ra, failures: 1, mode: after }
`);
    expect(result.status).toBe('completed');
    expect(clock.sleeps).toEqual([7000]);
  });

  it('gives back the reservation of an effect that did not happen and tries it again when it says (DeferredError)', async () => {
    const result = await run(`
name: deferred
trigger: { manual: {} }
steps:
  - id: send
    uses: test.send
    foreach: "\${{ ['a', 'b'] }}"
    quota: daily
    with: { to: "\${{ item }}", defer_first: "\${{ item == 'a' ? '3600000' : '' }}" }
`);
    expect(result.status).toBe('completed');
    expect(calls.performed).toEqual(['a', 'a', 'b']);
    // One slot each: the deferred attempt held none while it waited; the retry came an hour later.
    const rows = await db.query<{ item_key: string; at: Date }>('SELECT item_key, at FROM flow_quota_ledger WHERE run_id = $1 ORDER BY item_key', [result.run_id]);
    expect(rows.map((r) => [r.item_key, new Date(r.at).toISOString()])).toEqual([
      ['0', '2026-11-23T11:00:00.000Z'],
      ['1', '2026-11-23T11:00:00.000Z'],
    ]);
    expect(clock.sleeps).toContain(3_600_000);
    const effects = await db.query<{ status: string }>("SELECT status FROM flow_effects WHERE run_id = $1", [result.run_id]);
    expect(effects.map((e) => e.status)).toEqual(['done', 'done']);
    await db.query('DELETE FROM flow_quota_ledger WHERE run_id = $1', [result.run_id]); // the day's slots belong to the tests after
  });

  it('times out an attempt through its signal, and abandons a step that ignores it', async () => {
    const result = await run(`
name: timeouts
trigger: { manual: {} }
steps:
  - id: polite
    uses: test.hang
    foreach: "\${{ [true, false] }}"
    timeout: 20ms
    retry: { attempts: 2, backoff: 1ms }
    with: { honour_signal: "\${{ item }}" }
`);
    expect(result.status).toBe('completed_with_errors');
    expect(result.failures.map((f) => f.error)).toEqual(['timed out after 20ms (after 2 attempts)', 'timed out after 20ms (after 2 attempts)']);
  });

  it('a failing step fails the run and the steps after it do not run', async () => {
    const result = await run(`
name: failing
trigger: { manual: {} }
steps:
  - id: bad
    uses: sql.query
    retry: { attempts: 1 }
    with: { sql: "SELECT * FROM no_such_table" }
  - id: after
    uses: log
    with: { message: never }
`);
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/step bad failed: .*no_such_table/);
    expect(result.steps.map((s) => s.status)).toEqual(['failed', 'not_run']);
  });

  it('never repeats an effect whose key was done, in this run or another', async () => {
    const yaml = `
name: once-only
trigger: { manual: {} }
steps:
  - id: send
    uses: test.send
    foreach: "\${{ ['ann', 'bob'] }}"
    item_key: "\${{ item }}"
    key: "\${{ 'welcome:' + item }}"
    with: { to: "\${{ item }}" }
`;
    const first = await run(yaml);
    const second = await run(yaml);
    expect(first.status).toBe('completed');
    expect(second.status).toBe('completed');
    expect(calls.performed).toEqual(['ann', 'bob']);
    expect(second.steps[0]!.effects).toBe(0);
    const effects = await store.effects.ofRun(first.run_id);
    expect(effects.map((e) => [e.key, e.status])).toEqual([
      ['send:welcome:ann', 'done'],
      ['send:welcome:bob', 'done'],
    ]);
  });

  it('never repeats a database write whose key was done, and hands later steps its first output', async () => {
    const yaml = `
name: write-once
trigger: { manual: {} }
steps:
  - id: save
    uses: sql.insert
    foreach: "\${{ [501, 502, 503] }}"
    item_key: "\${{ item }}"
    concurrency: 3
    key: "\${{ 'saved:' + item }}"
    with: { table: written, row: { id: "\${{ item }}", label: once }, returning: [id] }
  - id: ids
    uses: transform
    with: { value: "\${{ steps.save.output.results }}" }
`;
    const one = await run(yaml);
    const two = await run(yaml);
    expect(one.status).toBe('completed');
    expect(two.status).toBe('completed');
    expect(two.steps[0]!.effects).toBe(0);
    const results = (await store.runs.steps(two.run_id))[1]!.output as { value: { count: number; rows: { id: number }[] }[] };
    expect(results.value.map((r) => r.rows[0]!.id).sort()).toEqual([501, 502, 503]);
    const { n } = await first(db.query<{ n: number }>('SELECT count(*)::int AS n FROM written WHERE id > 500'));
    expect(n).toBe(3);
    await db.query('DELETE FROM written');
  });

  it('does not repeat an effect left in doubt by a crash, and says why', async () => {
    await db.kysely
      .insertInto('flow_effects')
      .values({ key: 'send:doubt:cy', run_id: 'r-crashed', step_id: 'send', item_key: 'cy', kind: 'message', status: 'reserved', summary: 'x', output: 'null', reserved_at: clock.now() })
      .execute();
    const result = await run(`
name: in-doubt
trigger: { manual: {} }
steps:
  - id: send
    uses: test.send
    key: "doubt:cy"
    with: { to: cy }
`);
    expect(result.status).toBe('failed');
    expect(result.error).toContain('was started by run r-crashed but never confirmed');
    expect(calls.performed).toEqual([]);
  });

  it('in a dry run plans effects and never performs them; reads still happen; the database refuses writes', async () => {
    const dir = join(out, 'dry');
    const result = await run(
      `
name: dry
trigger: { manual: {} }
steps:
  - id: read
    uses: sql.query
    with: { sql: "SELECT id, name FROM items WHERE id <= 3 ORDER BY id" }
  - id: send
    uses: test.send
    foreach: "\${{ steps.read.output.rows }}"
    quota: daily
    with: { to: "\${{ item.name }}", units: 2 }
  - id: write
    uses: sql.insert
    with: { table: written, row: { id: 1, label: x } }
  - id: sneaky
    uses: sql.query
    retry: { attempts: 1 }
    with: { sql: "INSERT INTO written (id, label) VALUES (99, 'sneaky') RETURNING id" }
`,
      { dryRun: true, outDir: dir },
    );
    expect(calls.performed).toEqual([]);
    expect(calls.planned).toEqual(['item-1', 'item-2', 'item-3']);
    expect(result.dry_run).toBe(true);
    expect(result.status).toBe('failed');
    expect(result.steps.find((s) => s.id === 'sneaky')!.error).toMatch(/read-only transaction/);
    const { n } = await first(db.query<{ n: number }>('SELECT count(*)::int AS n FROM written'));
    expect(n).toBe(0);
    expect(result.effects.map((e) => [e.step, e.kind, e.summary, e.slot?.position, e.slot?.label])).toEqual([
      ['send', 'message', 'message to item-1', 1, 'Mon 23 Nov 09:00-17:00 Europe/London'],
      ['send', 'message', 'message to item-2', 2, 'Mon 23 Nov 09:00-17:00 Europe/London'],
      ['send', 'message', 'message to item-3', 1, 'Tue 24 Nov 09:00-17:00 Europe/London'],
      ['write', 'db.write', 'insert 1 row into written', undefined, undefined],
    ]);
    expect(result.cost).toEqual({ units: { widget_units: 6 }, usd: 3 });
    const files = readdirSync(dir).sort();
    expect(files).toContain('effects.json');
    expect(files).toContain('summary.txt');
    expect(files.filter((f) => f.endsWith('message.txt'))).toHaveLength(3);
    expect(JSON.parse(readFileSync(join(dir, 'effects.json'), 'utf8'))).toHaveLength(4);
  });

  it('stops taking items on a stop request, ends interrupted, and resumes without repeating anything', async () => {
    const stop = new AbortController();
    const events = new RunEvents();
    let done = 0;
    events.on('item:done', () => {
      if (++done === 40) stop.abort();
    });
    const yaml = `
name: resumable
trigger: { manual: {} }
steps:
  - id: send
    uses: test.send
    foreach: { query: "SELECT id, name FROM items WHERE id <= 200", page_size: 25 }
    concurrency: 4
    with: { to: "\${{ item.name }}" }
  - id: after
    uses: log
    with: { message: "sent \${{ steps.send.output.succeeded }}" }
`;
    const first = await run(yaml, { stop: stop.signal, events });
    expect(first.status).toBe('interrupted');
    const performedBefore = calls.performed.length;
    expect(performedBefore).toBeGreaterThanOrEqual(40);
    expect(performedBefore).toBeLessThan(200);
    expect((await store.runs.get(first.run_id))!.status).toBe('interrupted');

    const resumed = await run(yaml, { resume: first.run_id });
    expect(resumed.run_id).toBe(first.run_id);
    expect(resumed.status).toBe('completed');
    expect(calls.performed).toHaveLength(200);
    expect(new Set(calls.performed).size).toBe(200);
    const steps = await store.runs.steps(first.run_id);
    expect(steps.map((s) => [s.step_id, s.status])).toEqual([
      ['send', 'completed'],
      ['after', 'completed'],
    ]);
    expect(steps[1]!.output).toEqual({ message: 'sent 200' });
  });

  it('skips items whose when is false, and records why items failed', async () => {
    const result = await run(`
name: when
trigger: { manual: {} }
steps:
  - id: each
    uses: test.flaky
    foreach: "\${{ range(0, 6) }}"
    when: "\${{ item % 2 == 0 }}"
    retry: { attempts: 1 }
    with: { key: "w\${{ item }}", failures: "\${{ item == 4 ? 1 : 0 }}", mode: fatal }
`);
    expect(result.steps[0]!.items).toEqual({ total: 6, succeeded: 2, failed: 1, skipped: 3 });
    expect(result.failures).toEqual([{ step: 'each', item: '4', error: 'bad input for w4' }]);
  });

  it('keeps secret values out of run records and artifacts', async () => {
    const env = { WIDGET_API_KEY: 'sk-live-abcdef123456', DATABASE_URL: 'postgres://app:hunter2secret@db.internal/prod' };
    const scrub = createScrubber(env);
    const scrubbedStore = new RunStore(db, scrub);
    const dir = join(out, 'secrets');
    const yaml = `
name: secrets
trigger: { manual: {} }
inputs: { token: { type: string } }
steps:
  - id: echo
    uses: transform
    with: { value: "key=\${{ env.WIDGET_API_KEY }} url=\${{ env.DATABASE_URL }} token=\${{ inputs.token }}" }
  - id: send
    uses: test.send
    with: { to: "\${{ env.WIDGET_API_KEY }}" }
`;
    const live = await executeRun({ pipeline: pipelineFrom(yaml), config: testConfig, store: scrubbedStore, clock, env, scrub, inputs: { token: 'sk-live-abcdef123456' } });
    const dry = await executeRun({ pipeline: pipelineFrom(yaml), config: testConfig, store: scrubbedStore, clock, env, scrub, inputs: { token: 'x' }, dryRun: true, outDir: dir });
    const records = JSON.stringify([
      await db.query('SELECT * FROM flow_runs WHERE id = $1 OR id = $2', [live.run_id, dry.run_id]),
      await db.query('SELECT * FROM flow_steps WHERE run_id = $1 OR run_id = $2', [live.run_id, dry.run_id]),
      await db.query('SELECT * FROM flow_effects WHERE run_id = $1', [live.run_id]),
    ]);
    const artifacts = readdirSync(dir)
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .join('\n');
    for (const text of [records, artifacts, JSON.stringify(dry)]) {
      expect(text).not.toContain('sk-live-abcdef123456');
      expect(text).not.toContain('hunter2secret');
      expect(text).toContain('[redacted]');
    }
    expect(calls.performed).toEqual(['sk-live-abcdef123456']); // the step itself got the real value
  });

  it('refuses to resume a completed run or a dry run', async () => {
    const yaml = 'name: tiny\ntrigger: { manual: {} }\nsteps:\n  - { id: a, uses: log, with: { message: hi } }\n';
    const done = await run(yaml);
    await expect(run(yaml, { resume: done.run_id })).rejects.toThrow(/already completed/);
    const dry = await run(yaml, { dryRun: true });
    await expect(run(yaml, { resume: dry.run_id })).rejects.toThrow(/was a dry run/);
  });
});
