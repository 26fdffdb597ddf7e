import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClaudeBatches } from '../connectors/claude/batch.ts';
import { createClaudeAnalyst } from '../connectors/claude/client.ts';
import { claudeConnector } from '../connectors/claude/connector.ts';
import { startClaudeSandbox, type ClaudeSandbox } from '../connectors/claude/sandbox.ts';
import { ManualClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { silentLogger } from '../engine/log.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { Resources } from '../engine/resources.ts';
import { RunStore } from '../engine/store/index.ts';
import { createRegistry } from '../steps/index.ts';
import { categorise, metricsOf } from '../steps/prospects/categorise.ts';
import { comingWeek } from '../steps/linkedin/select.ts';
import { reportAnalyseBatch } from '../steps/report/analyse_batch.ts';
import { stepContext } from './helpers/context.ts';
import { sampleReportView } from './helpers/report-view.ts';
import { testDatabases } from './helpers/db.ts';
import { sandboxClaudeConfig } from './helpers/claude.ts';

/** Claude tokens a step spent or would spend, in a batch and singly. */
const claudeTokens = (units: Record<string, number>) => ({
  input: (units.claude_batch_input_tokens ?? 0) + (units.claude_input_tokens ?? 0),
  output: (units.claude_batch_output_tokens ?? 0) + (units.claude_output_tokens ?? 0),
});

/** The shipped weekly-enrich pipeline and config, on sandboxes, with an injected clock. */

const hasChromium = existsSync(process.env.CHROMIUM_PATH || '/usr/bin/chromium');
const registry = createRegistry();

function shipped(overrides: Partial<EngineConfig> = {}, state: string) {
  const { config, diagnostics } = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', {}, registry);
  expect(diagnostics).toEqual([]);
  const merged = { ...config!, ...overrides, connectors: { ...config!.connectors, storage: { dir: join(state, 'reports') } } } as EngineConfig;
  const loaded = loadPipeline(readFileSync('pipelines/weekly-enrich.yaml', 'utf8'), 'weekly-enrich.yaml', { registry, config: merged });
  expect(loaded.diagnostics).toEqual([]);
  return { config: merged, pipeline: loaded.pipeline! };
}

describe('categories and the LinkedIn week', () => {
  const categories = {
    rules: [
      { name: 'traffic-falling', when: '${{ metrics.traffic_trend <= -0.1 }}', reason: 'down ${{ round(-metrics.traffic_trend * 100) }}%' },
      { name: 'paid-heavy', when: '${{ metrics.paid_share >= 0.4 }}', reason: '${{ round(metrics.paid_share * 100) }}% paid' },
    ],
    default: { name: 'growth', reason: 'steady' },
  };

  it('computes metrics from the data and takes the first rule that holds, with its reason', () => {
    const intel = structuredClone(sampleReportView().intel);
    for (const k of intel.organicKeywords) k.trends = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5];
    const metrics = metricsOf(intel);
    expect(metrics.traffic_trend).toBe(-0.5);
    expect(categorise(categories, intel)).toMatchObject({ category: 'traffic-falling', reason: 'down 50%' });
    for (const k of intel.organicKeywords) k.trends = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    intel.overview = { ...intel.overview!, organicTraffic: 1000, paidTraffic: 1000 };
    expect(categorise(categories, intel)).toMatchObject({ category: 'paid-heavy', reason: '50% paid' });
    intel.overview = { ...intel.overview, paidTraffic: 0 };
    expect(categorise(categories, intel)).toMatchObject({ category: 'growth', reason: 'steady' });
    expect(categorise(categories, intel)).toEqual(categorise(categories, structuredClone(intel)));
  });

  it('names the coming week from Sunday night, in the business timezone', () => {
    expect(comingWeek(new Date('2026-11-29T22:00:00Z'), 'Europe/London')).toBe('2026-W49');
    expect(comingWeek(new Date('2026-12-27T22:00:00Z'), 'Europe/London')).toBe('2026-W53');
    expect(comingWeek(new Date('2027-01-03T22:00:00Z'), 'Europe/London')).toBe('2027-W01');
  });
});

describe.runIf(hasChromium).each(testDatabases)('weekly-enrich on $name', ({ open }) => {
  let db: Database;
  let state: string;
  let claude: ClaudeSandbox;
  beforeAll(async () => {
    db = await open();
    state = mkdtempSync(join(tmpdir(), 'flows-weekly-'));
    // Some batch requests come back errored or expired: they are redone one by one.
    claude = await startClaudeSandbox({ batchErrorRate: 0.2, batchExpireRate: 0.15 });
  });
  afterAll(async () => {
    await claude?.close();
    await db?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  const resourcesFor = (config: EngineConfig, clock: ManualClock) => {
    const local = sandboxClaudeConfig(claude.url, { max_tokens: 4096 });
    return new Resources({ config, env: {}, log: silentLogger, clock, projectDir: 'pipelines', stateDir: state }).provide(claudeConnector, {
      analyst: createClaudeAnalyst(local),
      batches: createClaudeBatches(local),
      model: local.model,
      maxTokens: local.max_tokens,
    });
  };
  let dryClaude = { input: 0, output: 0 };
  const count = async (sql: string, params: unknown[] = []) => Number((await db.query<{ n: string }>(sql, params))[0]!.n);

  it('plans the week in a dry run without writing anything', async () => {
    const clock = new ManualClock(new Date('2026-11-29T22:00:00Z'));
    const { config, pipeline } = shipped({}, state);
    const resources = resourcesFor(config, clock);
    const dry = await executeRun({ pipeline, config, store: new RunStore(db), clock, resources, dryRun: true, outDir: join(state, 'dry'), projectDir: 'pipelines' });
    await resources.close();
    expect(dry.status).toBe('completed');
    expect(dry.notes.map((n) => `${n.step}: ${n.text}`)).toEqual([
      // Two records have a LinkedIn profile and no domain: prospects, waiting for a domain to be enriched or reported on.
      'read: 25 records from weekly-list, linkedin-search: 20 prospects, 3 duplicates merged, 2 invalid (invalid domain 1, invalid LinkedIn URL 1), 1 email dropped (invalid email 1)',
      'census: 18 new (18 from this import), 0 stale (to enrich), 0 fresh (skipped: enriched since 2026-10-30), 2 waiting for a domain (skipped: enrichment needs one); data from before 2026-10-30 is dropped',
      'select: LinkedIn 2026-W49: 14 of 14 eligible prospects (14 of them from this import, unscored until enriched); 2 with a profile wait for a domain (a report needs one)',
    ]);
    expect(dry.cost.units.semrush_units).toBe(18 * 1430);
    dryClaude = claudeTokens(dry.steps.find((s) => s.id === 'analyses')!.cost.units);
    expect(dryClaude.input).toBeGreaterThan(0);
    expect(dryClaude.output).toBeGreaterThan(0);
    expect(dry.effects.find((e) => e.step === 'analyses')!.summary).toBe('Claude batch of 14 analyses (half price)');
    expect(await count('SELECT count(*) AS n FROM prospects')).toBe(0);
  });

  it('imports, enriches, categorises, chooses the LinkedIn week and makes its reports; a second run the same night repeats nothing', async () => {
    const clock = new ManualClock(new Date('2026-11-29T22:00:00Z'));
    const { config, pipeline } = shipped({}, state);
    // Data older than the retention is dropped and the prospect enriched again.
    await db.query("INSERT INTO prospects (domain, company_name, linkedin_url, source) VALUES ('old-data.example', 'Old Data Ltd', 'https://www.linkedin.com/in/old-data/', 'earlier')");
    await db.query("INSERT INTO prospect_intelligence (domain, source, data, fetched_at) VALUES ('old-data.example', 'search', '{}', '2026-10-01T00:00:00Z')");
    const resources = resourcesFor(config, clock);
    const store = new RunStore(db);
    const run = await executeRun({ pipeline, config, store, clock, resources, projectDir: 'pipelines' });
    expect(run.status).toBe('completed');
    expect(run.notes.find((n) => n.step === 'census')!.text).toMatch(/^18 new \(18 from this import\), 1 stale \(to enrich\), 0 fresh/);
    expect(Object.fromEntries(run.skipped.map((s) => [s.reason, s.n]))).toEqual({ 'invalid domain': 1, 'invalid LinkedIn URL': 1 });
    expect(run.notes.find((n) => n.step === 'census')!.text).toContain(', 2 waiting for a domain (skipped: enrichment needs one);');
    expect(await count("SELECT count(*) AS n FROM prospect_intelligence WHERE source = 'search' AND fetched_at >= '2026-11-29'")).toBe(19);
    expect(await count('SELECT count(*) AS n FROM prospects WHERE domain IS NOT NULL AND (category IS NULL OR category_reason IS NULL OR metrics IS NULL)')).toBe(0);
    expect(await count('SELECT count(*) AS n FROM prospects WHERE domain IS NULL AND category IS NULL AND linkedin_url IS NOT NULL')).toBe(2);
    // The search data is stored once, in prospect_intelligence, not again with each call's effect record.
    expect(await count("SELECT count(*) AS n FROM flow_effects WHERE step_id = 'intel' AND status = 'done'")).toBe(19);
    expect(await count("SELECT count(*) AS n FROM flow_effects WHERE step_id = 'intel' AND output IS NOT NULL AND output::text <> 'null'")).toBe(0);

    const selected = await db.query<{ week: string; rank: number; report_id: string | null }>('SELECT week, rank, report_id FROM linkedin_selections ORDER BY rank');
    expect(selected.map((s) => s.week)).toEqual(Array(15).fill('2026-W49')); // every prospect with a profile, fewer than 85
    expect(selected.every((s) => s.report_id !== null)).toBe(true);
    const analyses = run.steps.find((s) => s.id === 'analyses')!;
    expect(analyses.cost.units.claude_batch_input_tokens).toBeGreaterThan(0);
    const batchOutput = (await store.runs.steps(run.run_id)).find((s) => s.step_id === 'analyses')!.output as { counts: { retried: number; submitted: number } };
    expect(batchOutput.counts.submitted).toBe(15);
    expect(batchOutput.counts.retried).toBeGreaterThan(0); // errored and expired requests, made again singly
    expect(run.steps.find((s) => s.id === 'analyses')!.cost.units.claude_input_tokens).toBeGreaterThan(0);
    // The dry run's estimate of the reports is within a factor of two of what they cost.
    const spent = claudeTokens(analyses.cost.units);
    for (const side of ['input', 'output'] as const) {
      expect(dryClaude[side] / spent[side], side).toBeGreaterThan(0.5);
      expect(dryClaude[side] / spent[side], side).toBeLessThan(2);
    }
    expect(await count('SELECT count(*) AS n FROM generated_reports')).toBe(15);
    expect(await count('SELECT count(*) AS n FROM claude_batches')).toBe(1);

    clock.advance(90 * 60_000); // run again the same night: nothing to do
    const again = await executeRun({ pipeline, config, store, clock, resources, projectDir: 'pipelines' });
    await resources.close();
    expect(again.status).toBe('completed');
    expect(again.notes.find((n) => n.step === 'census')!.text).toMatch(/^0 new \(0 from this import\), 0 stale \(to enrich\), 19 fresh/);
    expect(again.notes.find((n) => n.step === 'select')!.text).toBe('LinkedIn 2026-W49: chosen before (15 prospects, 0 without a report yet)');
    expect(await count('SELECT count(*) AS n FROM generated_reports')).toBe(15);
    expect(await count('SELECT count(*) AS n FROM claude_batches')).toBe(1);
    expect(claude.batches).toHaveLength(1);
  }, 180_000);

  it('polls the batch it already submitted when the step runs again after a crash, instead of paying for another', async () => {
    let now = Date.now();
    const slow = await startClaudeSandbox({ batchProcessingMs: 3_600_000, now: () => now });
    const { config } = shipped({}, state);
    const local = sandboxClaudeConfig(slow.url, { max_tokens: 4096 });
    const resources = new Resources({ config, env: {}, log: silentLogger, clock: new ManualClock(new Date()), projectDir: 'pipelines', stateDir: state }).provide(claudeConnector, {
      analyst: createClaudeAnalyst(local),
      batches: createClaudeBatches(local),
      model: local.model,
      maxTokens: local.max_tokens,
    });
    const prospects = await db.query<{ prospect_id: string; domain: string; company_name: string | null }>(
      "SELECT p.id AS prospect_id, p.domain, p.company_name FROM prospects p JOIN prospect_intelligence i ON i.domain = p.domain AND i.source = 'search' ORDER BY p.domain LIMIT 3",
    );
    const crash = new AbortController();
    // The process "dies" right after the batch id is recorded.
    const db_ = {
      writable: true,
      query: async <R,>(text: string, params?: readonly unknown[]) => {
        const rows = await db.query<R>(text, params);
        if (text.startsWith('INSERT INTO claude_batches')) crash.abort(new Error('killed'));
        return rows;
      },
    };
    const context = (signal: AbortSignal) =>
      stepContext(db_, config, resources, { run: { id: 'r-crash', pipeline: 'weekly-enrich', dryRun: false }, step: { id: 'analyses' }, effectKey: 'weekly-enrich:analyses:crash-test', signal });
    try {
      await expect(reportAnalyseBatch.run(context(crash.signal), { prospects, poll: '10ms' })).rejects.toThrow();
      expect(slow.batches).toHaveLength(1);
      now += 3_600_001; // the batch has ended meanwhile
      const done = await reportAnalyseBatch.run(context(new AbortController().signal), { prospects, poll: '10ms' });
      expect(slow.batches).toHaveLength(1);
      expect(done.batch_id).toBe(slow.batches[0]!.id);
      expect(done.results.map((r) => r.prospect_id)).toEqual(prospects.map((p) => p.prospect_id));
    } finally {
      await resources.close();
      await slow.close();
    }
  });

  it('redoes singly a submitted prospect the batch results leave out, so each ends with a result', async () => {
    const prospects = await db.query<{ prospect_id: string; domain: string; company_name: string | null }>(
      "SELECT p.id AS prospect_id, p.domain, p.company_name FROM prospects p JOIN prospect_intelligence i ON i.domain = p.domain AND i.source = 'search' ORDER BY p.domain LIMIT 3",
    );
    const left = `p_${prospects[1]!.prospect_id.replace(/-/g, '')}`;
    const lossy = await startClaudeSandbox({ batchOmittedIds: [left] });
    const { config } = shipped({}, state);
    const local = sandboxClaudeConfig(lossy.url, { max_tokens: 4096 });
    const resources = new Resources({ config, env: {}, log: silentLogger, clock: new ManualClock(new Date()), projectDir: 'pipelines', stateDir: state }).provide(claudeConnector, {
      analyst: createClaudeAnalyst(local),
      batches: createClaudeBatches(local),
      model: local.model,
      maxTokens: local.max_tokens,
    });
    const writable = { writable: true, query: <R,>(text: string, params?: readonly unknown[]) => db.query<R>(text, params) };
    const context = stepContext(writable, config, resources, { run: { id: 'r-lossy', pipeline: 'weekly-enrich', dryRun: false }, step: { id: 'analyses' }, effectKey: 'weekly-enrich:analyses:lossy', signal: new AbortController().signal });
    try {
      const done = await reportAnalyseBatch.run(context, { prospects, poll: '10ms' });
      expect(done.results.map((r) => [r.prospect_id, r.via])).toEqual(prospects.map((p, i) => [p.prospect_id, i === 1 ? 'single' : 'batch']));
      expect(done.counts).toEqual({ submitted: 3, succeeded: 2, retried: 1, failed: { missing: 1 } });
      expect(lossy.batches[0]!.requests.map((r) => r.custom_id)).toContain(left);
    } finally {
      await resources.close();
      await lossy.close();
    }
  });

  it('stops cleanly when the weekly budget would be passed, and goes on when the next week starts', async () => {
    await db.query('TRUNCATE prospect_intelligence, linkedin_selections, claude_batches, flow_budget_ledger');
    const clock = new ManualClock(new Date('2026-12-06T22:00:00Z'));
    // Three collections' worth of SEMrush units (each may take 1,430).
    const { config, pipeline } = shipped({ budgets: { 'weekly-api': { per: 'calendar_week', limits: { semrush_units: 4500 } } } }, state);
    const resources = resourcesFor(config, clock);
    const store = new RunStore(db);
    const first = await executeRun({ pipeline, config, store, clock, resources, projectDir: 'pipelines' });
    expect(first.status).toBe('waiting');
    expect(first.error).toMatch(/^budget weekly-api reached: [\d,]+ of 4,500 semrush_units spent this calendar week, and the next call may take 1,430; resumes 2026-12-07T00:00:00.000Z$/);
    const enriched = await count("SELECT count(*) AS n FROM prospect_intelligence WHERE source = 'search'");
    expect(enriched).toBeGreaterThanOrEqual(3);
    expect(enriched).toBeLessThan(19);
    expect(await count('SELECT count(*) AS n FROM linkedin_selections')).toBe(0);

    clock.advance(new Date('2026-12-07T00:00:01Z').getTime() - clock.now().getTime());
    const second = await executeRun({ pipeline, config, store, clock, resources, projectDir: 'pipelines', resume: first.run_id });
    expect(second.status).toBe('waiting'); // the new week's budget runs out too: 19 domains need more than 4,500 units
    clock.advance(7 * 86_400_000);
    let last = second;
    for (let week = 0; week < 8 && last.status === 'waiting'; week++) {
      last = await executeRun({ pipeline, config, store, clock, resources, projectDir: 'pipelines', resume: first.run_id });
      clock.advance(7 * 86_400_000);
    }
    await resources.close();
    expect(last.status).toBe('completed');
    expect(await count("SELECT count(*) AS n FROM prospect_intelligence WHERE source = 'search'")).toBe(19);
  }, 180_000);
});
