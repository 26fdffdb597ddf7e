/**
 * Claude Message Batches: the same analyses as analyse(), sent many at a time and answered
 * within 24 hours (most within one) at half the price.
 *
 * What the API documents (sources by page title):
 * - "Create a Message Batch": POST /v1/messages/batches { requests: [{ custom_id, params }] },
 *   1 to 100,000 requests (and at most 256 MB, "Batch processing"); custom_id matches
 *   ^[a-zA-Z0-9_-]{1,64}$ and is unique within the batch; params is a Messages API request.
 *   The answer is a message_batch { id: "msgbatch_...", type, processing_status (in_progress,
 *   canceling, ended), request_counts { processing, succeeded, errored, canceled, expired },
 *   ended_at, created_at, expires_at (created + 24 h), cancel_initiated_at, archived_at,
 *   results_url (null until ended) }.
 * - "Retrieve a Message Batch": GET /v1/messages/batches/{id}, idempotent, made for polling.
 * - "Retrieve Message Batch results": GET results_url answers 200 application/x-jsonl, one
 *   { custom_id, result } a line, result being { type: 'succeeded', message } | { type:
 *   'errored', error: { type: 'error', error: { type, message }, request_id } } | { type:
 *   'canceled' } | { type: 'expired' }, in no particular order: match by custom_id.
 * - "Batch processing": params are validated asynchronously, so a malformed request comes back
 *   errored (invalid_request_error) after the batch ends instead of failing the creation;
 *   errored, canceled and expired requests are not billed; all usage costs 50% of the standard
 *   prices; results stay downloadable for 29 days.
 * - @anthropic-ai/sdk 1.14 (src/resources/messages/batches.ts): client.messages.batches.create,
 *   retrieve, cancel, and results(id), which retrieves the batch, throws AnthropicError while
 *   results_url is null, then GETs results_url with the client's key and returns a JSONLDecoder:
 *   an async iterable of the parsed lines.
 */
import type { MessageBatch, MessageBatchIndividualResponse } from '@anthropic-ai/sdk/resources/messages';
import { NonRetriableError, RetryAfterError, systemClock } from '../../engine/sdk.ts';
import {
  type AnalyseRequest,
  type AnalysisOf,
  buildParams,
  type ClaudeConfig,
  type ClaudeConnection,
  claudeConnection,
  type ClaudeUsage,
  describeError,
  priced,
  type Sdk,
  toolUseIn,
  validatorFor,
} from './client.ts';

/** Batch usage is billed at this share of the standard prices. */
export const BATCH_PRICE_FACTOR = 0.5;
/** Wait between two polls of a batch, and the retry-after of BatchNotEndedError (the guide polls once a minute). */
export const DEFAULT_POLL_MS = 60_000;
const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX_REQUESTS = 100_000;
type Connected = Awaited<ReturnType<ClaudeConnection['connect']>>;

export interface BatchItem<S extends object = object> {
  /** Matches the result to the item: ^[a-zA-Z0-9_-]{1,64}$, unique in the batch (e.g. the report id). */
  customId: string;
  /** Built into params exactly as analyse() builds its first request; its `signal` is not used (pass one to submit). */
  request: AnalyseRequest<S>;
}

/** What a result is checked against: the item's schema and tool, as submitted. */
export type BatchExpectation<S extends object = object> = Pick<AnalyseRequest<S>, 'schema' | 'toolName' | 'maxTokens'>;

export type BatchOutcome<T> =
  | { customId: string; status: 'succeeded'; analysis: T; usage: ClaudeUsage; model: string; costUsd?: number }
  | {
      customId: string;
      /**
       * invalid: Claude answered but the tool input misses the schema; analyse() the item alone,
       * which repairs once. missing: the results file has no line for a request that was expected.
       */
      status: 'errored' | 'expired' | 'canceled' | 'invalid' | 'missing';
      error: string;
      /** The API's error type of an errored request: invalid_request_error must be fixed, others may be sent again. */
      errorType?: string;
      /** Billed usage: only an invalid answer has some. */
      usage?: ClaudeUsage;
      costUsd?: number;
    };

export interface BatchStatus {
  batchId: string;
  processing: 'in_progress' | 'canceling' | 'ended';
  /** Every request is `processing` until the whole batch ends. */
  counts: { processing: number; succeeded: number; errored: number; canceled: number; expired: number };
  createdAt: string;
  expiresAt: string;
  endedAt?: string;
}

interface CallOptions {
  signal?: AbortSignal;
}

export interface ClaudeBatches {
  /** Creates the batch; NonRetriableError names the item whose custom_id, tool or schema the API would refuse. */
  submit<S extends object>(items: BatchItem<S>[], options?: CallOptions): Promise<BatchStatus>;
  status(batchId: string, options?: CallOptions): Promise<BatchStatus>;
  /** Polls every `intervalMs` (default 60 s) on the injected clock until the batch has ended. */
  pollUntilEnded(batchId: string, options?: CallOptions & { intervalMs?: number; onStatus?: (status: BatchStatus) => void }): Promise<BatchStatus>;
  /**
   * The outcome of every request, in the API's order (not the submission order). Rejects with
   * BatchNotEndedError before the batch has ended; a result for a custom_id `expect` does not
   * know fails the iteration with NonRetriableError (results of another batch). When `expect`
   * maps each submitted custom_id, every one of them ends with an outcome: one the results
   * file leaves out comes last, as `missing`.
   */
  results<S extends object>(
    batchId: string,
    expect: BatchExpectation<S> | ReadonlyMap<string, BatchExpectation<S>>,
    options?: CallOptions,
  ): Promise<AsyncIterable<BatchOutcome<AnalysisOf<S>>>>;
  cancel(batchId: string, options?: CallOptions): Promise<BatchStatus>;
}

/** The results were asked for before the batch ended: retriable, after a poll interval. */
export class BatchNotEndedError extends RetryAfterError {
  constructor(
    message: string,
    readonly status: BatchStatus,
  ) {
    super(message, DEFAULT_POLL_MS);
  }
}

export interface ClaudeBatchesOptions {
  /** The clock, for retry-after given as an HTTP date (default Date.now). */
  now?: () => number;
  /** Waits between polls (default a real timer); rejects when the signal aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export function createClaudeBatches(config: ClaudeConfig, options: ClaudeBatchesOptions = {}): ClaudeBatches {
  const connection = claudeConnection(config, options);
  const { where } = connection;
  const sleep = options.sleep ?? systemClock.sleep;

  /** Runs one SDK call, its errors mapped as analyse() maps them; a 404 names the batch. */
  async function call<T>(endpoint: string, signal: AbortSignal | undefined, batchId: string | null, run: (connected: Connected) => Promise<T>): Promise<T> {
    const connected = await connection.connect();
    try {
      return await run(connected);
    } catch (err) {
      throw batchFailure(err, connected.sdk, signal, endpoint, batchId);
    }
  }

  function batchFailure(err: unknown, sdk: Sdk, signal: AbortSignal | undefined, endpoint: string, batchId: string | null): Error {
    if (batchId !== null && err instanceof sdk.NotFoundError) {
      return new NonRetriableError(
        `${where}: no message batch "${batchId}" (404 ${err.type ?? 'not_found_error'}: ${err.apiMessage ?? 'no message'}): use the id submit() returned, with a key of the workspace that created it`,
        { cause: err },
      );
    }
    return connection.failure(err, sdk, signal, endpoint);
  }

  function statusOf(batch: MessageBatch, endpoint: string): BatchStatus {
    if (typeof batch?.id !== 'string' || typeof batch.processing_status !== 'string' || typeof batch.request_counts !== 'object') {
      throw new NonRetriableError(`${where}: the answer to ${endpoint} is not a message batch`);
    }
    return {
      batchId: batch.id,
      processing: batch.processing_status,
      counts: { ...batch.request_counts },
      createdAt: batch.created_at,
      expiresAt: batch.expires_at,
      ...(batch.ended_at ? { endedAt: batch.ended_at } : {}),
    };
  }

  const checkId = (batchId: string) => {
    if (!batchId) throw new NonRetriableError(`${where}: a message batch id is required (the batchId submit() returned)`);
  };

  const batches: ClaudeBatches = {
    async submit(items, { signal } = {}) {
      if (items.length === 0) throw new NonRetriableError(`${where}: a message batch needs at least one item`);
      if (items.length > MAX_REQUESTS) throw new NonRetriableError(`${where}: a message batch holds at most ${MAX_REQUESTS} requests, got ${items.length}: submit several batches`);
      const firstUse = new Map<string, number>();
      const requests = items.map(({ customId, request }, i) => {
        if (!CUSTOM_ID.test(customId)) {
          const fixed = customId.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64) || `item-${i}`;
          throw new NonRetriableError(`${where}: batch item ${i}: custom_id "${customId}" must match ^[a-zA-Z0-9_-]{1,64}$ (letters, digits, _ and -; e.g. "${fixed}")`);
        }
        const earlier = firstUse.get(customId);
        if (earlier !== undefined) throw new NonRetriableError(`${where}: batch items ${earlier} and ${i} share custom_id "${customId}"; each custom_id must be unique within a batch`);
        firstUse.set(customId, i);
        return { custom_id: customId, params: buildParams(config, request, `${where}, batch item "${customId}"`).params };
      });
      const endpoint = 'POST /v1/messages/batches';
      const batch = await call(endpoint, signal, null, ({ client }) => client.messages.batches.create({ requests }, { signal }));
      return statusOf(batch, endpoint);
    },

    async status(batchId, { signal } = {}) {
      checkId(batchId);
      const endpoint = `GET /v1/messages/batches/${batchId}`;
      return statusOf(await call(endpoint, signal, batchId, ({ client }) => client.messages.batches.retrieve(batchId, {}, { signal })), endpoint);
    },

    async pollUntilEnded(batchId, { signal, intervalMs = DEFAULT_POLL_MS, onStatus } = {}) {
      for (;;) {
        const status = await batches.status(batchId, { signal });
        onStatus?.(status);
        if (status.processing === 'ended') return status;
        await sleep(intervalMs, signal);
      }
    },

    async results<S extends object>(batchId: string, expect: BatchExpectation<S> | ReadonlyMap<string, BatchExpectation<S>>, { signal }: CallOptions = {}) {
      const status = await batches.status(batchId, { signal });
      if (status.processing !== 'ended') {
        throw new BatchNotEndedError(
          `${where}: message batch ${batchId} has not ended (processing_status ${status.processing}, ${status.counts.processing} of its requests processing); its results exist once it has: wait with pollUntilEnded(), or retry after ${DEFAULT_POLL_MS}ms`,
          status,
        );
      }
      const endpoint = `GET /v1/messages/batches/${batchId}/results`;
      const { sdk } = await connection.connect();
      const decoder = await call(endpoint, signal, batchId, ({ client }) => client.messages.batches.results(batchId, {}, { signal }));
      const expectationOf = (customId: string): BatchExpectation<S> => {
        const found = expect instanceof Map ? (expect as ReadonlyMap<string, BatchExpectation<S>>).get(customId) : (expect as BatchExpectation<S>);
        if (!found) throw new NonRetriableError(`${where}: message batch ${batchId} has a result for custom_id "${customId}", which is not among the ${(expect as ReadonlyMap<string, unknown>).size} expected; are these the items of another batch?`);
        return found;
      };
      const outcomeOf = (line: MessageBatchIndividualResponse) => outcome<S>(line, expectationOf(line.custom_id));
      const unseen = new Set(expect instanceof Map ? (expect as ReadonlyMap<string, unknown>).keys() : []);

      return (async function* () {
        const lines = decoder[Symbol.asyncIterator]();
        for (;;) {
          let next: IteratorResult<MessageBatchIndividualResponse>;
          try {
            next = await lines.next();
          } catch (err) {
            throw batchFailure(err, sdk, signal, endpoint, batchId);
          }
          if (next.done) break;
          unseen.delete(next.value.custom_id);
          yield outcomeOf(next.value);
        }
        for (const customId of unseen) yield missing<AnalysisOf<S>>(customId, batchId);
      })();
    },

    async cancel(batchId, { signal } = {}) {
      checkId(batchId);
      const endpoint = `POST /v1/messages/batches/${batchId}/cancel`;
      return statusOf(await call(endpoint, signal, batchId, ({ client }) => client.messages.batches.cancel(batchId, {}, { signal })), endpoint);
    },
  };

  function missing<T>(customId: string, batchId: string): BatchOutcome<T> {
    return { customId, status: 'missing', error: `${where}: batch request "${customId}" has no line in the results of message batch ${batchId}; submit it again` };
  }

  /** One result line as the caller acts on it; a succeeded answer is validated as analyse() validates it. */
  function outcome<S extends object>({ custom_id: customId, result }: MessageBatchIndividualResponse, expected: BatchExpectation<S>): BatchOutcome<AnalysisOf<S>> {
    const about = `${where}: batch request "${customId}"`;
    switch (result.type) {
      case 'succeeded': {
        const { message } = result;
        const usage: ClaudeUsage = { input_tokens: message.usage.input_tokens, output_tokens: message.usage.output_tokens };
        const cost = priced(usage, config, BATCH_PRICE_FACTOR);
        const { toolName, schema } = expected;
        let input: unknown;
        try {
          input = toolUseIn(message, toolName, expected.maxTokens ?? config.max_tokens, `${where}, batch request "${customId}"`).input;
        } catch (err) {
          return { customId, status: 'invalid', error: (err as Error).message, usage, ...cost };
        }
        const validate = validatorFor(schema, toolName, where);
        if (validate(input)) return { customId, status: 'succeeded', analysis: input as AnalysisOf<S>, usage, model: message.model, ...cost };
        const problems = (validate.errors ?? []).map(describeError).join('; ');
        return { customId, status: 'invalid', error: `${about}: the input of tool "${toolName}" misses its schema: ${problems}; analyse() it alone, which repairs once`, usage, ...cost };
      }
      case 'errored': {
        const { type = 'error', message = 'no message' } = result.error?.error ?? {};
        const next = type === 'invalid_request_error' ? 'the API refuses the request itself: fix it before sending it again' : 'sending it again may succeed';
        return { customId, status: 'errored', errorType: type, error: `${about} errored (${type}: ${message}); ${next}` };
      }
      case 'canceled':
        return { customId, status: 'canceled', error: `${about} was canceled with its batch before it was processed; submit it again` };
      case 'expired':
        return { customId, status: 'expired', error: `${about} expired: the batch reached its 24 hours before processing it; submit it again` };
    }
    // A result type newer than this client: nothing to use, and nothing billed that we know of.
    return { customId, status: 'errored', errorType: 'unknown_result', error: `${about} has a result of unknown type ${JSON.stringify((result as { type?: unknown }).type)}` };
  }

  return batches;
}
