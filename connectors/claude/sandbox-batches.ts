import { createHash } from 'node:crypto';

/**
 * The Message Batches API in the Claude sandbox: create, retrieve, results and cancel, on the
 * wire as the API reference ("Create a Message Batch", "Retrieve a Message Batch", "Retrieve
 * Message Batch results", "Cancel a Message Batch") and the "Batch processing" guide give it:
 *
 *   POST /v1/messages/batches { requests: [{ custom_id, params }] }   1..100,000 requests,
 *     custom_id ^[a-zA-Z0-9_-]{1,64}$ and unique in the batch    -> 200 message_batch
 *   GET  /v1/messages/batches/{id}                                 -> 200 message_batch | 404
 *   GET  /v1/messages/batches/{id}/results   (the batch's results_url, set once ended)
 *     -> 200 application/x-jsonl, one { custom_id, result } a line, in no particular order
 *   POST /v1/messages/batches/{id}/cancel                          -> 200 message_batch (canceling)
 *
 * As the guide says, each request's params are validated asynchronously: a params object
 * /v1/messages would refuse does not fail the creation but comes back `errored` with that
 * invalid_request_error once the batch has ended. A succeeded result carries exactly the message
 * POST /v1/messages answers to the same params.
 *
 * Choices of the sandbox where the documents say nothing: the error messages' wording; asking
 * for the results of a batch that has not ended answers 400 invalid_request_error; canceling an
 * ended batch answers 400; a canceled batch ends when it would have ended anyway, with every
 * request canceled. The list endpoint is not served.
 */
export interface ClaudeSandboxBatchOptions {
  /** How long a batch stays in_progress after its creation, in ms (default 0: ended by the first retrieve). */
  batchProcessingMs?: number;
  /** The clock batches are timed by, in ms since the epoch (default Date.now); a test's fake clock. */
  now?: () => number;
  /** custom_ids whose result is `errored` (api_error, as a server failure inside the batch). */
  batchErroredIds?: string[];
  /** custom_ids whose result is `expired` (the batch reached its 24 hours before them). */
  batchExpiredIds?: string[];
  /** custom_ids the results file leaves out (no line at all), as a faulty results file would. */
  batchOmittedIds?: string[];
  /** Share (0..1) of requests that come back `errored`, chosen by a hash of the custom_id. */
  batchErrorRate?: number;
  /** Share (0..1) of requests that come back `expired`, chosen by a hash of the custom_id. */
  batchExpireRate?: number;
}

/** A batch as the sandbox keeps it, for tests to look at. */
export interface ClaudeSandboxBatch {
  id: string;
  /** The requests as sent, in submission order. */
  requests: { custom_id: string; params: Record<string, unknown> }[];
  createdAtMs: number;
  /** When the batch ends (created + batchProcessingMs). */
  endsAtMs: number;
  cancelInitiatedAtMs: number | null;
  /** The anthropic-version it was created with: its params are answered as that version would. */
  version: string;
}

export interface BatchResponder {
  json(status: number, body: unknown): void;
  jsonl(text: string): void;
  error(status: number, type: string, message: string): void;
  /** Answers an injected failure (429, 529, spend cap) and returns true, or returns false. */
  injected(): boolean;
}

export interface BatchDeps {
  /** What POST /v1/messages answers to `params`: the message, or the 400 message refusing it. */
  answer(params: Record<string, unknown>, version: string): string | Record<string, unknown>;
  /** The sandbox's url, for results_url. */
  baseUrl(): string;
}

type Result =
  | { type: 'succeeded'; message: Record<string, unknown> }
  | { type: 'errored'; error: { type: 'error'; error: { type: string; message: string }; request_id: string } }
  | { type: 'canceled' }
  | { type: 'expired' };

const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX_REQUESTS = 100_000;
const MAX_BYTES = 256 * 1024 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;
const ROUTE = /^\/v1\/messages\/batches(?:\/([^/]+)(?:\/(results|cancel))?)?$/;

export function batchEndpoints(options: ClaudeSandboxBatchOptions, deps: BatchDeps) {
  const now = options.now ?? Date.now;
  const list: ClaudeSandboxBatch[] = [];
  const byId = new Map<string, ClaudeSandboxBatch>();
  const outcomes = new Map<string, Result[]>();
  const erroredIds = new Set(options.batchErroredIds ?? []);
  const expiredIds = new Set(options.batchExpiredIds ?? []);
  const omittedIds = new Set(options.batchOmittedIds ?? []);

  const ended = (batch: ClaudeSandboxBatch) => now() >= batch.endsAtMs;

  /** Each request's result, in submission order; fixed once computed. */
  function resultsOf(batch: ClaudeSandboxBatch): Result[] {
    let results = outcomes.get(batch.id);
    if (!results) {
      results = batch.requests.map(({ custom_id, params }): Result => {
        if (batch.cancelInitiatedAtMs !== null) return { type: 'canceled' };
        if (expiredIds.has(custom_id) || share(`expire:${custom_id}`) < (options.batchExpireRate ?? 0)) return { type: 'expired' };
        if (erroredIds.has(custom_id) || share(`error:${custom_id}`) < (options.batchErrorRate ?? 0)) {
          return errored(batch.id, custom_id, 'api_error', 'Internal server error');
        }
        const answer = deps.answer(params, batch.version);
        return typeof answer === 'string' ? errored(batch.id, custom_id, 'invalid_request_error', answer) : { type: 'succeeded', message: answer };
      });
      outcomes.set(batch.id, results);
    }
    return results;
  }

  function batchObject(batch: ClaudeSandboxBatch, done = ended(batch)) {
    const counts = { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
    if (done) for (const r of resultsOf(batch)) counts[r.type]++;
    else counts.processing = batch.requests.length;
    return {
      id: batch.id,
      type: 'message_batch',
      processing_status: done ? 'ended' : batch.cancelInitiatedAtMs !== null ? 'canceling' : 'in_progress',
      request_counts: counts,
      ended_at: done ? iso(batch.endsAtMs) : null,
      created_at: iso(batch.createdAtMs),
      expires_at: iso(batch.createdAtMs + DAY_MS),
      archived_at: null,
      cancel_initiated_at: batch.cancelInitiatedAtMs === null ? null : iso(batch.cancelInitiatedAtMs),
      results_url: done ? `${deps.baseUrl()}/v1/messages/batches/${batch.id}/results` : null,
    };
  }

  function create(raw: string, version: string, respond: BatchResponder) {
    if (Buffer.byteLength(raw) > MAX_BYTES) return respond.error(413, 'request_too_large', 'Request exceeds the maximum size of 256 MB for a Message Batch');
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return respond.error(400, 'invalid_request_error', 'The request body is not valid JSON');
    }
    const problem = creationProblem(body);
    if (problem) return respond.error(400, 'invalid_request_error', problem);
    const createdAtMs = now();
    const batch: ClaudeSandboxBatch = {
      id: `msgbatch_sbx_${createHash('sha256').update(`${list.length}:${raw}`).digest('hex').slice(0, 24)}`,
      requests: (body as { requests: ClaudeSandboxBatch['requests'] }).requests,
      createdAtMs,
      endsAtMs: createdAtMs + (options.batchProcessingMs ?? 0),
      cancelInitiatedAtMs: null,
      version,
    };
    list.push(batch);
    byId.set(batch.id, batch);
    // Taken before any time passes: a new batch is always in progress, even with batchProcessingMs 0.
    return respond.json(200, batchObject(batch, false));
  }

  function results(batch: ClaudeSandboxBatch, respond: BatchResponder) {
    if (!ended(batch)) {
      const status = batchObject(batch).processing_status;
      return respond.error(400, 'invalid_request_error', `Message Batch ${batch.id} has not ended (processing_status ${status}); its results are available once processing_status is "ended"`);
    }
    const all = resultsOf(batch);
    const lines = shuffledIndexes(batch.id, all.length)
      .filter((i) => !omittedIds.has(batch.requests[i]!.custom_id))
      .map((i) => JSON.stringify({ custom_id: batch.requests[i]!.custom_id, result: all[i] }));
    return respond.jsonl(lines.map((line) => `${line}\n`).join(''));
  }

  function cancel(batch: ClaudeSandboxBatch, respond: BatchResponder) {
    if (ended(batch)) return respond.error(400, 'invalid_request_error', `Message Batch ${batch.id} has already ended and cannot be canceled`);
    batch.cancelInitiatedAtMs ??= now();
    return respond.json(200, batchObject(batch));
  }

  return {
    list: list as readonly ClaudeSandboxBatch[],
    routes: (path: string) => ROUTE.test(path),
    handle(request: { method: string; path: string; raw: string; version: string }, respond: BatchResponder): void {
      const [, id, action] = ROUTE.exec(request.path) ?? [];
      const want = `${request.method} ${action ?? (id ? 'batch' : 'batches')}`;
      if (!['POST batches', 'GET batch', 'GET results', 'POST cancel'].includes(want)) {
        return respond.error(404, 'not_found_error', `Not found: ${request.method} ${request.path}${want === 'GET batches' ? ' (the sandbox does not list batches)' : ''}`);
      }
      if (respond.injected()) return;
      if (want === 'POST batches') return create(request.raw, request.version, respond);
      const batch = byId.get(id!);
      if (!batch) return respond.error(404, 'not_found_error', `Message Batch "${id}" not found`);
      if (want === 'GET batch') return respond.json(200, batchObject(batch));
      if (want === 'GET results') return results(batch, respond);
      return cancel(batch, respond);
    },
  };
}

/** The first thing wrong with a batch creation body that fails it as a whole, or null. */
function creationProblem(body: unknown): string | null {
  if (!isObject(body)) return 'The request body must be a JSON object';
  const { requests } = body;
  if (requests === undefined) return 'requests: Field required';
  if (!Array.isArray(requests)) return 'requests: Input should be a valid list';
  if (requests.length === 0) return 'requests: List should have at least 1 item after validation, not 0';
  if (requests.length > MAX_REQUESTS) return `requests: List should have at most ${MAX_REQUESTS} items after validation, not ${requests.length}`;
  const firstUse = new Map<string, number>();
  for (const [i, r] of requests.entries()) {
    if (!isObject(r)) return `requests.${i}: Input should be a valid dictionary`;
    if (typeof r.custom_id !== 'string' || !CUSTOM_ID.test(r.custom_id)) {
      return `requests.${i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$', got ${JSON.stringify(r.custom_id ?? null)}`;
    }
    const earlier = firstUse.get(r.custom_id);
    if (earlier !== undefined) return `requests.${i}.custom_id: "${r.custom_id}" is also the custom_id of requests.${earlier}; each custom_id must be unique within a batch`;
    firstUse.set(r.custom_id, i);
    if (!isObject(r.params)) return `requests.${i}.params: Field required (an object of Messages API parameters)`;
  }
  return null;
}

function errored(batchId: string, customId: string, type: string, message: string): Result {
  const requestId = `req_sbx_${createHash('sha256').update(`${batchId}:${customId}`).digest('hex').slice(0, 24)}`;
  return { type: 'errored', error: { type: 'error', error: { type, message }, request_id: requestId } };
}

/** A stable number in [0, 1) for a key. */
function share(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) / 2 ** 32;
}

/** 0..n-1 shuffled by the batch id (Fisher-Yates); never in submission order when n >= 2, so callers must match by custom_id. */
function shuffledIndexes(seed: string, n: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(share(`${seed}:${i}`) * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order.every((v, i) => v === i) ? order.reverse() : order;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
