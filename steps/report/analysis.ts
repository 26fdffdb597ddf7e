import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Liquid } from 'liquidjs';
import type { ClaudeAnalyst } from '../../connectors/claude/client.ts';
import { defineResource, NonRetriableError } from '../../engine/sdk.ts';
import { type Analysis, AnalysisSchema, type SearchIntel } from './model.ts';

/**
 * Asking Claude for a report's analysis, as report.analyse, report.analyse_batch and
 * `flows report` do: the prompt files, what Claude reads of the search data, and the
 * forced tool that records the answer.
 */

export const TOOL_NAME = 'record_report_analysis';

/** The prompt files, rendered as plain text (nothing is escaped in a prompt). */
export const promptsResource = defineResource<Liquid>({
  name: 'prompts',
  create: (env) => new Liquid({ root: join(env.projectDir, 'prompts'), extname: '.md', strictVariables: true, strictFilters: true, cache: true }),
});

export interface PromptData {
  company: string;
  intel: SearchIntel;
}

/** What Claude gets to read: the numbers that matter, not every column of every row. */
export function promptData({ company, intel }: PromptData): Record<string, unknown> {
  return {
    company,
    domain: intel.domain,
    database: intel.database,
    overview: intel.overview,
    spyfu_stats: intel.spyfu.stats,
    top_keywords: intel.organicKeywords.slice(0, 25).map((k) => ({
      keyword: k.keyword,
      position: k.position,
      previous_position: k.previousPosition,
      volume: k.searchVolume,
      cpc: k.cpc,
      traffic_percent: k.trafficPercent,
    })),
    competitors: intel.competitors.slice(0, 8).map((c) => ({
      domain: c.domain,
      relevance: c.relevance,
      common_keywords: c.commonKeywords,
      organic_traffic: c.organicTraffic,
      organic_keywords: c.organicKeywords,
      paid_keywords: c.adwordsKeywords,
    })),
    paid_keywords: intel.paidKeywords.slice(0, 15).map((k) => ({ keyword: k.keyword, position: k.position, volume: k.searchVolume, cpc: k.cpc, traffic_cost: k.trafficCost })),
    valuable_keywords: intel.spyfu.valuableKeywords.slice(0, 15).map((k) => ({ keyword: k.keyword, rank: k.rank, volume: k.searchVolume, cpc: k.exactCostPerClick, clicks: k.seoClicks })),
  };
}

export interface Prompt {
  system?: string;
  user: string;
}

export async function renderPrompt(liquid: Liquid, name: string, data: PromptData): Promise<Prompt> {
  const root = (liquid.options.root as string[])[0] ?? '.';
  const file = (suffix: string) => join(root, `${name}${suffix}`);
  if (!existsSync(file('.md'))) throw new NonRetriableError(`prompt "${name}": no file ${file('.md')}`);
  const shown = promptData(data);
  const scope = { ...shown, data_json: JSON.stringify(shown, null, 1) };
  try {
    const user = await liquid.renderFile(`${name}.md`, scope);
    const system = existsSync(file('.system.md')) ? await liquid.renderFile(`${name}.system.md`, scope) : undefined;
    return { system: system?.trim(), user: user.trim() };
  } catch (err) {
    // A mistake in the prompt file fails every attempt the same way.
    throw new NonRetriableError(`prompt "${name}": ${(err as Error).message}`, { cause: err });
  }
}

export interface AnalysisResult {
  analysis: Analysis;
  model: string;
  usage: { input_tokens: number; output_tokens: number };
  attempts: number;
}

export async function analyse(analyst: ClaudeAnalyst, prompt: Prompt, maxTokens: number | undefined, signal?: AbortSignal): Promise<AnalysisResult> {
  const result = await analyst.analyse({
    system: prompt.system,
    prompt: prompt.user,
    schema: AnalysisSchema,
    toolName: TOOL_NAME,
    toolDescription: 'Record the competitive-intelligence analysis of the company, to be printed in its report.',
    maxTokens,
    signal,
  });
  return { analysis: result.analysis, model: result.model, usage: result.usage, attempts: result.attempts };
}
