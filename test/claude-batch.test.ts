import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { afterEach, describe, expect, it } from 'vitest';
import { type BatchItem, BatchNotEndedError, type BatchOutcome, type BatchStatus, type ClaudeBatches, createClaudeBatches } from '../connectors/claude/batch.ts';
import { buildParams, type ClaudeConfig, createClaudeAnalyst } from '../connectors/claude/client.ts';
import { type ClaudeSandbox, type ClaudeSandboxOptions, SANDBOX_API_KEY, startClaudeSandbox } from '../connectors/claude/sandbox.ts';
import { ManualClock } from '../engine/clock.ts';
import { NonRetriableError, RetryAfterError } from '../engine/errors.ts';
import { failureOf, sandboxClaudeConfig } from './helpers/claude.ts';

const CompetitorAnalysis = Type.Object(
  {
    domain: Type.String({ minLength: 3 }),
    summary: Type.String({ minLength: 20, maxLength: 400 }),
    visibility_trend: Type.Union([Type.Literal('rising'), Type.Literal('flat'), Type.Literal('falling')]),
    opportunity_score: Type.Integer({ minimum: 0, maximum: 100 }),
    competitors: Type.Array(Type.Object({ domain: Type.String(), threat: Type.Union([Type.Literal('low'), Type.Literal('high')]) }), { minItems: 2, maxItems: 4 }),
    notes: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
type Schema = typeof CompetitorAnalysis;

const TOOL = 'record_competitor_analysis';
const SYSTEM = 'You are a search-marketing analyst writing for the owner of a small online shop.';
const request = (domain: string) => ({
  system: SYSTEM,
  prompt: `Analyse the search visibility of ${domain} against widgetworld.com and gadgethub.io.\nSEMrush: organic keywords 4210, traffic 38000/month.`,
  schema: CompetitorAnalysis,
  toolName: TOOL,
});
const itemsFor = (n: number): BatchItem<Schema>[] => Array.from({ length: n }, (_, i) => ({ customId: `report-${i}`, request: request(`shop-${i}.example`) }));
const expectation = { schema: CompetitorAnalysis, toolName: TOOL };

let sandbox: ClaudeSandbox | undefined;
afterEach(async () => {
  await sandbox?.close();
  sandbox = undefined;
});

/** A sandbox and a batch client on one fake clock: batches take a minute that no test waits for. */
async function setup(options: ClaudeSandboxOptions = {}, overrides: Partial<ClaudeConfig> = {}) {
  await sandbox?.close();
  const clock = new ManualClock();
  sandbox = await startClaudeSandbox({ batchProcessingMs: 60_000, now: () => clock.now().getTime(), ...options });
  const config = sandboxClaudeConfig(sandbox.url, overrides);
  const batches = createClaudeBatches(config, { sleep: (ms, signal) => clock.sleep(ms, signal) });
  return { sandbox, clock, config, batches, analyst: createClaudeAnalyst(config) };
}

async function collect<T>(outcomes: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const o of outcomes) all.push(o);
  return all;
}

async function endedResults(batches: ClaudeBatches, batchId: string) {
  await batches.pollUntilEnded(batchId, { intervalMs: 60_000 });
  return collect(await batches.results(batchId, expectation));
}

describe('Claude Message Batches against the sandbox', () => {
  it('submits 20 analyses, polls on the clock until the batch ends, and returns every result shuffled', async () => {
    const { sandbox, clock, batches } = await setup();
    const items = itemsFor(20);
    const submitted = await batches.submit(items);

    expect(submitted).toMatchObject({ batchId: expect.stringMatching(/^msgbatch_/), processing: 'in_progress', counts: { processing: 20, succeeded: 0, errored: 0, canceled: 0, expired: 0 } });
    expect(submitted.endedAt).toBeUndefined();
    expect(Date.parse(submitted.expiresAt) - Date.parse(submitted.createdAt)).toBe(24 * 60 * 60 * 1000);
    expect((await batches.status(submitted.batchId)).processing).toBe('in_progress');

    const seen: BatchStatus[] = [];
    const ended = await batches.pollUntilEnded(submitted.batchId, { intervalMs: 15_000, onStatus: (s) => seen.push(s) });
    expect(seen.map((s) => s.processing)).toEqual(['in_progress', 'in_progress', 'in_progress', 'in_progress', 'ended']);
    expect(clock.sleeps).toEqual([15_000, 15_000, 15_000, 15_000]);
    expect(ended).toMatchObject({ processing: 'ended', counts: { processing: 0, succeeded: 20, errored: 0, canceled: 0, expired: 0 }, endedAt: '2026-11-23T09:01:00.000Z' });

    const outcomes = await collect(await batches.results(submitted.batchId, expectation));
    const order = outcomes.map((o) => o.customId);
    const submittedOrder = items.map((i) => i.customId);
    expect([...order].sort()).toEqual([...submittedOrder].sort());
    expect(order).not.toEqual(submittedOrder);
    for (const o of outcomes) {
      expect(o.status).toBe('succeeded');
      if (o.status === 'succeeded') expect(Value.Check(CompetitorAnalysis, o.analysis)).toBe(true);
    }
    // On the wire: the creation, one status, five polls, then results(): its own status check,
    // the SDK's retrieve for results_url, and the JSONL.
    expect(sandbox.requests.map((r) => `${r.method} ${r.path.replace(submitted.batchId, '{id}')} ${r.status}`)).toEqual([
      'POST /v1/messages/batches 200',
      ...Array(1 + 5 + 2).fill('GET /v1/messages/batches/{id} 200'),
      'GET /v1/messages/batches/{id}/results 200',
    ]);
    expect(sandbox.requests[0]).toMatchObject({ auth: 'bearer', authorized: true, anthropicVersion: '2026-10-21' });
  });

  it('gives each item the analysis, usage and model a single analyse() gives, at half the price', async () => {
    const { sandbox, config, batches, analyst } = await setup({ batchProcessingMs: 0 });
    const items = itemsFor(6);
    const { batchId } = await batches.submit(items);

    expect(sandbox.batches[0]!.requests.map((r) => r.params)).toEqual(items.map((i) => JSON.parse(JSON.stringify(buildParams(config, i.request).params))));
    const byId = new Map((await endedResults(batches, batchId)).map((o) => [o.customId, o]));
    for (const item of items) {
      const single = await analyst.analyse(item.request);
      const outcome = byId.get(item.customId) as Extract<BatchOutcome<unknown>, { status: 'succeeded' }>;
      expect(outcome).toMatchObject({ status: 'succeeded', analysis: single.analysis, usage: single.usage, model: single.model });
      expect(outcome.costUsd).toBeCloseTo(single.costUsd! / 2, 12);
    }
    const analyses = [...byId.values()].map((o) => (o.status === 'succeeded' ? JSON.stringify(o.analysis) : ''));
    expect(new Set(analyses).size).toBe(items.length);
  });

  it('returns the same batch id and the same order for the same submission', async () => {
    const run = async () => {
      const { batches } = await setup({ batchProcessingMs: 0 });
      const { batchId } = await batches.submit(itemsFor(12));
      return { batchId, order: (await endedResults(batches, batchId)).map((o) => o.customId) };
    };
    const first = await run();
    expect(await run()).toEqual(first);
  });

  it('reports errored and expired requests by custom_id, with what to do next', async () => {
    const { batches } = await setup({ batchProcessingMs: 0, batchErroredIds: ['report-3'], batchExpiredIds: ['report-7'] });
    const { batchId } = await batches.submit(itemsFor(10));
    const outcomes = await endedResults(batches, batchId);
    const status = await batches.status(batchId);

    expect(status.counts).toEqual({ processing: 0, succeeded: 8, errored: 1, canceled: 0, expired: 1 });
    expect(outcomes.find((o) => o.customId === 'report-3')).toEqual({
      customId: 'report-3',
      status: 'errored',
      errorType: 'api_error',
      error: 'claude (claude-sonnet-5): batch request "report-3" errored (api_error: Internal server error); sending it again may succeed',
    });
    expect(outcomes.find((o) => o.customId === 'report-7')).toEqual({
      customId: 'report-7',
      status: 'expired',
      error: 'claude (claude-sonnet-5): batch request "report-7" expired: the batch reached its 24 hours before processing it; submit it again',
    });
    expect(outcomes.filter((o) => o.status === 'succeeded')).toHaveLength(8);
  });

  it('a request the results file leaves out ends as missing, once every line is read', async () => {
    const { batches, sandbox: box } = await setup({ batchProcessingMs: 0, batchOmittedIds: ['report-2', 'report-5'] });
    const items = itemsFor(6);
    const { batchId } = await batches.submit(items);
    await batches.pollUntilEnded(batchId, { intervalMs: 60_000 });
    const expected = new Map(items.map((i) => [i.customId, expectation]));
    const outcomes = await collect(await batches.results(batchId, expected));
    expect(outcomes.map((o) => o.customId).sort()).toEqual(items.map((i) => i.customId).sort());
    expect(outcomes.slice(-2).map((o) => [o.customId, o.status])).toEqual([['report-2', 'missing'], ['report-5', 'missing']]);
    expect(outcomes.find((o) => o.customId === 'report-2')).toMatchObject({ error: `claude (claude-sonnet-5): batch request "report-2" has no line in the results of message batch ${batchId}; submit it again` });
    expect(outcomes.filter((o) => o.status === 'succeeded')).toHaveLength(4);
    expect(box.batches[0]!.requests).toHaveLength(6);
  });

  it('errors and expires a share of requests chosen by custom_id, the same way every run', async () => {
    const statuses = async () => {
      const { batches } = await setup({ batchProcessingMs: 0, batchErrorRate: 0.25, batchExpireRate: 0.15 });
      const { batchId } = await batches.submit(itemsFor(40));
      const outcomes = await endedResults(batches, batchId);
      return Object.fromEntries(outcomes.map((o) => [o.customId, o.status]));
    };
    const first = await statuses();
    expect(await statuses()).toEqual(first);
    const counts = Object.values(first).reduce<Record<string, number>>((n, s) => ({ ...n, [s]: (n[s] ?? 0) + 1 }), {});
    expect(counts.errored).toBeGreaterThan(0);
    expect(counts.expired).toBeGreaterThan(0);
    expect(counts.succeeded).toBeGreaterThan(20);
  });

  it('marks an answer that misses the schema invalid, billed, for a single analyse() to repair', async () => {
    const { batches, analyst } = await setup({ batchProcessingMs: 0, invalidFirst: true });
    const items = itemsFor(3);
    const { batchId } = await batches.submit(items);
    const outcomes = await endedResults(batches, batchId);

    expect(outcomes.map((o) => o.status)).toEqual(['invalid', 'invalid', 'invalid']);
    const invalid = outcomes.find((o) => o.customId === 'report-1')!;
    expect(invalid).toMatchObject({
      error: `claude (claude-sonnet-5): batch request "report-1": the input of tool "${TOOL}" misses its schema: / must have required property 'domain'; analyse() it alone, which repairs once`,
      usage: { input_tokens: expect.any(Number), output_tokens: expect.any(Number) },
      costUsd: expect.any(Number),
    });
    const repaired = await analyst.analyse(items[1]!.request);
    expect(repaired.attempts).toBe(2);
  });

  it('refuses a custom_id the API would refuse before sending anything, naming it', async () => {
    const { sandbox, batches } = await setup();
    const items = itemsFor(5);

    const badChars = await failureOf(batches.submit([...items.slice(0, 2), { customId: 'report 2/acme.com', request: request('acme.com') }]));
    expect(badChars).toBeInstanceOf(NonRetriableError);
    expect(badChars.message).toBe(
      'claude (claude-sonnet-5): batch item 2: custom_id "report 2/acme.com" must match ^[a-zA-Z0-9_-]{1,64}$ (letters, digits, _ and -; e.g. "report_2_acme_com")',
    );

    const duplicate = await failureOf(batches.submit([...items, { customId: 'report-1', request: request('acme.com') }]));
    expect(duplicate).toBeInstanceOf(NonRetriableError);
    expect(duplicate.message).toBe('claude (claude-sonnet-5): batch items 1 and 5 share custom_id "report-1"; each custom_id must be unique within a batch');

    const tooLong = await failureOf(batches.submit([{ customId: 'r'.repeat(65), request: request('acme.com') }]));
    expect(tooLong.message).toContain(`custom_id "${'r'.repeat(65)}"`);

    const badTool = await failureOf(batches.submit([{ customId: 'report-9', request: { ...request('acme.com'), toolName: 'record analysis' } }]));
    expect(badTool).toBeInstanceOf(NonRetriableError);
    expect(badTool.message).toMatch(/^claude \(claude-sonnet-5\), batch item "report-9": toolName "record analysis" must match/);

    expect(await failureOf(batches.submit([]))).toBeInstanceOf(NonRetriableError);
    expect(sandbox.requests).toHaveLength(0);
  });

  it('turns a 429 on submit into RetryAfterError with the wait from retry-after', async () => {
    const { sandbox, batches } = await setup({ faults: { throttle: true, retryAfterSeconds: 7 } });
    const err = await failureOf(batches.submit(itemsFor(3)));

    expect(err).toBeInstanceOf(RetryAfterError);
    expect((err as RetryAfterError).afterMs).toBe(7000);
    expect(err.message).toMatch(/^claude \(claude-sonnet-5\): rate limited \(429 rate_limit_error: .*\); retry after 7000ms$/);
    expect(sandbox.requests).toMatchObject([{ method: 'POST', path: '/v1/messages/batches', status: 429 }]);
    expect(sandbox.batches).toHaveLength(0);
  });

  it('does not retry a submit refused by a reached spend limit or a wrong key', async () => {
    const spent = await setup({ spendLimitReached: true });
    const err = await failureOf(spent.batches.submit(itemsFor(2)));
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/spend limit is reached \(429 rate_limit_error enforced_spend_limit_reached: /);

    const wrongKey = await setup({}, { api_key: 'sk-ant-wrong-1234567890' });
    const refused = await failureOf(wrongKey.batches.submit(itemsFor(2)));
    expect(refused).toBeInstanceOf(NonRetriableError);
    expect(refused.message).toBe('claude (claude-sonnet-5): the API refused the request (401 authentication_error: invalid x-api-key): check connectors.claude.api_key');
  });

  it('says which batch id is unknown', async () => {
    const { batches } = await setup();
    for (const call of [batches.status('msgbatch_nope'), batches.results('msgbatch_nope', expectation), batches.cancel('msgbatch_nope')]) {
      const err = await failureOf(call);
      expect(err).toBeInstanceOf(NonRetriableError);
      expect(err.message).toBe(
        'claude (claude-sonnet-5): no message batch "msgbatch_nope" (404 not_found_error: Message Batch "msgbatch_nope" not found): use the id submit() returned, with a key of the workspace that created it',
      );
    }
  });

  it('asks to wait when results are requested before the batch has ended', async () => {
    const { sandbox, clock, batches } = await setup();
    const { batchId } = await batches.submit(itemsFor(20));
    clock.advance(30_000);
    const err = await failureOf(batches.results(batchId, expectation));

    expect(err).toBeInstanceOf(BatchNotEndedError);
    expect(err).toBeInstanceOf(RetryAfterError);
    expect((err as BatchNotEndedError).afterMs).toBe(60_000);
    expect(err.message).toBe(
      `claude (claude-sonnet-5): message batch ${batchId} has not ended (processing_status in_progress, 20 of its requests processing); its results exist once it has: wait with pollUntilEnded(), or retry after 60000ms`,
    );
    expect(sandbox.requests.some((r) => r.path.endsWith('/results'))).toBe(false);
  });

  it('cancels a batch: canceling until it ends, then every request canceled', async () => {
    const { clock, batches } = await setup();
    const { batchId } = await batches.submit(itemsFor(4));
    clock.advance(10_000);
    const canceling = await batches.cancel(batchId);
    expect(canceling.processing).toBe('canceling');

    const outcomes = await endedResults(batches, batchId);
    expect(outcomes.map((o) => o.status)).toEqual(['canceled', 'canceled', 'canceled', 'canceled']);
    expect((await batches.status(batchId)).counts.canceled).toBe(4);
    const late = await failureOf(batches.cancel(batchId));
    expect(late).toBeInstanceOf(NonRetriableError);
    expect(late.message).toMatch(/has already ended and cannot be canceled/);
  });

  it('fails results that belong to other items than the ones expected', async () => {
    const { batches } = await setup({ batchProcessingMs: 0 });
    const items = itemsFor(3);
    const { batchId } = await batches.submit(items);
    await batches.pollUntilEnded(batchId);
    const expected = new Map(items.slice(0, 2).map((i) => [i.customId, i.request]));
    const err = await failureOf(collect(await batches.results(batchId, expected)));

    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toBe(
      `claude (claude-sonnet-5): message batch ${batchId} has a result for custom_id "report-2", which is not among the 2 expected; are these the items of another batch?`,
    );
  });

  it('stops polling when the signal aborts', async () => {
    const { batches } = await setup();
    const { batchId } = await batches.submit(itemsFor(2));
    const controller = new AbortController();
    const err = await failureOf(batches.pollUntilEnded(batchId, { signal: controller.signal, onStatus: () => controller.abort() }));
    expect(err.name).toMatch(/Abort/);
  });
});

describe('Claude sandbox Message Batches on the wire', () => {
  const headers = { 'content-type': 'application/json', 'x-api-key': SANDBOX_API_KEY, 'anthropic-version': '2023-06-01' };
  const params = (domain: string) => ({
    model: 'claude-sonnet-5',
    max_tokens: 1024,
    messages: [{ role: 'user', content: request(domain).prompt }],
    tools: [{ name: TOOL, input_schema: CompetitorAnalysis }],
    tool_choice: { type: 'tool', name: TOOL },
  });
  const create = (url: string, body: unknown, extra: Record<string, string> = {}) =>
    fetch(`${url}/v1/messages/batches`, { method: 'POST', headers: { ...headers, ...extra }, body: JSON.stringify(body) });
  const get = (url: string) => fetch(url, { headers });

  it('answers the message_batch shape and streams the results as JSONL', async () => {
    sandbox = await startClaudeSandbox();
    const res = await create(sandbox.url, { requests: [{ custom_id: 'a', params: params('a.example') }, { custom_id: 'b', params: params('b.example') }] });
    const batch = (await res.json()) as Record<string, unknown>;

    expect(res.status).toBe(200);
    expect(Object.keys(batch).sort()).toEqual(
      ['archived_at', 'cancel_initiated_at', 'created_at', 'ended_at', 'expires_at', 'id', 'processing_status', 'request_counts', 'results_url', 'type'].sort(),
    );
    expect(batch).toMatchObject({ type: 'message_batch', processing_status: 'in_progress', ended_at: null, results_url: null, request_counts: { processing: 2 } });

    const retrieved = (await (await get(`${sandbox.url}/v1/messages/batches/${batch.id}`)).json()) as Record<string, unknown>;
    expect(retrieved).toMatchObject({ processing_status: 'ended', results_url: `${sandbox.url}/v1/messages/batches/${batch.id}/results`, request_counts: { processing: 0, succeeded: 2 } });

    const results = await get(retrieved.results_url as string);
    expect(results.headers.get('content-type')).toBe('application/x-jsonl');
    const lines = (await results.text()).trimEnd().split('\n').map((l) => JSON.parse(l) as { custom_id: string; result: Record<string, unknown> });
    expect(lines.map((l) => l.custom_id)).toEqual(['b', 'a']);
    const single = await (await fetch(`${sandbox.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify(params('a.example')) })).json();
    expect(lines[1]!.result).toEqual({ type: 'succeeded', message: single });
  });

  it('validates each request\'s params asynchronously, as the API does: errored, not refused', async () => {
    sandbox = await startClaudeSandbox();
    const res = await create(sandbox.url, { requests: [{ custom_id: 'ok', params: params('a.example') }, { custom_id: 'bad', params: { ...params('b.example'), temperature: 0.3 } }] }, {
      'anthropic-version': '2026-10-21',
    });
    const batch = (await res.json()) as { id: string };
    expect(res.status).toBe(200);

    const text = await (await get(`${sandbox.url}/v1/messages/batches/${batch.id}/results`)).text();
    const bad = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.custom_id === 'bad');
    expect(bad.result).toEqual({
      type: 'errored',
      error: { type: 'error', error: { type: 'invalid_request_error', message: 'temperature: Extra inputs are not permitted in API version 2026-10-21' }, request_id: expect.stringMatching(/^req_/) },
    });
  });

  it('refuses a malformed batch as a whole, and answers unknown ids and early results with errors', async () => {
    let now = 0;
    sandbox = await startClaudeSandbox({ batchProcessingMs: 1000, now: () => now });
    const cases: [unknown, number, RegExp][] = [
      [{}, 400, /^requests: Field required$/],
      [{ requests: [] }, 400, /^requests: List should have at least 1 item/],
      [{ requests: Array.from({ length: 100_001 }, (_, i) => ({ custom_id: `r${i}`, params: {} })) }, 400, /at most 100000 items/],
      [{ requests: [{ custom_id: 'has space', params: params('a.example') }] }, 400, /^requests\.0\.custom_id: String should match pattern .*got "has space"$/],
      [{ requests: [{ custom_id: 'x', params: params('a.example') }, { custom_id: 'x', params: params('b.example') }] }, 400, /^requests\.1\.custom_id: "x" is also the custom_id of requests\.0/],
      [{ requests: [{ custom_id: 'x' }] }, 400, /^requests\.0\.params: Field required/],
    ];
    for (const [body, status, message] of cases) {
      const res = await create(sandbox.url, body);
      const error = (await res.json()) as { type: string; error: { type: string; message: string } };
      expect(res.status).toBe(status);
      expect(error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
      expect(error.error.message).toMatch(message);
    }
    expect(sandbox.batches).toHaveLength(0);

    const unknown = await get(`${sandbox.url}/v1/messages/batches/msgbatch_nope`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { type: string } }).error.type).toBe('not_found_error');

    const batch = (await (await create(sandbox.url, { requests: [{ custom_id: 'a', params: params('a.example') }] })).json()) as { id: string };
    now = 999;
    const early = await get(`${sandbox.url}/v1/messages/batches/${batch.id}/results`);
    expect(early.status).toBe(400);
    expect(((await early.json()) as { error: { message: string } }).error.message).toMatch(/has not ended \(processing_status in_progress\)/);
    now = 1000;
    expect((await get(`${sandbox.url}/v1/messages/batches/${batch.id}/results`)).status).toBe(200);
  });
});
