import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budgetPeriod } from '../engine/flow-control/budget-spec.ts';
import { ManualClock } from '../engine/clock.ts';
import type { EngineConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { testDatabases } from './helpers/db.ts';
import { calls, diagnosticsOf, pipelineFrom, testConfig } from './helpers/pipeline.ts';

const config: EngineConfig = { ...testConfig, budgets: { api: { per: 'calendar_week', limits: { widget_units: 10, usd: 100 } } } };

describe('budgets', () => {
  it('are checked when the pipeline is loaded', () => {
    const yaml = `
name: b
trigger: { manual: {} }
steps:
  - { id: send, uses: test.send, budget: apii, with: { to: x } }
`;
    expect(diagnosticsOf(yaml, undefined, config)).toEqual(['p.yaml:5:42: steps[0].budget: unknown budget "apii" (did you mean "api"?)']);
  });
});

describe.each(testDatabases)('budgets on $name', ({ open }) => {
  let db: Database;
  beforeAll(async () => (db = await open()));
  afterAll(() => db.close());

  it('reserve each call\'s estimate, settle to what it spent, and stop the run cleanly when the next call would pass the limit', async () => {
    calls.reset();
    // Each call may cost 3 units (its plan) and really costs 2: four fit in 10, the fifth would not.
    const pipeline = pipelineFrom(
      `
name: budgeted
trigger: { manual: {} }
steps:
  - id: send
    uses: test.send
    foreach: "\${{ ['a', 'b', 'c', 'd', 'e', 'f'] }}"
    item_key: "\${{ item }}"
    budget: api
    keep_results: 0
    key: "\${{ 'budgeted:' + item }}"
    with: { to: "\${{ item }}", units: 3, spent: 2 }
`,
      undefined,
      config,
    );
    const clock = new ManualClock(new Date('2026-11-25T10:00:00Z'));
    const store = new RunStore(db);
    const first = await executeRun({ pipeline, config, store, clock });
    expect(first.status).toBe('waiting');
    expect(first.error).toBe('budget api reached: 8 of 10 widget_units spent this calendar week, and the next call may take 3; resumes 2026-11-30T00:00:00.000Z');
    expect(calls.performed).toEqual(['a', 'b', 'c', 'd']);
    const run = await store.runs.get(first.run_id);
    expect(run).toMatchObject({ status: 'waiting', waiting_reason: first.error });
    expect(new Date(run!.waiting_until!).toISOString()).toBe('2026-11-30T00:00:00.000Z');
    const use = { ...(await store.budgets.useNow('api', budgetPeriod(config.budgets!.api!, 'Europe/London', clock.now()).start)), start: budgetPeriod(config.budgets!.api!, 'Europe/London', clock.now()).start };
    expect(use.units).toEqual({ widget_units: 8 });
    expect(await db.query('SELECT 1 FROM flow_budget_ledger WHERE NOT settled')).toEqual([]);
    // The running totals agree with the ledger they summarise.
    const ledger = await db.query<{ n: string }>("SELECT sum((units->>'widget_units')::numeric) AS n FROM flow_budget_ledger WHERE budget = 'api' AND period_start = $1", [use.start]);
    expect(Number(ledger[0]!.n)).toBe(8);

    // Next week: the run resumes and finishes, repeating nothing.
    clock.advance(new Date('2026-11-30T00:00:01Z').getTime() - clock.now().getTime());
    const resumed = await executeRun({ pipeline, config, store, clock, resume: first.run_id });
    expect(resumed.status).toBe('completed');
    expect(calls.performed).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect((await store.budgets.useNow('api', budgetPeriod(config.budgets!.api!, 'Europe/London', clock.now()).start)).units).toEqual({ widget_units: 4 });
    const output = (await store.runs.steps(first.run_id)).find((s) => s.step_id === 'send')!.output as { results: unknown[]; succeeded: number };
    expect(output).toMatchObject({ results: [], succeeded: 6 }); // keep_results: 0
  });
});
