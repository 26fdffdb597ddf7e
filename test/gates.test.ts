import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { formatDiagnostic } from '../engine/errors.ts';
import { executeRun } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { testDatabases } from './helpers/db.ts';
import { diagnosticsOf, pipelineFrom, testRegistry } from './helpers/pipeline.ts';

/**
 * Flow control applies on every path: a gate a step names is either one its type can take
 * (and then it holds, whatever kind of call the step makes) or a load error at its place.
 */
const config: EngineConfig = {
  business: { name: 'T', timezone: 'Europe/London' },
  quotas: { tiny: { caps: { day: 1 } } },
  budgets: { broke: { per: 'day', limits: { usd: 0 } } },
  prices: { partner_api_call: 0.01 },
};

const reads = (gate: string, withExtra = '') => `
name: gated-reads
trigger: { manual: {} }
inputs: { url: { type: string } }
steps:
  - id: fetch
    uses: http.request
    foreach: "\${{ [1, 2, 3] }}"
    ${gate}
    with: { url: "\${{ inputs.url }}/item/\${{ item }}"${withExtra} }
`;

describe('gates a step cannot take are load errors at their place', () => {
  const at = (yaml: string) => diagnosticsOf(yaml, testRegistry(), config);

  it('a quota or a rate limit on a step with no outside call', () => {
    const yaml = `
name: p
trigger: { manual: {} }
steps:
  - { id: shape, uses: transform, quota: tiny, with: { value: 1 } }
  - { id: note, uses: log, rate_limit: semrush, in_doubt: repeat, with: { message: hi } }
`;
    expect(at(yaml)).toEqual([
      'p.yaml:5:35: steps[0].quota: transform makes no outside call, so quota "tiny" has nothing to count (a quota goes on a step that sends, writes or calls out)',
      'p.yaml:6:28: steps[1].rate_limit: log makes no outside call, so rate limit "semrush" has nothing to pace',
      'p.yaml:6:40: steps[1].rate_limit: unknown rate limit "semrush"; the config declares no rate_limits',
      'p.yaml:6:49: steps[1].in_doubt: log makes no outside call, so nothing of it can be in doubt',
    ]);
  });

  it('a budget on a step whose cost is unknown', () => {
    expect(at(reads('budget: broke'))).toEqual([
      'p.yaml:9:5: steps[0].budget: a budget needs to know what one call costs: add with.cost, the units one call spends, e.g. cost: { partner_api_call: 1 }',
    ]);
    const yaml = `
name: p
trigger: { manual: {} }
steps:
  - { id: q, uses: sql.query, budget: broke, with: { sql: "SELECT 1" } }
`;
    expect(at(yaml)).toEqual(['p.yaml:5:31: steps[0].budget: sql.query reports no cost, so budget "broke" cannot meter it (a budget goes on a paid call, such as intel.collect)']);
  });
});

describe('the files written before periods had names get one message saying what to write', () => {
  it('for quotas and budgets', () => {
    const text = `business: { name: B, timezone: Europe/London }
quotas:
  a: { cap: 17, per: day }
  b: { cap: 85, per: week, window: "09:00-17:00" }
budgets:
  w: { per: week, limits: { usd: 5 } }
`;
    expect(loadConfig(text, 'flows.config.yaml', {}).diagnostics.map(formatDiagnostic)).toEqual([
      'flows.config.yaml:3:6: quotas.a: caps are named by period now: write caps: { day: 17 } instead of cap and per',
      'flows.config.yaml:4:6: quotas.b: caps are named by period now: write caps: { rolling_7d: 85 } (any 7 days) or caps: { calendar_week: 85 } (Monday to Monday) instead of cap and per',
      'flows.config.yaml:6:13: budgets.w.per: periods are named explicitly now: write per: calendar_week (Monday 00:00 to Monday 00:00)',
    ]);
  });
});

describe.each(testDatabases)('gates hold on every path, on $name', ({ open }) => {
  let db: Database;
  let store: RunStore;
  let server: Server;
  let url: string;
  const hits: string[] = [];
  beforeAll(async () => {
    db = await open();
    store = new RunStore(db);
    server = createServer((req, res) => {
      hits.push(req.url!);
      res.setHeader('content-type', 'application/json');
      res.end('{"ok":true}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await db?.close();
  });
  beforeEach(async () => {
    hits.length = 0;
    await db.query('DELETE FROM flow_quota_ledger');
  });

  it('a quota caps reads that have no effect: one GET a day, counted in the ledger', async () => {
    const clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    const result = await executeRun({ pipeline: pipelineFrom(reads('quota: tiny'), testRegistry(), config), config, store, clock, inputs: { url } });
    expect(result.status).toBe('completed');
    expect(hits).toEqual(['/item/1', '/item/2', '/item/3']);
    const ledger = await db.query<{ at: Date; effect_key: string | null }>("SELECT at, effect_key FROM flow_quota_ledger WHERE quota = 'tiny' ORDER BY at");
    expect(ledger.map((r) => [new Date(r.at).toISOString(), r.effect_key])).toEqual([
      ['2026-11-23T10:00:00.000Z', null],
      ['2026-11-24T00:00:00.000Z', null], // midnight in London: the next day
      ['2026-11-25T00:00:00.000Z', null],
    ]);
  });

  it('a budget stops reads that cost money before the first call', async () => {
    const clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    const pipeline = pipelineFrom(reads('budget: broke', ', cost: { partner_api_call: 1 }'), testRegistry(), config);
    const result = await executeRun({ pipeline, config, store, clock, inputs: { url } });
    expect(result.status).toBe('waiting');
    expect(result.error).toBe('budget broke reached: 0 of 0 usd spent this day, and the next call may take 0.01; resumes 2026-11-24T00:00:00.000Z');
    expect(hits).toEqual([]);
  });

  it('a dry run plans a gated read instead of making it', async () => {
    const clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    const dry = await executeRun({ pipeline: pipelineFrom(reads('quota: tiny'), testRegistry(), config), config, store, clock, inputs: { url }, dryRun: true, outDir: `/tmp/flows-gates-${process.pid}` });
    expect(hits).toEqual([]);
    expect(dry.effects.map((e) => [e.kind, e.slot?.at])).toEqual([
      ['call', '2026-11-23T10:00:00.000Z'],
      ['call', '2026-11-24T00:00:00.000Z'],
      ['call', '2026-11-25T00:00:00.000Z'],
    ]);
  });

  it('a rule in the pipeline pauses a quota: the calls under it wait out the pause', async () => {
    const clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    const yaml = `
name: pause-rule
trigger: { manual: {} }
inputs: { url: { type: string }, bounce_rate: { type: number, default: 0.07 } }
steps:
  - id: guard
    uses: quota.pause
    when: "\${{ inputs.bounce_rate > 0.05 }}"
    with: { quota: tiny, reason: "bounce rate above 5%", for: 2h }
  - id: fetch
    uses: http.request
    quota: tiny
    with: { url: "\${{ inputs.url }}/after-pause" }
`;
    const result = await executeRun({ pipeline: pipelineFrom(yaml, testRegistry(), config), config, store, clock, inputs: { url } });
    expect(result.status).toBe('completed');
    const [row] = await db.query<{ at: Date }>("SELECT at FROM flow_quota_ledger WHERE quota = 'tiny'");
    expect(new Date(row!.at).toISOString()).toBe('2026-11-23T12:00:00.000Z');
    expect((await store.quotas.pauses(new Date('2026-11-23T11:00:00Z')))[0]).toMatchObject({ quota: 'tiny', key: '', reason: 'bounce rate above 5%', by: expect.stringMatching(/step guard$/) });
    await db.query('DELETE FROM flow_quota_pauses');
  });
});
