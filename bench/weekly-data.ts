/**
 * The weekly-enrich bench's inputs: a seeded CSV of prospects in the format of
 * pipelines/data/prospects-week.csv, and copies of the shipped config and pipeline that read
 * it (one csv source), keep report files in the bench's folder and, unless the shipped rate
 * limits are asked for, let SEMrush and SpyFu calls through as fast as the engine goes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import type { Pipeline } from '../engine/pipeline/types.ts';
import { createRegistry } from '../steps/index.ts';
import { PIPELINES_DIR } from './report-kit.ts';

/** Share of rows that are bad (no domain, or an invalid email), duplicates, and with a LinkedIn URL. */
export const MIX = { bad: 0.02, duplicate: 0.01, linkedin: 0.4 };
/**
 * The SEMrush and SpyFu limits replaced by a concurrency cap alone, so the bench measures
 * the engine: a per_second limit above 1,000 acts as 1,000 (bottleneck spaces in whole ms).
 */
export const RAISED_LIMITS = { concurrency: 50 };
/**
 * By default every budget limit is multiplied by this (and by each further 5,000 prospects),
 * so a larger --prospects run still reaches select, analyses and reports instead of waiting
 * for next week's budget; --real-budget keeps the shipped one (it fits 5,000 prospects).
 */
export const BUDGET_FACTOR = 10;
export const SOURCE = 'weekly-list';

const WORDS = ('amber birch cedar delta ember falcon granite harbor indigo juniper kestrel lumen maple ' +
  'nimbus orchid pioneer quartz raven summit timber umber vertex willow zephyr atlas beacon cobalt ' +
  'drift echo fjord glacier hollow iris jasper').split(' ');
const FIRST = 'Ada Ben Cleo Dan Eve Finn Gia Hal Ivy Jon Kay Leo Mia Ned Ola Pia Quin Rae Sol Tia'.split(' ');
const LAST = 'Abbott Baker Clarke Dunn Ellis Frost Grant Hayes Irwin Jones Kerr Lowe Moss Nash Owen Price Reid Shaw Tate Vance'.split(' ');

/** mulberry32: a small seeded generator, so every run reads the same file. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ProspectFile {
  csv: string;
  /** What was written: every row, bad ones by kind, duplicates of an earlier domain, rows with a LinkedIn URL. */
  rows: number;
  noDomain: number;
  invalidEmail: number;
  duplicates: number;
  linkedin: number;
}

const cell = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** `n` rows of Company, Website, Name, Email, LinkedIn; domains like `cedar-ember-17.example`. */
export function prospectsCsv(n: number, seed: number): ProspectFile {
  const random = seeded(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!;
  const out: ProspectFile = { csv: '', rows: n, noDomain: 0, invalidEmail: 0, duplicates: 0, linkedin: 0 };
  const lines = ['Company,Website,Name,Email,LinkedIn'];
  const domains: string[] = [];
  for (let i = 0; i < n; i++) {
    const [a, b] = [pick(WORDS), pick(WORDS)];
    const first = pick(FIRST);
    const last = pick(LAST);
    const roll = random();
    if (roll < MIX.duplicate && domains.length) {
      // The same company again, its website written another way, without a contact.
      const domain = pick(domains);
      lines.push([cell(`${domain.split('-')[0]} Holdings`), `https://www.${domain.toUpperCase()}/`, '', '', ''].join(','));
      out.duplicates++;
      continue;
    }
    const domain = `${a}-${b}-${i + 1}.example`;
    const company = `${a[0]!.toUpperCase()}${a.slice(1)} ${b[0]!.toUpperCase()}${b.slice(1)} ${i + 1}`;
    const website = pick([domain, `https://www.${domain}/`, `http://${domain}/about`]);
    const local = `${first}.${last}`.toLowerCase();
    const linkedin = random() < MIX.linkedin ? `https://www.linkedin.com/in/${local.replace('.', '-')}-${i + 1}/` : '';
    if (linkedin) out.linkedin++;
    if (roll < MIX.duplicate + MIX.bad / 2) {
      lines.push([cell(company), '', `${first} ${last}`, `${local}@${domain}`, linkedin].join(','));
      out.noDomain++;
    } else if (roll < MIX.duplicate + MIX.bad) {
      lines.push([cell(company), website, `${first} ${last}`, `${local}@@${domain}`, linkedin].join(','));
      out.invalidEmail++;
    } else {
      lines.push([cell(company), website, `${first} ${last}`, random() < 0.9 ? `${local}@${domain}` : '', linkedin].join(','));
      domains.push(domain);
    }
  }
  out.csv = `${lines.join('\n')}\n`;
  return out;
}

export interface BenchPipeline {
  config: EngineConfig;
  pipeline: Pipeline;
  file: ProspectFile;
}

/**
 * Writes the CSV, the config and the pipeline into `dir` and loads them as the engine would.
 * The pipeline is the shipped one but for its `sources:` line.
 */
export function writeBenchPipeline(dir: string, options: { prospects: number; seed: number; realLimits: boolean; realBudget: boolean }): BenchPipeline {
  const registry = createRegistry();
  const file = prospectsCsv(options.prospects, options.seed);
  const csvPath = join(dir, `prospects-${options.prospects}.csv`);
  writeFileSync(csvPath, file.csv);

  const shippedConfig = join(PIPELINES_DIR, 'flows.config.yaml');
  const doc = parseDocument(readFileSync(shippedConfig, 'utf8'));
  const columns = doc.getIn(['prospect_sources', SOURCE, 'columns']);
  doc.set('prospect_sources', { [SOURCE]: { type: 'csv', path: csvPath, columns } });
  doc.setIn(['connectors', 'storage', 'dir'], join(dir, 'reports'));
  if (!options.realLimits) for (const api of ['semrush', 'spyfu']) doc.setIn(['rate_limits', api], { ...RAISED_LIMITS });
  if (!options.realBudget) {
    const factor = BUDGET_FACTOR * Math.ceil(options.prospects / 5000);
    const budgets = (doc.get('budgets') as { toJSON(): Record<string, { limits: Record<string, number> }> }).toJSON();
    for (const [name, budget] of Object.entries(budgets)) {
      for (const [unit, limit] of Object.entries(budget.limits)) doc.setIn(['budgets', name, 'limits', unit], limit * factor);
    }
  }
  const configPath = join(dir, 'flows.config.yaml');
  writeFileSync(configPath, doc.toString());
  const loaded = loadConfig(readFileSync(configPath, 'utf8'), configPath, {}, registry);
  if (!loaded.config) throw new Error(`${configPath}: ${loaded.diagnostics.map((d) => d.message).join('; ')}`);

  const shippedPipeline = join(PIPELINES_DIR, 'weekly-enrich.yaml');
  const text = readFileSync(shippedPipeline, 'utf8');
  const sourcesLine = /^( +)sources: \[.*\]$/m;
  if ((text.match(new RegExp(sourcesLine.source, 'gm')) ?? []).length !== 1) {
    throw new Error(`${shippedPipeline}: expected one "sources: [...]" line to point at the bench's CSV; the pipeline changed (update bench/weekly-data.ts)`);
  }
  const pipelinePath = join(dir, 'weekly-enrich.yaml');
  writeFileSync(pipelinePath, text.replace(sourcesLine, `$1sources: [${SOURCE}]`));
  const pipeline = loadPipeline(readFileSync(pipelinePath, 'utf8'), pipelinePath, { registry, config: loaded.config });
  if (!pipeline.pipeline) throw new Error(`${pipelinePath}: ${pipeline.diagnostics.map((d) => d.message).join('; ')}`);
  return { config: loaded.config, pipeline: pipeline.pipeline, file };
}
