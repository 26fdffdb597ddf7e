import { Type } from '@sinclair/typebox';
import { claudeConnector } from '../../connectors/claude/connector.ts';
import { connectorSettings, defineStep, sourceOf } from '../../engine/sdk.ts';
import { analyse, promptsResource, renderPrompt } from './analysis.ts';
import { type Analysis, AnalysisSchema, type SearchIntel } from './model.ts';

/**
 * `report.analyse`: Claude reads a domain's search data and records the analysis the report
 * prints (AnalysisSchema), through a forced tool so the answer is structured. The prompt is
 * a Liquid file in pipelines/prompts/ (`<name>.md`, plus `<name>.system.md` for the system
 * prompt when present), so wording changes are a file edit.
 */

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
      source: Type.Unsafe<'live' | 'sandbox'>({ type: 'string', enum: ['live', 'sandbox'], description: 'Who answered: Claude ("live") or its local sandbox; pass it to report.render as claude_source.' }),
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
        output: { analysis: placeholderAnalysis(intel.domain), model: '(dry run)', usage: { input_tokens: 0, output_tokens: 0 }, attempts: 0, source: 'live' as const },
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
    return { ...result, source: sourceOf(claude) };
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
