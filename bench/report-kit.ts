/**
 * What the report benchmarks share: the SEMrush, SpyFu and Claude sandboxes with a chosen
 * latency and clients pointed at them, the shipped config, resources wired to both, one
 * report made stage by stage, and the percentiles.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PdfRenderer } from '../connectors/browser/browser.ts';
import { type Claude, claudeConnector } from '../connectors/claude/connector.ts';
import { SANDBOX_API_KEY, startClaudeSandbox } from '../connectors/claude/sandbox.ts';
import type { SemrushClient } from '../connectors/semrush/client.ts';
import { semrushConnector } from '../connectors/semrush/connector.ts';
import { SANDBOX_KEY as SEMRUSH_SANDBOX_KEY, startSemrushSandbox } from '../connectors/semrush/sandbox.ts';
import type { SpyfuApi } from '../connectors/spyfu/client.ts';
import { spyfuConnector } from '../connectors/spyfu/connector.ts';
import { SANDBOX_API_KEY as SPYFU_SANDBOX_KEY, startSpyfuSandbox } from '../connectors/spyfu/sandbox.ts';
import { storageConnector } from '../connectors/storage/connector.ts';
import { systemClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import type { ConnectorDeps } from '../engine/connector.ts';
import { sourceOf } from '../engine/connector-open.ts';
import { connectorSettings } from '../engine/connector-settings.ts';
import { createRegistry } from '../steps/index.ts';
import type { Database } from '../engine/db/connect.ts';
import { writableQueryable } from '../engine/executor/context.ts';
import { silentLogger } from '../engine/log.ts';
import { Resources } from '../engine/resources.ts';
import { analyse, promptsResource, renderPrompt } from '../steps/report/analysis.ts';
import { collectIntel, DEFAULT_LIMITS } from '../steps/intel/collect.ts';
import { publishReport, reportView } from '../steps/report/publish.ts';
import { templatesResource } from '../steps/resources.ts';

export const PIPELINES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'pipelines');

/** Milliseconds each sandbox adds to every answer. */
export interface Latencies {
  semrushMs: number;
  spyfuMs: number;
  claudeMs: number;
}

export interface Connectors {
  semrush: SemrushClient;
  spyfu: SpyfuApi;
  claude: Claude;
  close(): Promise<void>;
}

/** pipelines/flows.config.yaml as shipped, with report files under `stateDir`. */
export function shippedConfig(stateDir: string, env: Record<string, string | undefined>): EngineConfig {
  const file = join(PIPELINES_DIR, 'flows.config.yaml');
  const loaded = loadConfig(readFileSync(file, 'utf8'), file, env, createRegistry());
  if (!loaded.config) throw new Error(`${file}: ${loaded.diagnostics.map((d) => d.message).join('; ')}`);
  const base = loaded.config;
  return { ...base, connectors: { ...base.connectors, storage: { dir: join(stateDir, 'reports') } } };
}

/** The three sandboxes in this process, and clients made by their connector specs as the engine makes them. */
export async function startConnectors(config: EngineConfig, latency: Latencies): Promise<Connectors> {
  const [semrushBox, spyfuBox, claudeBox] = await Promise.all([
    startSemrushSandbox({ faults: { latencyMs: latency.semrushMs } }),
    startSpyfuSandbox({ faults: { latencyMs: latency.spyfuMs } }),
    startClaudeSandbox({ faults: { latencyMs: latency.claudeMs } }),
  ]);
  const deps: ConnectorDeps = { clock: systemClock, log: silentLogger, env: {}, projectDir: PIPELINES_DIR, stateDir: '.flows', prices: config.prices ?? {} };
  return {
    semrush: await semrushConnector.create({ ...connectorSettings(semrushConnector, config), key: SEMRUSH_SANDBOX_KEY, base_url: semrushBox.url }, deps),
    spyfu: await spyfuConnector.create({ ...connectorSettings(spyfuConnector, config), api_key: SPYFU_SANDBOX_KEY, api_id: undefined, base_url: spyfuBox.url }, deps),
    claude: await claudeConnector.create({ ...connectorSettings(claudeConnector, config), api_key: SANDBOX_API_KEY, base_url: claudeBox.url }, deps),
    close: async () => {
      await Promise.all([semrushBox.close(), spyfuBox.close(), claudeBox.close()]);
    },
  };
}

/** Resources as the daemon makes them, with the clients above in place of the configured ones. */
export function benchResources(config: EngineConfig, env: Record<string, string | undefined>, stateDir: string, connectors: Connectors): Resources {
  return new Resources({ config, env, log: silentLogger, clock: systemClock, projectDir: PIPELINES_DIR, stateDir })
    .provide(semrushConnector, connectors.semrush)
    .provide(spyfuConnector, connectors.spyfu)
    .provide(claudeConnector, connectors.claude);
}

/** Calls collectIntel makes to each service, all at once (steps/intel/collect.ts). */
export const INTEL_CALLS = { semrush: 4, spyfu: 3 };

/**
 * What the sandboxes make one report wait for on its critical path: the SEMrush and SpyFu
 * calls at once (the longer of the two latencies), then Claude; and the same with the
 * config's rate limits, which space the calls to one service 1/per_second apart.
 */
export function injectedWaits(config: EngineConfig, latencies: Latencies): { floorMs: number; rateLimitedFloorMs: number } {
  const spacing = (name: string) => {
    const perSecond = config.rate_limits?.[name]?.per_second;
    return perSecond ? Math.ceil(1000 / perSecond) : 0;
  };
  const collect = Math.max(latencies.semrushMs + (INTEL_CALLS.semrush - 1) * spacing('semrush'), latencies.spyfuMs + (INTEL_CALLS.spyfu - 1) * spacing('spyfu'));
  return { floorMs: Math.max(latencies.semrushMs, latencies.spyfuMs) + latencies.claudeMs, rateLimitedFloorMs: collect + latencies.claudeMs };
}

/** Milliseconds per stage of one report; `total` also holds what falls between stages. */
export interface StageTimes {
  collect: number;
  prompt: number;
  claude: number;
  html: number;
  pdf: number;
  store: number;
  total: number;
}
export const STAGES = ['collect', 'prompt', 'claude', 'html', 'pdf', 'store'] as const;

/** A distinct, valid domain per report (the sandboxes derive their data from it). */
export const benchDomain = (tag: string, i: number) => `${tag}-${i}-widgets.com`;

/** One report as `flows report` makes it (the same calls as the pipeline's steps), timed per stage. */
export async function timedReport(
  deps: { resources: Resources; connectors: Connectors; browser: PdfRenderer; db: Database; config: EngineConfig },
  domain: string,
): Promise<{ times: StageTimes; html: string | undefined; pdfBytes: number }> {
  const { resources, connectors, config } = deps;
  const [liquid, renderer, storage] = await Promise.all([resources.use(promptsResource), resources.use(templatesResource), resources.use(storageConnector)]);
  const t0 = performance.now();
  const intel = await collectIntel({ semrush: connectors.semrush, spyfu: connectors.spyfu, now: () => new Date() }, domain, undefined, DEFAULT_LIMITS);
  const t1 = performance.now();
  const prompt = await renderPrompt(liquid, 'report-analysis', { company: domain, intel });
  const t2 = performance.now();
  const analysis = await analyse(connectors.claude.analyst, prompt, undefined);
  const t3 = performance.now();
  const view = reportView(config, intel, analysis.analysis, domain, new Date(), sourceOf(connectors.claude));
  // The HTML is kept for the PDF comparison; the wrapper adds no work to what is timed.
  let html: string | undefined;
  const keeping = { render: async (v: typeof view) => (html = await renderer.render(v)) };
  const report = await publishReport({ renderer: keeping, browser: deps.browser, storage, db: writableQueryable(deps.db), config }, { view, claudeUsage: analysis.usage });
  const total = performance.now() - t0;
  const { html_ms, pdf_ms, store_ms } = report.timings;
  return { times: { collect: t1 - t0, prompt: t2 - t1, claude: t3 - t2, html: html_ms, pdf: pdf_ms, store: store_ms, total }, html, pdfBytes: report.pdf_bytes };
}

/** Nearest-rank percentile (q in 0..1) of `values`. */
export function percentile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}
export const median = (values: readonly number[]) => percentile(values, 0.5);

/** A figure for a table: `digits` decimals. */
export const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '-');
export const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits;
