import { Type } from '@sinclair/typebox';
import type { BatchItem } from '../../connectors/claude/batch.ts';
import { claudeConnector } from '../../connectors/claude/connector.ts';
import { connectorSettings, type DataSource, defineStep, type EngineConfig, NonRetriableError, parseDuration, sourceOf, type StepContext } from '../../engine/sdk.ts';
import { INTEL_SOURCE } from '../prospects/census.ts';
import { analyse, promptsResource, renderPrompt, TOOL_NAME } from './analysis.ts';
import { type Analysis, AnalysisSchema, type SearchIntel } from './model.ts';

/**
 * `report.analyse_batch`: Claude analyses of many prospects at once through the Message
 * Batches API (half the price of single calls, answered within hours). The batch id is
 * recorded as soon as the batch exists, so a resumed run polls the batch it already paid
 * for. Every submitted request ends with a result: one that comes back errored, expired or
 * invalid, or that the results file leaves out, is made again on its own (analyse(), which
 * repairs an invalid answer once).
 */

interface Target {
  prospect_id: string;
  company_name?: string | null;
  domain: string;
}

/**
 * Tokens of one analysis as the shipped prompt makes them: about 2,500 read (the prompt with a
 * prospect's search data) and 800 written (the analysis), never more than max_tokens; billed
 * at half price in a batch.
 */
const PROMPT_TOKENS = 2500;
const ANALYSIS_TOKENS = 800;

function estimatedTokens(prospects: number, config: EngineConfig): Record<string, number> {
  const written = Math.min(connectorSettings(claudeConnector, config).max_tokens, ANALYSIS_TOKENS);
  return { claude_batch_input_tokens: prospects * PROMPT_TOKENS, claude_batch_output_tokens: prospects * written };
}

const customIdOf = (prospectId: string) => `p_${prospectId.replace(/-/g, '')}`;

async function intelOf(ctx: StepContext, ids: string[]): Promise<Map<string, SearchIntel>> {
  const rows = await ctx.db.query<{ id: string; data: SearchIntel | string }>(
    `SELECT p.id, i.data FROM prospects p JOIN prospect_intelligence i ON i.domain = p.domain AND i.source = $1 WHERE p.id = ANY($2::uuid[])`,
    [INTEL_SOURCE, ids],
  );
  return new Map(rows.map((r) => [r.id, typeof r.data === 'string' ? (JSON.parse(r.data) as SearchIntel) : r.data]));
}

const Result = Type.Object(
  {
    prospect_id: Type.String(),
    analysis: AnalysisSchema,
    usage: Type.Object({ input_tokens: Type.Integer(), output_tokens: Type.Integer() }),
    via: Type.Unsafe<'batch' | 'single'>({ type: 'string', enum: ['batch', 'single'] }),
    source: Type.Unsafe<'live' | 'sandbox'>({ type: 'string', enum: ['live', 'sandbox'], description: 'Who answered: Claude ("live") or its local sandbox; pass it to report.render as claude_source.' }),
  },
  { additionalProperties: false },
);

export const reportAnalyseBatch = defineStep({
  type: 'report.analyse_batch',
  description: 'Has Claude analyse many prospects\' search data in one Message Batch (half price); failed requests are redone singly. Reads each prospect\'s stored search data.',
  input: Type.Object(
    {
      prospects: Type.Array(
        Type.Object({ prospect_id: Type.String(), domain: Type.String(), company_name: Type.Optional(Type.Union([Type.String(), Type.Null()])) }, { additionalProperties: true }),
        { description: 'Who to analyse, e.g. linkedin.select\'s selected.' },
      ),
      prompt: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', description: 'Prompt file in pipelines/prompts/ (default report-analysis).' })),
      poll: Type.Optional(Type.String({ description: 'Wait between two looks at the batch (default "60s").' })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object(
    {
      batch_id: Type.Union([Type.String(), Type.Null()]),
      results: Type.Array(Result),
      counts: Type.Object({ submitted: Type.Integer(), succeeded: Type.Integer(), retried: Type.Integer(), failed: Type.Record(Type.String(), Type.Integer()) }),
    },
    { additionalProperties: false },
  ),
  effect: {
    kind: () => 'api',
    // The batch id is kept by effect key: a repeat resumes the same batch.
    providerIdempotent: () => true,
    cost: (input, config) => estimatedTokens(input.prospects.length, config),
    describe: (input) => ({ summary: `Claude batch of ${input.prospects.length} analyses` }),
    async plan(ctx, input) {
      const n = input.prospects.length;
      return {
        summary: `Claude batch of ${n} analyses (half price)`,
        output: { batch_id: null, results: [], counts: { submitted: n, succeeded: 0, retried: 0, failed: {} } },
        cost: estimatedTokens(n, ctx.config),
      };
    },
  },
  async run(ctx, input) {
    const targets = input.prospects as Target[];
    if (!targets.length) return { batch_id: null, results: [], counts: { submitted: 0, succeeded: 0, retried: 0, failed: {} } };
    const [claude, liquid] = await Promise.all([ctx.use(claudeConnector), ctx.use(promptsResource)]);
    const intel = await intelOf(ctx, targets.map((t) => t.prospect_id));
    const prompts = new Map<string, Awaited<ReturnType<typeof renderPrompt>>>();
    for (const t of targets) {
      const data = intel.get(t.prospect_id);
      if (!data) throw new NonRetriableError(`no search data stored for prospect ${t.prospect_id} (${t.domain}): enrich it first`);
      prompts.set(t.prospect_id, await renderPrompt(liquid, input.prompt ?? 'report-analysis', { company: t.company_name ?? t.domain, intel: data }));
    }
    const request = (id: string) => ({ system: prompts.get(id)!.system, prompt: prompts.get(id)!.user, schema: AnalysisSchema, toolName: TOOL_NAME });

    const key = ctx.effectKey ?? `${ctx.run.id}:${ctx.step.id}`;
    const [known] = await ctx.db.query<{ batch_id: string }>('SELECT batch_id FROM claude_batches WHERE effect_key = $1', [key]);
    let batchId = known?.batch_id;
    if (!batchId) {
      const items: BatchItem<typeof AnalysisSchema>[] = targets.map((t) => ({ customId: customIdOf(t.prospect_id), request: request(t.prospect_id) }));
      batchId = (await claude.batches.submit(items, { signal: ctx.signal })).batchId;
      await ctx.db.query('INSERT INTO claude_batches (effect_key, batch_id, requests, submitted_at) VALUES ($1, $2, $3, $4)', [key, batchId, items.length, ctx.clock.now()]);
      ctx.log.info({ batch: batchId, requests: items.length }, 'message batch submitted');
    } else ctx.log.info({ batch: batchId }, 'resuming the message batch submitted before');

    const intervalMs = parseDuration(input.poll ?? '60s') ?? 60_000;
    await claude.batches.pollUntilEnded(batchId, { signal: ctx.signal, intervalMs, onStatus: (s) => ctx.log.info({ batch: batchId, counts: s.counts }, `batch ${s.processing}`) });
    await ctx.db.query('UPDATE claude_batches SET ended_at = $2 WHERE effect_key = $1', [key, ctx.clock.now()]);

    const byCustomId = new Map(targets.map((t) => [customIdOf(t.prospect_id), t]));
    const source = sourceOf(claude);
    const expected = new Map(targets.map((t) => [customIdOf(t.prospect_id), { schema: AnalysisSchema, toolName: TOOL_NAME }]));
    const results: { prospect_id: string; analysis: Analysis; usage: { input_tokens: number; output_tokens: number }; via: 'batch' | 'single'; source: DataSource }[] = [];
    const failed: Record<string, number> = {};
    const redo: Target[] = [];
    let batchIn = 0;
    let batchOut = 0;
    for await (const outcome of await claude.batches.results(batchId, expected, { signal: ctx.signal })) {
      const target = byCustomId.get(outcome.customId)!;
      if (outcome.usage) {
        batchIn += outcome.usage.input_tokens;
        batchOut += outcome.usage.output_tokens;
      }
      if (outcome.status === 'succeeded') results.push({ prospect_id: target.prospect_id, analysis: outcome.analysis as Analysis, usage: outcome.usage, via: 'batch', source });
      else {
        failed[outcome.status] = (failed[outcome.status] ?? 0) + 1;
        redo.push(target);
      }
    }
    ctx.spend({ claude_batch_input_tokens: batchIn, claude_batch_output_tokens: batchOut });
    for (const t of redo) {
      const single = await analyse(claude.analyst, prompts.get(t.prospect_id)!, undefined, ctx.signal);
      ctx.spend({ claude_input_tokens: single.usage.input_tokens, claude_output_tokens: single.usage.output_tokens });
      results.push({ prospect_id: t.prospect_id, analysis: single.analysis, usage: single.usage, via: 'single', source });
    }
    const order = new Map(targets.map((t, i) => [t.prospect_id, i]));
    results.sort((a, b) => order.get(a.prospect_id)! - order.get(b.prospect_id)!);
    return { batch_id: batchId, results, counts: { submitted: targets.length, succeeded: results.length - redo.length, retried: redo.length, failed } };
  },
});
