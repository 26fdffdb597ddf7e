/**
 * The report engine, measured: where a report's time goes, what our PDF renderer costs over
 * bare puppeteer, whether many reports in a row leak, and how long a payment takes to become
 * an email.
 *
 *   node --expose-gc --import tsx bench/report.ts [--reports 10] [--rounds 20] [--soak 20]
 *        [--claude-latency 20000] [--semrush-latency 300] [--spyfu-latency 300]
 *        [--skip-e2e] [--json]
 *   npm run bench:report -- --skip-e2e
 *
 * 1. Stages (bench/report-kit.ts): --reports reports of distinct domains against SEMrush,
 *    SpyFu and Claude sandboxes with no latency, in this process, through the functions the
 *    pipeline's steps call; the browser warmed by one throwaway report first. Median and p95
 *    of each stage, and its share of the summed totals.
 * 2. PDF overhead (bench/report-pdf.ts): our PdfRenderer against bare puppeteer-core on the
 *    last report's HTML, --rounds turns each, interleaved. Goal: ours/bare <= 1.20.
 * 3. Soak (bench/report-soak.ts): --soak reports through one PdfRenderer. Goals: one browser
 *    launch; RSS of this process and of the Chromium process tree grows < 20% from report 1
 *    to the last (after a GC when node runs with --expose-gc).
 * 4. Payment to email (bench/report-e2e.ts): the daemon with the shipped paid-report
 *    pipeline, sandboxes with realistic latencies. Goal: <= 40 s; the ratio is to the
 *    latencies injected on the critical path.
 *
 * Figures are ratios to baselines measured in the same run; the goals are printed, met or
 * not, and never fail the process (a noisy machine is no bug). With --json the tables go to
 * stderr and stdout holds one JSON object with every figure.
 */
import { businessMigrations } from '../steps/tables.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PdfRenderer } from '../connectors/browser/browser.ts';
import { openDatabase } from '../engine/db/connect.ts';
import { parseArgs, table } from './common.ts';
import { paymentToEmail, type E2eResult } from './report-e2e.ts';
import { benchDomain, benchResources, fmt, median, percentile, round, shippedConfig, STAGES, type StageTimes, startConnectors, timedReport } from './report-kit.ts';
import { comparePdf, type PdfComparison } from './report-pdf.ts';
import { soak, type SoakResult } from './report-soak.ts';

const GOALS = { pdfRatio: 1.2, growthPercent: 20, e2eSeconds: 40 };
const STAGE_LABELS: Record<(typeof STAGES)[number], string> = {
  collect: 'collect (SEMrush + SpyFu)',
  prompt: 'prompt render',
  claude: 'Claude analysis',
  html: 'HTML render',
  pdf: 'PDF',
  store: 'storage + DB insert',
};

const args = parseArgs(process.argv.slice(2));
function count(name: string, dflt: number, min = 1): number {
  const v = args.has(name) ? Number(args.get(name)) : dflt;
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name}: expected a whole number >= ${min}, got ${args.get(name)} (write e.g. --${name} ${dflt})`);
  return v;
}
const reports = count('reports', 10);
const rounds = count('rounds', 20);
const soakReports = count('soak', 20, 2);
const latencies = { semrushMs: count('semrush-latency', 300, 0), spyfuMs: count('spyfu-latency', 300, 0), claudeMs: count('claude-latency', 20_000, 0) };
const json = args.has('json');
const say = (s: string) => process.stderr.write(`${s}\n`);
const started = performance.now();

// ------------------------------------------------------------ sections 1-3: zero-latency sandboxes
const state = mkdtempSync(join(tmpdir(), 'flows-bench-report-'));
const env = {};
const config = shippedConfig(state, env);
const db = await openDatabase({ dataDir: 'memory://', migrations: businessMigrations });
const connectors = await startConnectors(config, { semrushMs: 0, spyfuMs: 0, claudeMs: 0 });
const resources = benchResources(config, env, state, connectors);
const deps = { resources, connectors, db, config };
let cold: StageTimes;
const times: StageTimes[] = [];
let html = '';
let pdf: PdfComparison;
let soaked: SoakResult;
try {
  say(`1. stages: 1 throwaway report (browser launch), then ${reports} reports ...`);
  const browser = new PdfRenderer();
  try {
    cold = (await timedReport({ ...deps, browser }, benchDomain('cold', 0))).times;
    for (let i = 1; i <= reports; i++) {
      const report = await timedReport({ ...deps, browser }, benchDomain('stage', i));
      times.push(report.times);
      html = report.html ?? html;
    }
  } finally {
    await browser.close();
  }
  say(`2. PDF: ours vs bare puppeteer, ${rounds} rounds each, interleaved ...`);
  pdf = await comparePdf(html, `${benchDomain('stage', reports)} · ${config.business?.name ?? 'flows'}`, rounds);
  say(`3. soak: ${soakReports} reports through one PdfRenderer${typeof globalThis.gc === 'function' ? '' : ' (no --expose-gc: memory is read without a GC first)'} ...`);
  soaked = await soak(deps, soakReports, say);
} finally {
  await resources.close();
  await connectors.close();
  await db.close();
  rmSync(state, { recursive: true, force: true });
}

// ------------------------------------------------------------ section 4: payment to email
let e2e: E2eResult | undefined;
if (args.has('skip-e2e')) say('4. payment to email: skipped (--skip-e2e)');
else {
  say(`4. payment to email: SEMrush ${latencies.semrushMs} ms, SpyFu ${latencies.spyfuMs} ms, Claude ${latencies.claudeMs} ms per call ...`);
  e2e = await paymentToEmail(latencies, say);
}

// ------------------------------------------------------------ report
const goals: { goal: string; met: boolean; detail: string }[] = [];
const metText = (met: boolean) => (met ? 'met' : 'not met');
const out: string[] = [];

const sumOf = (pick: (t: StageTimes) => number) => times.reduce((s, t) => s + pick(t), 0);
const totalSum = sumOf((t) => t.total);
const between = (t: StageTimes) => t.total - STAGES.reduce((s, k) => s + t[k], 0);
const stageRow = (label: string, pick: (t: StageTimes) => number) => {
  const values = times.map(pick);
  return [label, fmt(median(values)), fmt(percentile(values, 0.95)), `${fmt((sumOf(pick) / totalSum) * 100)}%`];
};
out.push('', `1. stages of ${reports} reports, zero-latency sandboxes, warm browser (ms; share = stage's sum / sum of totals)`);
out.push(table(['stage', 'median', 'p95', 'share'], [...STAGES.map((k) => stageRow(STAGE_LABELS[k], (t) => t[k])), stageRow('between stages', between), stageRow('total', (t) => t.total)], 1));
out.push(`cold first report (browser launch included): total ${fmt(cold!.total)} ms, of which PDF ${fmt(cold!.pdf)} ms`);

out.push('', `2. PDF of one report (${Math.round(pdf!.htmlBytes / 1024)} KiB of HTML), ${pdf!.rounds} rounds each, interleaved (ms)`);
out.push(
  table(
    ['renderer', 'median', 'p95', 'PDF bytes'],
    [
      ['ours: PdfRenderer.pdf(html, {footerText})', fmt(pdf!.ours.medianMs), fmt(pdf!.ours.p95Ms), `${pdf!.ours.pdfBytes}`],
      ['bare: setContent + page.pdf', fmt(pdf!.bare.medianMs), fmt(pdf!.bare.p95Ms), `${pdf!.bare.pdfBytes}`],
    ],
    1,
  ),
);
out.push(`bare split: setContent ${fmt(pdf!.bare.setContentMedianMs)} ms + page.pdf ${fmt(pdf!.bare.printMedianMs)} ms (medians); cold launch to first PDF: ours ${fmt(pdf!.coldMs.ours, 0)} ms, bare ${fmt(pdf!.coldMs.bare, 0)} ms`);
out.push(`ratio ours/bare: ${fmt(pdf!.ratio, 2)}; goal ≤ ${GOALS.pdfRatio.toFixed(2)}: ${metText(pdf!.ratio <= GOALS.pdfRatio)}`);
goals.push({ goal: `PDF ours/bare ≤ ${GOALS.pdfRatio}`, met: pdf!.ratio <= GOALS.pdfRatio, detail: `${fmt(pdf!.ratio, 2)} (${fmt(pdf!.ours.medianMs)} / ${fmt(pdf!.bare.medianMs)} ms)` });

const s = soaked!;
out.push('', `3. soak: ${s.reports} reports through one PdfRenderer (memory after report 1 and after report ${s.reports}${s.gcAvailable ? ', each after a GC' : ', no GC: run node with --expose-gc'})`);
const memRow = (label: string, key: keyof typeof s.first, growth?: number) => [label, `${s.first[key]}`, `${s.last[key]}`, growth === undefined ? '-' : `${growth > 0 ? '+' : ''}${fmt(growth)}%`];
out.push(
  table(
    ['measure', 'report 1', `report ${s.reports}`, 'growth'],
    [
      memRow('node RSS (MB)', 'nodeRssMb', s.growth.nodeRss),
      memRow('node heap used (MB)', 'nodeHeapUsedMb'),
      memRow('Chromium tree RSS (MB)', 'chromiumRssMb', s.growth.chromiumRss),
      memRow('Chromium tree PSS (MB)', 'chromiumPssMb', s.growth.chromiumPss),
      memRow('Chromium processes', 'chromiumProcesses'),
    ],
    1,
  ),
);
out.push(`Chromium tree RSS after each report (MB): ${s.chromiumRssSeries.join(' ')}`);
out.push(`PDF median, reports 2-${Math.min(6, s.reports)}: ${fmt(s.pdfMs.early)} ms; last ${Math.min(5, s.reports)}: ${fmt(s.pdfMs.late)} ms`);
const growthMet = s.growth.nodeRss < GOALS.growthPercent && s.growth.chromiumRss < GOALS.growthPercent;
out.push(`browser launches: ${s.launches}; goal 1: ${metText(s.launches === 1)}`);
out.push(`memory growth: node ${fmt(s.growth.nodeRss)}%, Chromium ${fmt(s.growth.chromiumRss)}%; goal < ${GOALS.growthPercent}%: ${metText(growthMet)}`);
goals.push({ goal: 'one browser launch in the soak', met: s.launches === 1, detail: `${s.launches} launches` });
goals.push({ goal: `memory growth < ${GOALS.growthPercent}% over the soak`, met: growthMet, detail: `node RSS ${fmt(s.growth.nodeRss)}%, Chromium tree RSS ${fmt(s.growth.chromiumRss)}%` });

if (e2e) {
  const injected: Record<string, number> = { intel: Math.max(e2e.latencies.semrushMs, e2e.latencies.spyfuMs), analysis: e2e.latencies.claudeMs };
  out.push('', `4. payment to delivered email, daemon with the shipped paid-report pipeline (ms from the POST)`);
  out.push(
    table(
      ['step', 'status', 'starts at', 'took', 'injected wait', 'took - injected'],
      [
        ['(webhook answered)', '-', '-', fmt(e2e.webhookAnswerMs), '-', '-'],
        ['(run started)', '-', fmt(e2e.runStartMs), '-', '-', '-'],
        ...e2e.steps.map((st) => [st.id, st.status, fmt(st.startMs), fmt(st.ms), injected[st.id] === undefined ? '-' : `${injected[st.id]}`, fmt(st.ms - (injected[st.id] ?? 0))]),
        ['POST to email in the SMTP sandbox', e2e.runStatus, '-', fmt(e2e.totalMs), `${e2e.floorMs}`, fmt(e2e.totalMs - e2e.floorMs)],
      ],
      2,
    ),
  );
  out.push(`floor (injected latencies on the critical path): ${e2e.floorMs} ms; with the config's rate-limit spacing of the 4 SEMrush and 3 SpyFu calls: ${e2e.rateLimitedFloorMs} ms`);
  out.push(`ratio to the floor: ${fmt(e2e.totalMs / e2e.floorMs, 3)} (the engine adds ${fmt(e2e.totalMs - e2e.floorMs, 0)} ms)`);
  const met = e2e.totalMs <= GOALS.e2eSeconds * 1000;
  out.push(`POST to email: ${fmt(e2e.totalMs / 1000, 2)} s; goal ≤ ${GOALS.e2eSeconds} s: ${metText(met)}`);
  goals.push({ goal: `payment to email ≤ ${GOALS.e2eSeconds} s`, met, detail: `${fmt(e2e.totalMs / 1000, 2)} s, floor ${fmt(e2e.floorMs / 1000, 2)} s` });
}
out.push('', `bench took ${fmt((performance.now() - started) / 1000, 0)} s`, '');

(json ? process.stderr : process.stdout).write(`${out.join('\n')}\n`);
if (json) {
  const stage = (pick: (t: StageTimes) => number) => ({ median_ms: round(median(times.map(pick))), p95_ms: round(percentile(times.map(pick), 0.95)), share: round(sumOf(pick) / totalSum, 4) });
  const result = {
    bench: 'report',
    node: process.version,
    options: { reports, rounds, soak: soakReports, latencies, e2e: !!e2e },
    stages: { ...Object.fromEntries(STAGES.map((k) => [k, stage((t) => t[k])])), between: stage(between), total: stage((t) => t.total), cold_first_report: cold! },
    pdf: pdf!,
    soak: soaked!,
    e2e: e2e ?? null,
    goals,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
