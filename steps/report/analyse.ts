import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { Liquid } from 'liquidjs';
import type { ClaudeAnalyst } from '../../connectors/claude/client.ts';
import { claudeConnector } from '../../connectors/claude/connector.ts';
import { connectorSettings, defineResource, defineStep, NonRetriableError } from '../../engine/sdk.ts';
import { type Analysis, AnalysisSchema, type SearchIntel } from './model.ts';

/**
 * `report.analyse`: Claude reads a domain's search data and records the analysis the report
 * prints (AnalysisSchema), through a forced tool so the answer is structured. The prompt is
 * a Liquid file in pipelines/prompts/ (`<name>.md`, plus `<name>.system.md` for the system
 * prompt when present), so wording changes are a file edit.
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

/** A rough count for dry runs: about four characters a token. */
const tokensOf = (text: string) => Math.ceil(text.length / 4);

export const reportAnalyse = defineStep({
  type: 'report.analyse',
  description: 'Has Claude analyse a domain\'s search data (from intel.collect) into the report\'s summary, commentary, opportunities and actions.',
  input: Type.Object(
    {
      intel: Type.Record(Type.String(), Type.Unknown(), { description: 'The output of intel.collect.' }),
      company: Type.Optional(Type.String({ description: 'The company\'s name (default: the domain).' })),
      prompt: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', description: 'Prompt file in pipelines/prompts/, without .md (default report-analysis).' })),
      max_tokens: Type.Optional(Type.Integer({ minimum: 256, description: 'Output tokens allowed (default connectors.claude.max_tokens).' })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object(
    {
      analysis: AnalysisSchema,
      model: Type.String(),
      usage: Type.Object({ input_tokens: Type.Integer(), output_tokens: Type.Integer() }),
      attempts: Type.Integer(),
    },
    { additionalProperties: false },
  ),
  effect: {
    // A paid call; repeating one after a crash costs tokens and changes nothing (in_doubt: repeat says so).
    kind: () => 'api',
    // About four characters a token; the prompt's own text adds about a thousand.
    cost: (input, config) => ({ claude_input_tokens: Math.ceil(JSON.stringify(input.intel).length / 4) + 1000, claude_output_tokens: input.max_tokens ?? connectorSettings(claudeConnector, config).max_tokens }),
    describe: (input) => ({ summary: `Claude analysis of ${(input.intel as { domain?: string }).domain ?? 'a domain'}` }),
    async plan(ctx, input) {
      const intel = input.intel as unknown as SearchIntel;
      const prompt = await renderPrompt(await ctx.use(promptsResource), input.prompt ?? 'report-analysis', { company: input.company ?? intel.domain, intel });
      const output = input.max_tokens ?? connectorSettings(claudeConnector, ctx.config).max_tokens;
      return {
        summary: `Claude analysis of ${intel.domain} (about ${tokensOf(prompt.user + (prompt.system ?? ''))} tokens in, at most ${output} out)`,
        output: { analysis: placeholderAnalysis(intel.domain), model: '(dry run)', usage: { input_tokens: 0, output_tokens: 0 }, attempts: 0 },
        artifacts: [{ name: 'prompt.md', content: `${prompt.system ? `# system\n\n${prompt.system}\n\n# user\n\n` : ''}${prompt.user}\n` }],
        cost: { claude_input_tokens: tokensOf(prompt.user + (prompt.system ?? '')) + 600, claude_output_tokens: output },
      };
    },
  },
  async run(ctx, input) {
    const intel = input.intel as unknown as SearchIntel;
    const [liquid, claude] = await Promise.all([ctx.use(promptsResource), ctx.use(claudeConnector)]);
    const prompt = await renderPrompt(liquid, input.prompt ?? 'report-analysis', { company: input.company ?? intel.domain, intel });
    const result = await analyse(claude.analyst, prompt, input.max_tokens, ctx.signal);
    ctx.spend({ claude_input_tokens: result.usage.input_tokens, claude_output_tokens: result.usage.output_tokens });
    return result;
  },
});

/** What a dry run shows in place of the analysis it does not pay for. */
function placeholderAnalysis(domain: string): Analysis {
  const line = `(dry run: Claude would write this for ${domain})`;
  const three = [1, 2, 3];
  return {
    headline: line,
    executive_summary: line,
    traffic_commentary: line,
    competitor_commentary: line,
    paid_search_commentary: line,
    opportunities: three.map((n) => ({ title: `Opportunity ${n}`, detail: line, impact: 'medium' as const })),
    actions: three.map((n) => ({ action: `Action ${n}`, why: line, effort: 'medium' as const })),
  };
}
