/**
 * The weekly-enrich bench's figures as text: per database kind, the steps of the big run,
 * what it cost, counted and stored, the enrich step against the bare loop, and the memory
 * of the big run against the reference run; each goal met or not met.
 */
import type { EngineConfig } from '../engine/config.ts';
import type { RunResult } from '../engine/executor/run.ts';
import { table } from './common.ts';
import { fmt } from './report-kit.ts';
import type { ProspectFile } from './weekly-data.ts';
import type { BareResult, DbKind, MeasuredRun, RunFootprint } from './weekly-run.ts';

export const GOALS = { enrichRatio: 1.5, memoryRatio: 1.5 };
/** Calls intel.collect makes per domain. */
export const CALLS = { semrush: 4, spyfu: 3 };

/** Everything measured on one kind of database. */
export interface Measured {
  kind: DbKind;
  /** The reference run (1,000 prospects), for memory. */
  small: MeasuredRun;
  dry: MeasuredRun;
  run: MeasuredRun;
  stored: RunFootprint;
  bare: BareResult;
  file: ProspectFile;
}

export interface Goal {
  db: DbKind;
  goal: string;
  met: boolean;
  detail: string;
}

export interface ReportContext {
  prospects: number;
  reference: number;
  /** What the config changed from the shipped one, for the heading. */
  settings: string[];
  realLimits: boolean;
  /** The shipped config: its rate limits and budget say what the real run would meet. */
  shipped: EngineConfig;
}

const metText = (met: boolean) => (met ? 'met' : 'not met');
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const secs = (ms: number) => fmt(ms / 1000, 2);
const kib = (b: number) => `${int(b / 1024)} KiB`;
const STEP_WORK: Record<string, (n: number) => string> = {
  enrich: (n) => `${int(n)} items, ${CALLS.semrush} SEMrush + ${CALLS.spyfu} SpyFu calls each`,
  analyses: () => 'one Claude message batch',
  reports: (n) => `${int(n)} PDFs`,
};
const workOf = (r: RunResult, id: string, items: number | undefined) =>
  (STEP_WORK[id]?.(items ?? 0) ?? (items === undefined ? '-' : `${int(items)} items`)) + (r.steps.find((s) => s.id === id)?.status === 'running' ? ' (stopped in it)' : '');

export function costLine(cost: { units: Record<string, number>; usd: number }): string {
  return `${Object.entries(cost.units).map(([u, n]) => `${int(n)} ${u}`).join(', ')} = $${cost.usd.toFixed(2)}`;
}

/** Items per second over a stretch of the enrich step's finished items. */
function throughput(done: number[]): string | undefined {
  const tenth = Math.floor(done.length / 10);
  if (tenth < 2) return undefined;
  const rate = (from: number, to: number) => fmt((to - from) / ((done[to]! - done[from]!) / 1000), 0);
  const mid = Math.floor(done.length / 2);
  const last = done.length - 1;
  return `enrich throughput: first 10% of items ${rate(0, tenth)}/s, middle 10% ${rate(mid - Math.floor(tenth / 2), mid + Math.ceil(tenth / 2))}/s, last 10% ${rate(last - tenth, last)}/s`;
}

export function renderMeasured(m: Measured, ctx: ReportContext): { lines: string[]; goals: Goal[] } {
  const { run, dry, small, stored, bare, file } = m;
  const r = run.result;
  const out: string[] = [];
  const goals: Goal[] = [];
  const enrich = run.steps.find((s) => s.id === 'enrich')!;
  const enrichSummary = r.steps.find((s) => s.id === 'enrich')!;
  const enriched = enrichSummary.items?.succeeded ?? 0;
  const between = run.wallMs - run.steps.reduce((s, st) => s + st.ms, 0);

  out.push('', `weekly-enrich, ${int(ctx.prospects)} prospects on ${m.kind}: run ${r.status}${r.error ? ` (${r.error})` : ''}; ${ctx.settings.join(', ')}`);
  out.push(
    table(
      ['step', 'work', 'wall s', 'items/s', 'share', 'peak RSS MB'],
      [
        ...run.steps.map((s) => [
          s.id,
          workOf(r, s.id, s.items),
          secs(s.ms),
          s.items && (s.id === 'save' || s.id === 'enrich') ? fmt(s.items / (s.ms / 1000), 0) : '-',
          `${fmt((s.ms / run.wallMs) * 100)}%`,
          fmt(s.peakRssMb, 0),
        ]),
        ['(between steps)', 'run and step records', secs(between), '-', `${fmt((between / run.wallMs) * 100)}%`, '-'],
        ['total', `${run.steps.length} of ${r.steps.length} steps`, secs(run.wallMs), '-', '100.0%', fmt(run.peakRssMb, 0)],
      ],
      2,
    ),
  );
  const rates = throughput(run.enrichDone);
  if (rates) out.push(rates);
  out.push(`dry run first: ${secs(dry.wallMs)} s (${dry.result.status}; ${int(dry.result.effects.length)} planned effects, estimated ${costLine(dry.result.cost)})`);
  out.push(`cost: ${costLine(r.cost)}`);
  const skipped = r.skipped.map((s) => `${s.reason} ${s.n}`).join(', ') || 'none';
  const selectNote = r.notes.find((n) => n.step === 'select')?.text.split(';')[0];
  out.push(
    `counts: CSV ${int(file.rows)} rows (bad: ${file.noDomain} without a domain, ${file.invalidEmail} with an invalid email; ${file.duplicates} duplicates; ${int(file.linkedin)} LinkedIn URLs); ` +
      `prospects saved ${int(stored.prospects)}; skipped: ${skipped}; enriched ${int(stored.enriched)}; selected ${stored.selected}${selectNote ? ` (${selectNote})` : ''}; reports made ${stored.reports}`,
  );
  out.push(
    `memory: RSS ${fmt(run.startRssMb, 0)} MB at the start, peak ${fmt(run.peakRssMb, 0)} MB; peak heap used ${fmt(run.peakHeapMb, 0)} MB; ` +
      `peak external (buffers and wasm memory, where PGlite keeps its database) ${fmt(run.peakExternalMb, 0)} MB`,
  );
  out.push(`step outputs recorded: ${Object.entries(stored.stepOutputBytes).map(([k, v]) => `${k} ${kib(v)}`).join(', ')}`);
  out.push(`stored search data: ${kib(stored.intelAvgBytes)} of JSON per domain on average`);
  out.push(`tables after the run: ${Object.entries(stored.tableBytes).map(([k, v]) => `${k} ${fmt(v / 1024 / 1024, 1)} MiB`).join(', ')}`);
  out.push(...atShippedSettings(ctx, enrichSummary, enriched));

  const ratio = enrich.ms / bare.ms;
  out.push('', `enrich: engine against a bare loop (collectIntel + upsert + category UPDATE, 10 at a time, same sandboxes, ${m.kind})`);
  out.push(
    table(
      ['case', 'domains', 'wall s', 'domains/s', 'peak RSS MB'],
      [
        ['engine: enrich step', int(enrich.items ?? 0), secs(enrich.ms), fmt((enrich.items ?? 0) / (enrich.ms / 1000), 0), fmt(enrich.peakRssMb, 0)],
        ['bare loop', int(bare.domains), secs(bare.ms), fmt(bare.domains / (bare.ms / 1000), 0), fmt(bare.peakRssMb, 0)],
      ],
      1,
    ),
  );
  out.push(`ratio engine/bare: ${fmt(ratio, 2)}; goal ≤ ${GOALS.enrichRatio}: ${metText(ratio <= GOALS.enrichRatio)}`);
  goals.push({ db: m.kind, goal: `enrich engine/bare ≤ ${GOALS.enrichRatio}`, met: ratio <= GOALS.enrichRatio, detail: `${fmt(ratio, 2)} (${secs(enrich.ms)} / ${secs(bare.ms)} s)` });

  const memRatio = run.peakRssMb / small.peakRssMb;
  out.push('', `memory: peak RSS of the ${int(ctx.prospects)}-prospect run against a ${int(ctx.reference)}-prospect run before it (${m.kind}, same process)`);
  out.push(
    table(
      ['run', 'wall s', 'enrich s', 'RSS at start MB', 'peak RSS MB', 'peak in step', 'peak heap MB', 'peak external MB'],
      [small, run].map((x, i) => {
        const top = x.steps.reduce((a, b) => ((b.peakRssMb || 0) > (a.peakRssMb || 0) ? b : a));
        const enrichMs = x.steps.find((s) => s.id === 'enrich')?.ms ?? NaN;
        const size = i ? ctx.prospects : ctx.reference;
        return [`${int(size)} prospects`, secs(x.wallMs), secs(enrichMs), fmt(x.startRssMb, 0), fmt(x.peakRssMb, 0), top.id, fmt(x.peakHeapMb, 0), fmt(x.peakExternalMb, 0)];
      }),
      1,
    ),
  );
  out.push(`ratio: ${fmt(memRatio, 2)}; goal ≤ ${GOALS.memoryRatio}: ${metText(memRatio <= GOALS.memoryRatio)}`);
  goals.push({
    db: m.kind,
    goal: `peak RSS ${int(ctx.prospects)} / ${int(ctx.reference)} prospects ≤ ${GOALS.memoryRatio}`,
    met: memRatio <= GOALS.memoryRatio,
    detail: `${fmt(memRatio, 2)} (${fmt(run.peakRssMb, 0)} / ${fmt(small.peakRssMb, 0)} MB)`,
  });
  return { lines: out, goals };
}

/** Whether the shipped budget covers this week's domains, and how long the shipped rate limits make the enrich step. */
function atShippedSettings(ctx: ReportContext, enrich: RunResult['steps'][number], enriched: number): string[] {
  const out: string[] = [];
  const budget = ctx.shipped.budgets?.['weekly-api'];
  if (budget && enriched) {
    const covers = Object.entries(budget.limits).map(([unit, limit]) => {
      const perDomain = (unit === 'usd' ? enrich.cost.usd : (enrich.cost.units[unit] ?? 0)) / enriched;
      return { unit, limit, perDomain, domains: perDomain > 0 ? Math.floor(limit / perDomain) : Infinity };
    });
    const binding = covers.reduce((a, b) => (b.domains < a.domains ? b : a));
    const toEnrich = enrich.items?.total ?? enriched;
    out.push(
      `shipped budget weekly-api (${covers.map((c) => `${int(c.limit)} ${c.unit}`).join(', ')}) at this run's ` +
        `${covers.map((c) => `${c.unit === 'usd' ? fmt(c.perDomain, 3) : int(c.perDomain)} ${c.unit}`).join(', ')} per domain: ` +
        `covers ${int(binding.domains)} domains (${binding.unit} binds) of the ${int(toEnrich)} to enrich: ${binding.domains >= toEnrich ? 'fits' : 'does not fit'}`,
    );
  }
  const limits = ctx.shipped.rate_limits ?? {};
  const floors = (['semrush', 'spyfu'] as const).map((api) => {
    const perSecond = limits[api]?.per_second ?? NaN;
    return `${int(CALLS[api] * enriched)} ${api} calls / ${perSecond} per s = ${fmt((CALLS[api] * enriched) / perSecond / 60, 1)} min`;
  });
  out.push(`at ${ctx.realLimits ? 'these (the shipped)' : 'the shipped'} rate limits the enrich step takes at least ${floors.join('; ')}`);
  return out;
}
