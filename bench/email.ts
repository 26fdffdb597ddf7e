/**
 * The cold email channel at a week's volume, measured: the shipped email-daily pipeline
 * (email.campaign then email.deliver under the quota "mailbox") renders and sends 4,165
 * teasers to the SMTP sandbox on loopback, against nodemailer sending a prebuilt message of
 * the same size to the same server in the same run.
 *
 *   node --expose-gc --import tsx bench/email.ts [--emails 4165] [--db pglite | postgres | pglite,postgres]
 *        [--repeat 1] [--profile] [--sql] [--skip-fill] [--skip-click] [--json]
 *        [--click-only] [--clicks 5] [--click-latency zero,realistic]
 *   npm run bench:email -- --db postgres --repeat 3
 *   npm run bench:email -- --db pglite,postgres --click-only --clicks 5
 *
 * Postgres: TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test; a fresh database
 * per run, dropped after it.
 *
 * 1. Send: the shipped config with the mailbox quota's gaps off (no spacing, no ramp, caps of
 *    the whole volume per mailbox: the rotation still spreads it over the 18 mailboxes) and
 *    the shipped pipeline with `daily:` set to --emails, on --emails seeded prospects with an
 *    email and a category, on a ManualClock at Monday 08:00 London. An untimed warm-up run of
 *    100 first (the same code paths, and a sent email to copy for the baseline). Then per
 *    repeat, one after the other: nodemailer sending that email as it is (prebuilt: nothing
 *    built per send) --emails times, through a pool with the SMTP connector's settings (5
 *    connections, 100 messages each), 18 in flight like email.deliver; the pipeline run on a
 *    fresh database; and nodemailer building and DKIM-signing the same message per send (what
 *    email.deliver asks of it), for the breakdown. Goal: pipeline time per email / prebuilt
 *    nodemailer time per email <= 1.5. --profile samples the CPU during the last pipeline run
 *    and prints the top costs; --sql times the statements by text. Statements per email are
 *    always counted.
 * 2. Fill: bench/email-fill.ts's fill against a fresh mjml2html (goal <= 0.1).
 * 3. Click to follow-up (bench/email-click.ts), on each --db: a landing page's POST through the
 *    daemon to the follow-up in the SMTP sandbox, --clicks per case, the prospect with no
 *    report (one is made) and with a fresh one (reused), with zero-latency sandboxes (goal
 *    <= 30 s) and realistic ones (SEMrush and SpyFu 300 ms a call, Claude 20 s; goal <= 90 s);
 *    --click-latency picks either. Only when pipelines/click-report.yaml exists. --click-only
 *    skips parts 1 and 2.
 *
 * Goals are printed met or not met and never fail the process. With --json the tables go to
 * stderr and stdout holds one JSON object with every figure.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import type { Database } from '../engine/db/connect.ts';
import { generatedKey } from '../steps/email/mailers.ts';
import { openFreshPostgres } from '../test/helpers/db.ts';
import { parseArgs, table } from './common.ts';
import { type CpuProfile, formatSummary, summarise } from './cpu-top.ts';
import { clickReport, clickToFollowUp, type ClickFigures, LATENCIES, type LatencyName } from './email-click.ts';
import { FILL_GOAL_RATIO, type FillFigures, fillVsFresh } from './email-fill.ts';
import { baselineRun, type BaselineMeasure, countStatements, dailyPipeline, gapsOffConfig, makeDkimKeys, pipelineRun, type PipelineMeasure, SHIPPED_CONCURRENCY, seedProspects, statements } from './email-run.ts';
import { fmt, median } from './report-kit.ts';
import { type DbKind, freshDatabase, PG_URL } from './weekly-run.ts';

const GOAL_SEND = 1.5;
const WARMUP = 100;
const args = parseArgs(process.argv.slice(2));
const emails = Number(args.get('emails') ?? 4165);
if (!Number.isInteger(emails) || emails < 100) throw new Error(`--emails: expected a whole number >= 100, got ${args.get('emails')} (a week's volume is 4165)`);
const repeat = Number(args.get('repeat') ?? 1);
if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat: expected a whole number >= 1, got ${args.get('repeat')}`);
const dbs = (args.get('db') ?? 'pglite').split(',').map((s) => s.trim()) as DbKind[];
for (const d of dbs) if (d !== 'pglite' && d !== 'postgres') throw new Error(`--db: expected pglite, postgres or both (pglite,postgres), got "${d}"`);
const pgUrl = process.env.TEST_DATABASE_URL ?? PG_URL;
const profile = args.has('profile');
const json = args.has('json');
statements.timing = args.has('sql');
const clickOnly = args.has('click-only');
const clicks = Number(args.get('clicks') ?? 5);
if (!Number.isInteger(clicks) || clicks < 1) throw new Error(`--clicks: expected a whole number >= 1, got ${args.get('clicks')}`);
const clickLatencies = (args.get('click-latency') ?? 'zero,realistic').split(',').map((s) => s.trim()) as LatencyName[];
for (const l of clickLatencies) if (!(l in LATENCIES)) throw new Error(`--click-latency: expected zero, realistic or both (zero,realistic), got "${l}"`);
const say = (s: string) => process.stderr.write(`${s}\n`);
const gc = () => (globalThis as { gc?: () => void }).gc?.();
const started = performance.now();

const open = (kind: DbKind): Promise<Database> => (kind === 'postgres' ? openFreshPostgres(pgUrl, 'flows_bench') : freshDatabase('pglite'));

interface Round {
  raw: BaselineMeasure;
  run: PipelineMeasure;
  fields: BaselineMeasure;
}

/** The CPU profile of one pipeline run, summarised. */
async function profiled(): Promise<{ start: () => Promise<() => Promise<void>>; summary: () => string | undefined }> {
  let summary: string | undefined;
  return {
    async start() {
      const session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 500 });
      await session.post('Profiler.start');
      return async () => {
        const { profile: cpu } = await session.post('Profiler.stop');
        session.disconnect();
        const file = join(tmpdir(), `flows-bench-email-${process.pid}.cpuprofile`);
        writeFileSync(file, JSON.stringify(cpu));
        summary = `${file}\n${formatSummary(await summarise(cpu as unknown as CpuProfile, 25))}`;
      };
    },
    summary: () => summary,
  };
}

type ByText = Map<string, { n: number; ms: number }>;

async function sendRounds(kind: DbKind): Promise<{ rounds: Round[]; profile?: string; byText: ByText }> {
  await countStatements(kind);
  // Each database's statements apart: the table is printed after every database has run.
  statements.byText.clear();
  const state = mkdtempSync(join(tmpdir(), 'flows-bench-email-'));
  const smtp = await startSmtpSandbox();
  try {
    const config = gapsOffConfig(emails, smtp);
    makeDkimKeys(config, state);
    const dkim = generatedKey(state, 'intel-mail-one.example', 's1').key;
    const once = async (n: number, withProfile?: () => Promise<() => Promise<void>>) => {
      const db = await open(kind);
      try {
        await seedProspects(db, n);
        gc();
        return await pipelineRun({ db, config, pipeline: dailyPipeline(config, n), smtp, stateDir: state, profile: withProfile });
      } finally {
        await db.close();
      }
    };
    say(`${kind}: warm-up run of ${WARMUP} ...`);
    const warm = await once(WARMUP);
    if (warm.result.status !== 'completed' || warm.received !== WARMUP || !warm.sample) throw new Error(`the warm-up run ${warm.result.status}, ${warm.received} of ${WARMUP} emails arrived: ${JSON.stringify(warm.result.failures.slice(0, 3))}`);
    const rounds: Round[] = [];
    const sampler = profile ? await profiled() : undefined;
    for (let r = 0; r < repeat; r++) {
      const base = { smtp, config, n: emails, concurrency: SHIPPED_CONCURRENCY, message: warm.sample, dkim };
      say(`${kind} ${r + 1}/${repeat}: nodemailer, prebuilt message ...`);
      gc();
      const raw = await baselineRun({ ...base, mode: 'raw' });
      say(`${kind} ${r + 1}/${repeat}: email-daily, ${emails} teasers ...`);
      const run = await once(emails, sampler && r === repeat - 1 ? sampler.start : undefined);
      if (run.result.status !== 'completed' || run.received !== emails) throw new Error(`the run ${run.result.status}, ${run.received} of ${emails} emails arrived: ${JSON.stringify(run.result.failures.slice(0, 3))}`);
      say(`${kind} ${r + 1}/${repeat}: nodemailer, message built and signed per send ...`);
      gc();
      const fields = await baselineRun({ ...base, mode: 'fields' });
      rounds.push({ raw, run, fields });
    }
    return { rounds, profile: sampler?.summary(), byText: new Map(statements.byText) };
  } finally {
    await smtp.close();
    rmSync(state, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------ measure
const sends: { kind: DbKind; rounds: Round[]; profile?: string; byText: ByText }[] = [];
if (!clickOnly) for (const kind of dbs) sends.push({ kind, ...(await sendRounds(kind)) });

let fill: FillFigures | undefined;
if (!clickOnly && !args.has('skip-fill')) {
  say('fill vs fresh mjml2html ...');
  fill = await fillVsFresh({ rounds: 5, fills: 1000, fresh: 20 });
}

let click: ClickFigures | string | undefined;
if (!args.has('skip-click')) click = await clickToFollowUp({ dbs: dbs.map((kind) => ({ kind, open: () => open(kind) })), latencies: clickLatencies, clicks }, say);

// ------------------------------------------------------------ report
const out: string[] = [];
const goals: { goal: string; value: number; limit: number; met: boolean }[] = [];
const perEmail = (ms: number) => ms / emails;
const ms = (v: number, d = 2) => `${fmt(v, d)} ms`;
if (!clickOnly) out.push(`cold email, ${emails.toLocaleString('en-US')} teasers through email-daily (gaps off) to the SMTP sandbox, Node ${process.version}, ${repeat} round(s) per database`);
for (const s of sends) {
  const rows = s.rounds.map((r, i) => {
    const ratio = r.run.wallMs / r.raw.wallMs;
    return [
      `${s.kind} ${i + 1}`,
      ms(perEmail(r.run.wallMs)),
      `${fmt(r.run.planMs / 1000, 2)} s`,
      ms(perEmail(r.run.sendMs)),
      ms(perEmail(r.raw.wallMs)),
      ms(perEmail(r.fields.wallMs)),
      fmt(ratio, 2),
      fmt(r.run.sendMs / r.raw.wallMs, 2),
      fmt(r.run.wallMs / r.fields.wallMs, 2),
      `${fmt(r.run.cpuMs / emails, 2)} / ${fmt(r.raw.cpuMs / emails, 2)}`,
      fmt(r.run.statements / emails, 1),
      `${Math.round(r.run.peakRssMb)} MB`,
    ];
  });
  out.push('', table(['run', 'per email', 'plan', 'send step/email', 'prebuilt/email', 'built+DKIM/email', 'run/prebuilt', 'send/prebuilt', 'run/built', 'CPU ms/email run/prebuilt', 'statements/email', 'peak RSS'], rows, 1));
  const last = s.rounds.at(-1)!;
  out.push(
    `  sizes: pipeline emails ${Math.round(last.run.meanBytes)} B on average, the prebuilt one ${Math.round(last.raw.meanBytes)} B; one SMTP send inside email.deliver ${ms(last.run.smtpMeanMs, 1)} on average (18 in flight over 5 connections)`,
  );
  const ratios = s.rounds.map((r) => r.run.wallMs / r.raw.wallMs);
  const m = median(ratios);
  goals.push({ goal: `${s.kind}: time per email / nodemailer prebuilt (median of ${ratios.length})`, value: m, limit: GOAL_SEND, met: m <= GOAL_SEND });
  if (statements.timing) {
    const top = [...s.byText.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20);
    out.push('', `statements by text, all ${s.kind} runs (count, total ms incl. waiting):`, ...top.map(([k, v]) => `  ${String(v.n).padStart(8)} ${v.ms.toFixed(0).padStart(8)}  ${k}`));
  }
  if (s.profile) out.push('', `CPU profile of the last ${s.kind} run: ${s.profile}`);
}
if (fill) {
  out.push('', `fill vs fresh mjml2html (median of 5 rounds per template): fill ${fmt(median(fill.templates.map((t) => t.fillMs)), 3)} ms, fresh ${fmt(median(fill.templates.map((t) => t.freshMs)), 2)} ms; fill/fresh median ${fmt(fill.median, 3)}, worst ${fmt(fill.worst, 3)}`);
  goals.push({ goal: 'fill / fresh mjml2html, worst template', value: fill.worst, limit: FILL_GOAL_RATIO, met: fill.worst <= FILL_GOAL_RATIO });
}
if (typeof click === 'string') out.push('', click);
else if (click) {
  out.push('', ...clickReport(click));
  for (const c of click.cases) goals.push({ goal: `click to follow-up, ${c.db}, ${LATENCIES[c.latency].label}, ${c.report} (max of ${c.samples.length}, s)`, value: c.maxMs / 1000, limit: c.goalMs / 1000, met: c.maxMs <= c.goalMs });
}
out.push('', 'goals:', ...goals.map((g) => `  ${g.goal}: ${fmt(g.value, 3)} (≤ ${g.limit}) ${g.met ? 'met' : 'NOT met'}`));
out.push('', `bench took ${fmt((performance.now() - started) / 1000, 0)} s`, '');
(json ? process.stderr : process.stdout).write(`${out.join('\n')}\n`);
if (json) {
  const round = (r: Round) => ({
    run: { wall_ms: Math.round(r.run.wallMs), plan_ms: Math.round(r.run.planMs), send_ms: Math.round(r.run.sendMs), cpu_ms: Math.round(r.run.cpuMs), smtp_mean_ms: r.run.smtpMeanMs, mean_bytes: Math.round(r.run.meanBytes), peak_rss_mb: Math.round(r.run.peakRssMb) },
    prebuilt: { wall_ms: Math.round(r.raw.wallMs), cpu_ms: Math.round(r.raw.cpuMs), mean_bytes: Math.round(r.raw.meanBytes) },
    built: { wall_ms: Math.round(r.fields.wallMs), cpu_ms: Math.round(r.fields.cpuMs) },
  });
  process.stdout.write(`${JSON.stringify({ bench: 'email', node: process.version, options: { emails, repeat, dbs, clicks, click_latency: clickLatencies, click_only: clickOnly }, sends: sends.map((s) => ({ db: s.kind, rounds: s.rounds.map(round) })), fill, click, goals })}\n`);
}
