/**
 * Claude connector: a structured analysis of SEMrush/SpyFu data through the Messages API,
 * by forcing one tool whose input_schema is the analysis schema.
 *
 * What the API documents, and what this client relies on (sources by page title):
 *
 * - "Messages" reference, "How to implement tool use", "Tool choice": POST /v1/messages takes
 *   model, max_tokens, system, messages and tools [{ name, description, input_schema }];
 *   tool_choice { type: 'tool', name } forces that tool. The answer is { id, type: 'message',
 *   role: 'assistant', model, content: [{ type: 'tool_use', id, name, input } | { type:
 *   'text', text }], stop_reason ('tool_use', 'end_turn', 'max_tokens', 'refusal', ...), usage
 *   { input_tokens, output_tokens } }. Tool names match ^[a-zA-Z0-9_-]{1,64}$. A tool's result
 *   goes back in a user turn as { type: 'tool_result', tool_use_id, content, is_error }.
 * - "Versions", "Migrating to API version 2026-10-21": every request carries anthropic-version;
 *   an SDK major sends the version current at its release. The raw API takes the key in
 *   x-api-key (2023-06-01 and 2026-10-21 alike). @anthropic-ai/sdk 1.x, pinned here at 1.14.0,
 *   sends anthropic-version: 2026-10-21 and the key as Authorization: Bearer. 2026-10-21 answers
 *   400 to temperature, top_p or top_k, so none is sent.
 * - "Claude API errors": an error is { type: 'error', error: { type, message, details? },
 *   request_id }: 400 invalid_request_error, 401 authentication_error, 402 billing_error, 403
 *   permission_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error, 500
 *   api_error, 504 timeout_error, 529 overloaded_error. A spend limit the organization set
 *   itself answers 400 invalid_request_error.
 * - "Rate limits": a 429 says in retry-after how many seconds to wait. Reaching the usage
 *   tier's monthly spend cap also answers 429 rate_limit_error, but with
 *   error.details.error_code "enforced_spend_limit_reached", no retry-after, and a message
 *   "You have reached your API usage limits: ... You will regain access on <date> at 00:00
 *   UTC"; every retry fails until then. ("Anthropic 529 overloaded_error: what it means and how
 *   to handle it" tabulates 529 / 429 / spend cap the same way.)
 * - Issues "Credit balance is too low" and "You have reached your specified API usage limits"
 *   (anthropics/claude-code): an empty prepaid balance answers 400 invalid_request_error "Your
 *   credit balance is too low to access the Anthropic API. ..."; a user-set limit answers 400
 *   "You have reached your specified API usage limits. You will regain access on ...".
 * - The SDK (src/core/error.ts, src/client.ts of 1.14.0): a failed status is an APIError
 *   subclass (BadRequestError 400, AuthenticationError 401, PaymentRequiredError 402,
 *   PermissionDeniedError 403, RateLimitError 429, InternalServerError >= 500, OverloadedError
 *   529) with status, headers (a Headers), error (the JSON body), apiMessage, type and
 *   errorCode (error.details.error_code); a 429 with enforced_spend_limit_reached becomes
 *   EnforcedSpendLimitReachedError, a RateLimitError. No answer: APIConnectionError or
 *   APIConnectionTimeoutError; an abort: APIUserAbortError. A 200 body that is not JSON
 *   throws a SyntaxError. The SDK retries 408/409/429/5xx twice by default: maxRetries is 0
 *   here because the engine retries. baseURL and apiKey are always passed, so
 *   ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY are never read.
 */
import type { ContentBlock, ContentBlockParam, Message, MessageCreateParamsNonStreaming, MessageParam, Tool } from '@anthropic-ai/sdk/resources/messages';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { DURATION_PATTERN, NonRetriableError, parseDuration, RetryAfterError, retryAfterMs } from '../../engine/sdk.ts';

export type Sdk = typeof import('@anthropic-ai/sdk');
type AnthropicClient = InstanceType<Sdk['default']>;

export const CLAUDE_API_URL = 'https://api.anthropic.com';
const DEFAULT_TIMEOUT_MS = 120_000;
/** Wait after a 429 or 529 that names no retry-after. */
const DEFAULT_RETRY_AFTER_MS = 1000;
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** `connectors.claude` in the engine config; token prices come from the config's `prices`. */
export const ClaudeConfigSchema = Type.Object(
  {
    base_url: Type.String({ pattern: '^https?://', default: CLAUDE_API_URL, description: "Root of the Messages API; the sandbox's url in tests." }),
    api_key: Type.Optional(
      Type.String({ minLength: 1, description: 'The API key, through ${{ env.ANTHROPIC_API_KEY }}; never logged nor put in an error message. Unset, the sandbox answers.' }),
    ),
    model: Type.String({ minLength: 1, default: 'claude-sonnet-5', description: 'The model that writes the analyses.' }),
    max_tokens: Type.Integer({ minimum: 1, default: 4096, description: 'Most output tokens one answer may use; a step may lower or raise it per call.' }),
    timeout: Type.String({ pattern: DURATION_PATTERN, default: '120s', description: 'How long one request may take, like "120s"; past it the attempt fails as retriable.' }),
  },
  { additionalProperties: false },
);
export type ClaudeSettings = Static<typeof ClaudeConfigSchema>;

/** What the analyst and the batch client are made from: the settings with the key set, and the token prices. */
export interface ClaudeConfig {
  /** Default CLAUDE_API_URL. */
  base_url?: string;
  api_key: string;
  model: string;
  max_tokens: number;
  /** Default "120s". */
  timeout?: string;
  /** USD per input token, to price each analysis (config prices.claude_input_token). */
  price_per_input_token?: number;
  /** USD per output token (config prices.claude_output_token). */
  price_per_output_token?: number;
}

export interface AnalyseRequest<S extends object = object> {
  /** Who Claude is for this analysis: role, rules, tone. */
  system?: string;
  /** The data and the question: the user turn. */
  prompt: string;
  /** JSON Schema of the analysis; its root is an object. A TypeBox schema types the result. */
  schema: S;
  /** Name of the forced tool, ^[a-zA-Z0-9_-]{1,64}$, e.g. record_competitor_analysis. */
  toolName: string;
  /** What the tool records, shown to the model. */
  toolDescription?: string;
  /** max_tokens for this call instead of the configured one. */
  maxTokens?: number;
  signal?: AbortSignal;
}

export interface ClaudeUsage {
  input_tokens: number;
  output_tokens: number;
}

export interface Analysis<T> {
  analysis: T;
  /** Summed over every request of the analysis, the repair included: all of it is billed. */
  usage: ClaudeUsage;
  /** Requests made: 1, or 2 when the first answer needed a repair. */
  attempts: number;
  /** The model that answered, as the API names it. */
  model: string;
  /** `usage` at the configured prices; absent when no price is configured. */
  costUsd?: number;
}

/** The analysis type a schema describes: Static<S> for TypeBox, unknown for a plain JSON Schema. */
export type AnalysisOf<S> = S extends TSchema ? Static<S> : unknown;

export interface ClaudeAnalyst {
  analyse<S extends object>(request: AnalyseRequest<S>): Promise<Analysis<AnalysisOf<S>>>;
}

/** The answer still missed the schema after its one repair. */
export class InvalidAnalysisError extends NonRetriableError {
  constructor(
    message: string,
    readonly errors: ErrorObject[],
  ) {
    super(message);
  }
}

export interface ClaudeAnalystOptions {
  /** The clock, for retry-after given as an HTTP date (default Date.now). */
  now?: () => number;
}

export function createClaudeAnalyst(config: ClaudeConfig, options: ClaudeAnalystOptions = {}): ClaudeAnalyst {
  const connection = claudeConnection(config, options);
  const { where } = connection;

  async function send(params: MessageCreateParamsNonStreaming, signal: AbortSignal | undefined): Promise<Message> {
    const { sdk, client } = await connection.connect();
    let reply: unknown;
    try {
      reply = await client.messages.create(params, { signal });
    } catch (err) {
      throw connection.failure(err, sdk, signal, 'POST /v1/messages');
    }
    if (!isMessage(reply)) throw new NonRetriableError(`${where}: the answer to POST /v1/messages is not a message (no content array)`);
    return reply;
  }

  return {
    async analyse<S extends object>(request: AnalyseRequest<S>): Promise<Analysis<AnalysisOf<S>>> {
      const { params: first, validate, maxTokens } = buildParams(config, request);
      const { toolName } = request;
      const messages: MessageParam[] = [...first.messages];
      const usage: ClaudeUsage = { input_tokens: 0, output_tokens: 0 };

      for (let attempt = 1; ; attempt++) {
        const reply = await send({ ...first, messages }, request.signal);
        usage.input_tokens += reply.usage.input_tokens;
        usage.output_tokens += reply.usage.output_tokens;
        const use = toolUseIn(reply, toolName, maxTokens, where);
        if (validate(use.input)) {
          return { analysis: use.input as AnalysisOf<S>, usage, attempts: attempt, model: reply.model, ...priced(usage, config) };
        }
        const errors = [...(validate.errors ?? [])];
        const problems = errors.map(describeError);
        if (attempt >= 2) {
          throw new InvalidAnalysisError(`${where}: the input of tool "${toolName}" still misses its schema after one repair: ${problems.join('; ')}`, errors);
        }
        // One repair: show Claude its own call and what was wrong with it, in the tool_result it expects.
        messages.push(
          { role: 'assistant', content: reply.content.flatMap(asParam) },
          {
            role: 'user',
            content: [
              {
                type: 'tool_result',
                tool_use_id: use.id,
                is_error: true,
                content: `The input does not match the tool's input_schema:\n${problems.map((p) => `- ${p}`).join('\n')}\nCall ${toolName} again with the complete, corrected input.`,
              },
            ],
          },
        );
      }
    },
  };
}

/** The first request of an analysis, its validator and its max_tokens; Message Batches send the very same params. */
export interface AnalysisParams {
  params: MessageCreateParamsNonStreaming & { messages: MessageParam[] };
  /** Checks the forced tool's input against the request's schema (compiled once per schema object). */
  validate: ValidateFunction;
  maxTokens: number;
}

/**
 * The Messages API request that analyse() sends first: the prompt as the user turn and the
 * schema as the input_schema of one forced tool. Throws NonRetriableError for a tool name or
 * schema the API would refuse.
 */
export function buildParams<S extends object>(config: ClaudeConfig, request: AnalyseRequest<S>, where = whereOf(config)): AnalysisParams {
  const { toolName, schema } = request;
  if (!TOOL_NAME.test(toolName)) throw new NonRetriableError(`${where}: toolName "${toolName}" must match ^[a-zA-Z0-9_-]{1,64}$ (write e.g. record_competitor_analysis)`);
  if ((schema as { type?: unknown }).type !== 'object') {
    throw new NonRetriableError(`${where}: the schema of tool "${toolName}" must have type "object" at its root, as the API requires of input_schema`);
  }
  const validate = validatorFor(schema, toolName, where);
  const tool: Tool = {
    name: toolName,
    description: request.toolDescription ?? `Records the ${toolName.replace(/_/g, ' ')}: call it once with the complete analysis.`,
    input_schema: schema as unknown as Tool.InputSchema,
  };
  const maxTokens = request.maxTokens ?? config.max_tokens;
  return {
    params: {
      model: config.model,
      max_tokens: maxTokens,
      ...(request.system ? { system: request.system } : {}),
      messages: [{ role: 'user', content: request.prompt }],
      tools: [tool],
      tool_choice: { type: 'tool', name: toolName, disable_parallel_tool_use: true },
    },
    validate,
    maxTokens,
  };
}

/** How errors name the connector: `claude (claude-sonnet-5)`. */
export function whereOf(config: ClaudeConfig): string {
  return `claude (${config.model})`;
}

/** One SDK client, made on first use, and the mapping of its errors onto the engine's; shared by analyse() and the batch client. */
export interface ClaudeConnection {
  where: string;
  connect(): Promise<{ sdk: Sdk; client: AnthropicClient }>;
  /** The SDK's error as one the engine acts on: retry, wait, or give up. `endpoint` names the call, e.g. "POST /v1/messages". */
  failure(err: unknown, sdk: Sdk, signal: AbortSignal | undefined, endpoint: string): Error;
}

export function claudeConnection(config: ClaudeConfig, options: ClaudeAnalystOptions = {}): ClaudeConnection {
  const baseURL = config.base_url ?? CLAUDE_API_URL;
  const timeout = config.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseDuration(config.timeout);
  if (timeout === undefined) throw new NonRetriableError(`connectors.claude.timeout: expected a duration like "120s", got "${config.timeout}"`);
  const now = options.now ?? Date.now;
  const where = whereOf(config);
  const redact = (text: string) => text.split(config.api_key).join('[api key]');

  let connection: Promise<{ sdk: Sdk; client: AnthropicClient }> | undefined;
  const connect = () =>
    (connection ??= import('@anthropic-ai/sdk').then(
      (sdk) => ({ sdk, client: new sdk.default({ apiKey: config.api_key, baseURL, maxRetries: 0, timeout }) }),
      (err: unknown) => {
        connection = undefined;
        throw err;
      },
    ));

  function failure(err: unknown, sdk: Sdk, signal: AbortSignal | undefined, endpoint: string): Error {
    // The caller's own reason, as every connector gives it: the engine knows its stops by it.
    if (signal?.aborted && signal.reason instanceof Error) return signal.reason;
    if (signal?.aborted || err instanceof sdk.APIUserAbortError) return err instanceof Error ? err : new Error(String(err));
    if (err instanceof sdk.APIConnectionTimeoutError) {
      return new Error(`${where}: no answer within ${timeout}ms; the next attempt gets a fresh timer (raise connectors.claude.timeout for long analyses)`, { cause: err });
    }
    if (err instanceof sdk.APIConnectionError) {
      const reason = err.cause instanceof Error ? err.cause.message : err.message;
      return new Error(redact(`${where}: could not reach ${baseURL}: ${reason}`), { cause: err });
    }
    if (err instanceof sdk.APIError && typeof err.status === 'number') {
      const status = err.status;
      const detail = redact(`${status} ${err.type ?? 'error'}${err.errorCode ? ` ${err.errorCode}` : ''}: ${err.apiMessage ?? 'no message'}`);
      if (isSpendLimit(err)) {
        return new NonRetriableError(
          `${where}: the account's spend limit is reached (${detail}); no retry succeeds until access resumes or the limit is raised in the Claude Console`,
          { cause: err },
        );
      }
      if (status === 429 || status === 529) {
        const afterMs = waitOf(err.headers, now) ?? DEFAULT_RETRY_AFTER_MS;
        return new RetryAfterError(`${where}: ${status === 429 ? 'rate limited' : 'overloaded'} (${detail}); retry after ${afterMs}ms`, afterMs, { cause: err });
      }
      if (status === 408 || status === 409 || status >= 500) return new Error(`${where}: the API failed (${detail}); the next attempt may succeed`, { cause: err });
      const fix =
        status === 401 ? 'check connectors.claude.api_key'
        : status === 403 ? "check the key's workspace and its access to the model"
        : status === 404 ? 'check connectors.claude.model and base_url'
        : status === 413 ? 'send less data in the prompt'
        : 'the same request fails again; fix the request';
      return new NonRetriableError(`${where}: the API refused the request (${detail}): ${fix}`, { cause: err });
    }
    // A garbled answer is never taken for data, and not retried: like every connector (test/connectors.test.ts).
    if (err instanceof SyntaxError) return new NonRetriableError(`${where}: the answer to ${endpoint} is not JSON (${err.message})`, { cause: err });
    if (err instanceof sdk.AnthropicError) return new NonRetriableError(redact(`${where}: ${err.message}`), { cause: err });
    return err instanceof Error ? err : new Error(String(err));
  }

  return { where, connect, failure };
}

/** The forced tool's call in an answer; an answer without one cannot be repaired. */
export function toolUseIn(reply: Message, toolName: string, maxTokens: number, where: string): { id: string; input: unknown } {
  if (reply.stop_reason === 'max_tokens') {
    throw new NonRetriableError(`${where}: the analysis was cut off at max_tokens ${maxTokens}; raise max_tokens (or connectors.claude.max_tokens) or ask for a shorter analysis`);
  }
  if (reply.stop_reason === 'refusal') throw new NonRetriableError(`${where}: Claude declined to write the analysis (stop_reason refusal)`);
  for (const block of reply.content) {
    if (block.type === 'tool_use' && block.name === toolName) return { id: block.id, input: block.input };
  }
  throw new NonRetriableError(`${where}: the answer has no call of tool "${toolName}" (stop_reason ${reply.stop_reason ?? 'none'}) although tool_choice forced it`);
}

function asParam(block: ContentBlock): ContentBlockParam[] {
  if (block.type === 'tool_use') return [{ type: 'tool_use', id: block.id, name: block.name, input: block.input }];
  if (block.type === 'text') return [{ type: 'text', text: block.text }];
  return [];
}

function isMessage(reply: unknown): reply is Message {
  const r = reply as Partial<Message> | null;
  return typeof r === 'object' && r !== null && Array.isArray(r.content) && typeof r.usage === 'object' && r.usage !== null;
}

const SPEND_LIMIT_CODES = new Set(['enforced_spend_limit_reached', 'contract_spend_limit_reached', 'linked_organization_spend_limit_reached']);
const SPEND_LIMIT_TEXT = /spend(ing)? (limit|cap)|usage limits?\b|credit balance/i;

function isSpendLimit(err: { status: number; errorCode: string | null; apiMessage: string | null }): boolean {
  if (err.errorCode && SPEND_LIMIT_CODES.has(err.errorCode)) return true;
  return [400, 402, 429].includes(err.status) && SPEND_LIMIT_TEXT.test(err.apiMessage ?? '');
}

/** Anthropic's retry-after-ms, else the standard Retry-After; undefined when absent. */
function waitOf(headers: Headers | undefined, now: () => number): number | undefined {
  const ms = Number.parseFloat(headers?.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return Math.round(ms);
  return retryAfterMs(headers?.get('retry-after'), now());
}

/** `usage` at the configured prices times `factor` (0.5 for Message Batches); empty when no price is configured. */
export function priced(usage: ClaudeUsage, config: ClaudeConfig, factor = 1): { costUsd?: number } {
  if (config.price_per_input_token === undefined && config.price_per_output_token === undefined) return {};
  return { costUsd: factor * (usage.input_tokens * (config.price_per_input_token ?? 0) + usage.output_tokens * (config.price_per_output_token ?? 0)) };
}

export function describeError(e: ErrorObject): string {
  const at = e.instancePath || '/';
  const params = e.params as { allowedValues?: unknown[]; additionalProperty?: string };
  if (params.allowedValues) return `${at} must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  if (params.additionalProperty) return `${at} has property "${params.additionalProperty}", which the schema does not allow`;
  return `${at} ${e.message ?? 'is invalid'}`;
}

const addFormats = addFormatsModule as unknown as { default: (ajv: Ajv) => Ajv };
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats.default(ajv);
const validators = new WeakMap<object, ValidateFunction>();

/** Compiled once per schema object. */
export function validatorFor(schema: object, toolName: string, where: string): ValidateFunction {
  let validate = validators.get(schema);
  if (!validate) {
    try {
      validate = ajv.compile(schema);
    } catch (err) {
      throw new NonRetriableError(`${where}: the schema of tool "${toolName}" is not a valid JSON Schema: ${(err as Error).message}`);
    }
    validators.set(schema, validate);
  }
  return validate;
}
