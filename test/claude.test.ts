import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { afterEach, describe, expect, it } from 'vitest';
import { type ClaudeConfig, createClaudeAnalyst, InvalidAnalysisError } from '../connectors/claude/client.ts';
import { type ClaudeSandbox, type ClaudeSandboxOptions, SANDBOX_API_KEY, startClaudeSandbox } from '../connectors/claude/sandbox.ts';
import { NonRetriableError, RetryAfterError } from '../engine/errors.ts';
import { failureOf, sandboxClaudeConfig } from './helpers/claude.ts';

const CompetitorAnalysis = Type.Object(
  {
    domain: Type.String({ minLength: 3 }),
    summary: Type.String({ minLength: 20, maxLength: 400 }),
    visibility_trend: Type.Union([Type.Literal('rising'), Type.Literal('flat'), Type.Literal('falling')]),
    opportunity_score: Type.Integer({ minimum: 0, maximum: 100 }),
    competitors: Type.Array(
      Type.Object(
        {
          domain: Type.String(),
          keyword_overlap: Type.Number({ minimum: 0, maximum: 1 }),
          threat: Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high')]),
        },
        { additionalProperties: false },
      ),
      { minItems: 2, maxItems: 5 },
    ),
    quick_wins: Type.Array(Type.String({ maxLength: 120 }), { minItems: 1, maxItems: 4 }),
    runs_paid_search: Type.Boolean(),
    notes: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const TOOL = 'record_competitor_analysis';
const SYSTEM = 'You are a search-marketing analyst writing for the owner of a small online shop.';
const promptFor = (domain: string) =>
  `Analyse the search visibility of ${domain} against widgetworld.com and gadgethub.io.\n` +
  `SEMrush overview: organic keywords 4210, organic traffic 38000/month, paid keywords 120.\n` +
  `SpyFu: shared keywords with widgetworld.com 1830, with gadgethub.io 960.`;

let sandbox: ClaudeSandbox | undefined;
afterEach(async () => {
  await sandbox?.close();
  sandbox = undefined;
});

async function setup(options: ClaudeSandboxOptions = {}, overrides: Partial<ClaudeConfig> = {}) {
  sandbox = await startClaudeSandbox(options);
  const config = sandboxClaudeConfig(sandbox.url, overrides);
  return { sandbox, analyst: createClaudeAnalyst(config) };
}

const analyse = (analyst: ReturnType<typeof createClaudeAnalyst>, domain = 'acme-widgets.com', extra: { maxTokens?: number; signal?: AbortSignal } = {}) =>
  analyst.analyse({ system: SYSTEM, prompt: promptFor(domain), schema: CompetitorAnalysis, toolName: TOOL, ...extra });

describe('Claude analyst against the sandbox', () => {
  it('returns a validated, typed analysis with its usage and cost', async () => {
    const { sandbox, analyst } = await setup();
    const result = await analyse(analyst);

    expect(Value.Check(CompetitorAnalysis, result.analysis)).toBe(true);
    const score: number = result.analysis.opportunity_score;
    expect(score).toBeGreaterThanOrEqual(0);
    expect(result.analysis.competitors.length).toBeGreaterThanOrEqual(2);
    expect(result.analysis.summary).toMatch(/acme-widgets\.com|widgetworld\.com|gadgethub\.io/);
    expect(result.attempts).toBe(1);
    expect(result.model).toBe('claude-sonnet-5');
    expect(result.usage).toEqual(sandbox.requests[0]!.usage);
    expect(result.usage.input_tokens).toBe(Math.round((SYSTEM.length + promptFor('acme-widgets.com').length) / 4));
    expect(result.costUsd).toBeCloseTo(result.usage.input_tokens * 0.000003 + result.usage.output_tokens * 0.000015, 12);
  });

  it('puts the key, the version, the forced tool, the schema and max_tokens on the wire', async () => {
    const { sandbox, analyst } = await setup();
    await analyse(analyst);
    await analyse(analyst, 'acme-widgets.com', { maxTokens: 1500 });

    const [first, second] = sandbox.requests;
    // @anthropic-ai/sdk 1.x sends the key as Authorization: Bearer and API version 2026-10-21.
    expect(first).toMatchObject({ auth: 'bearer', authorized: true, anthropicVersion: '2026-10-21', status: 200 });
    expect(first!.toolChoice).toEqual({ type: 'tool', name: TOOL, disable_parallel_tool_use: true });
    expect(first!.tool).toBe(TOOL);
    expect(first!.inputSchema).toEqual(JSON.parse(JSON.stringify(CompetitorAnalysis)));
    expect(first!.model).toBe('claude-sonnet-5');
    expect(first!.max_tokens).toBe(2048);
    expect(second!.max_tokens).toBe(1500);
  });

  it('gives the same analysis for the same request, and another for another domain', async () => {
    const { analyst } = await setup();
    const a = await analyse(analyst);
    const b = await analyse(analyst);
    await sandbox!.close();
    const fresh = (await setup()).analyst;
    const again = await analyse(fresh);
    const other = await analyse(fresh, 'brightlamps.co.uk');

    expect(b).toEqual(a);
    expect(again).toEqual(a);
    expect(other.analysis).not.toEqual(a.analysis);
  });

  it('repairs an answer that misses the schema once, and sums the usage of both requests', async () => {
    const { sandbox, analyst } = await setup({ invalidFirst: true });
    const result = await analyse(analyst);

    expect(Value.Check(CompetitorAnalysis, result.analysis)).toBe(true);
    expect(result.attempts).toBe(2);
    expect(sandbox.requests.map((r) => r.repair)).toEqual([false, true]);
    expect(sandbox.requests[1]!.repairText).toMatch(/^- \/ must have required property 'domain'$/m);
    const [first, second] = sandbox.requests.map((r) => r.usage!);
    expect(result.usage).toEqual({
      input_tokens: first!.input_tokens + second!.input_tokens,
      output_tokens: first!.output_tokens + second!.output_tokens,
    });
  });

  it('gives up with NonRetriableError when the repair misses the schema too', async () => {
    const { sandbox, analyst } = await setup({ alwaysInvalid: true });
    const err = await failureOf(analyse(analyst));

    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err).toBeInstanceOf(InvalidAnalysisError);
    expect(err.message).toBe(
      `claude (claude-sonnet-5): the input of tool "${TOOL}" still misses its schema after one repair: / must have required property 'domain'`,
    );
    expect((err as InvalidAnalysisError).errors[0]).toMatchObject({ keyword: 'required', params: { missingProperty: 'domain' } });
    expect(sandbox.requests).toHaveLength(2);
  });

  it('does not retry a reached spend limit', async () => {
    const { sandbox, analyst } = await setup({ spendLimitReached: true });
    const err = await failureOf(analyse(analyst));

    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/spend limit is reached \(429 rate_limit_error enforced_spend_limit_reached: You have reached your API usage limits/);
    expect(sandbox.requests).toHaveLength(1);
  });

  it('turns a 429 into RetryAfterError with the wait from retry-after', async () => {
    const { sandbox, analyst } = await setup({ faults: { throttle: true, retryAfterSeconds: 3 } });
    const err = await failureOf(analyse(analyst));

    expect(err).toBeInstanceOf(RetryAfterError);
    expect((err as RetryAfterError).afterMs).toBe(3000);
    expect(err.message).toMatch(/rate limited \(429 rate_limit_error: .*\); retry after 3000ms$/);
    expect(sandbox.requests).toHaveLength(1);
  });

  it('turns a 529 into a retriable RetryAfterError', async () => {
    const { sandbox, analyst } = await setup({ faults: { error: true, errorStatus: 529 } });
    const err = await failureOf(analyse(analyst));

    expect(err).toBeInstanceOf(RetryAfterError);
    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect((err as RetryAfterError).afterMs).toBe(1000);
    expect(err.message).toMatch(/overloaded \(529 overloaded_error: Overloaded\)/);
    expect(sandbox.requests).toHaveLength(1);
  });

  it('refuses a wrong key with NonRetriableError that does not quote the key', async () => {
    const wrongKey = 'sk-ant-wrong-7f3a9c21d4e8b6';
    const { sandbox, analyst } = await setup({}, { api_key: wrongKey });
    const err = await failureOf(analyse(analyst));

    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toBe('claude (claude-sonnet-5): the API refused the request (401 authentication_error: invalid x-api-key): check connectors.claude.api_key');
    expect(err.message).not.toContain(wrongKey);
    expect(String(err.cause)).not.toContain(wrongKey);
    expect(sandbox.requests).toMatchObject([{ authorized: false, status: 401 }]);
  });

  it('never takes a body that is not JSON for an answer, and does not retry it', async () => {
    const { analyst } = await setup({ faults: { malformed: true } });
    const err = await failureOf(analyse(analyst));

    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/^claude \(claude-sonnet-5\): the answer to POST \/v1\/messages is not JSON/);
  });

  it('treats a timeout as retriable, saying how to raise it', async () => {
    const { analyst } = await setup({ faults: { latencyMs: 300 } }, { timeout: '50ms' });
    const err = await failureOf(analyse(analyst));

    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/no answer within 50ms/);
  });

  it('says how to fix an analysis cut off at max_tokens', async () => {
    const { analyst } = await setup();
    const err = await failureOf(analyse(analyst, 'acme-widgets.com', { maxTokens: 5 }));

    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/cut off at max_tokens 5; raise max_tokens/);
  });

  it('leaves an aborted analysis to the engine, unretried', async () => {
    const { sandbox, analyst } = await setup();
    const controller = new AbortController();
    controller.abort();
    const err = await failureOf(analyse(analyst, 'acme-widgets.com', { signal: controller.signal }));

    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect(err).not.toBeInstanceOf(RetryAfterError);
    expect(err.name).toMatch(/Abort/);
    expect(sandbox.requests).toHaveLength(0);
  });

  it('accepts a plain JSON Schema', async () => {
    const { analyst } = await setup();
    const schema = {
      type: 'object',
      properties: { headline: { type: 'string', maxLength: 80 }, priority: { type: 'string', enum: ['now', 'later'] } },
      required: ['headline', 'priority'],
      additionalProperties: false,
    };
    const result = await analyst.analyse({ prompt: promptFor('acme-widgets.com'), schema, toolName: 'record_headline' });
    expect(result.analysis).toMatchObject({ priority: expect.stringMatching(/^(now|later)$/) });
  });
});

describe('Claude sandbox on the wire', () => {
  const post = (url: string, headers: Record<string, string>, body: unknown) =>
    fetch(`${url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const body = {
    model: 'claude-sonnet-5',
    max_tokens: 1024,
    messages: [{ role: 'user', content: promptFor('acme-widgets.com') }],
    tools: [{ name: TOOL, description: 'Records the analysis.', input_schema: CompetitorAnalysis }],
    tool_choice: { type: 'tool', name: TOOL },
  };

  it('answers x-api-key with anthropic-version 2023-06-01 in the Messages API shape', async () => {
    sandbox = await startClaudeSandbox();
    const res = await post(sandbox.url, { 'x-api-key': SANDBOX_API_KEY, 'anthropic-version': '2023-06-01' }, body);
    const message = (await res.json()) as Record<string, unknown>;

    expect(res.status).toBe(200);
    expect(res.headers.get('request-id')).toMatch(/^req_/);
    expect(message).toMatchObject({ type: 'message', role: 'assistant', model: 'claude-sonnet-5', stop_reason: 'tool_use' });
    expect(message.content).toEqual([{ type: 'tool_use', id: expect.stringMatching(/^toolu_/), name: TOOL, input: expect.any(Object), caller: { type: 'direct' } }]);
    expect(message.usage).toMatchObject({ input_tokens: expect.any(Number), output_tokens: expect.any(Number) });
    expect(sandbox.requests[0]).toMatchObject({ auth: 'x-api-key', authorized: true, anthropicVersion: '2023-06-01' });
  });

  it('answers errors in the API error shape', async () => {
    sandbox = await startClaudeSandbox();
    const version = { 'anthropic-version': '2026-10-21' };
    const cases: [Record<string, string>, unknown, number, string, RegExp][] = [
      [{ 'x-api-key': 'nope', ...version }, body, 401, 'authentication_error', /invalid x-api-key/],
      [{ 'x-api-key': SANDBOX_API_KEY }, body, 400, 'invalid_request_error', /anthropic-version: header is required/],
      [{ 'x-api-key': SANDBOX_API_KEY, ...version }, { ...body, temperature: 0.2 }, 400, 'invalid_request_error', /^temperature: /],
      [{ 'x-api-key': SANDBOX_API_KEY, ...version }, { ...body, tool_choice: { type: 'tool', name: 'other' } }, 400, 'invalid_request_error', /no tool named "other"/],
    ];
    for (const [headers, payload, status, type, message] of cases) {
      const res = await post(sandbox.url, headers, payload);
      const error = (await res.json()) as { type: string; error: { type: string; message: string }; request_id: string };
      expect(res.status).toBe(status);
      expect(error).toMatchObject({ type: 'error', error: { type }, request_id: expect.stringMatching(/^req_/) });
      expect(error.error.message).toMatch(message);
    }
  });
});
