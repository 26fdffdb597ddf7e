import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Fault, FaultControl } from '../sandbox/faults.ts';
import { type HttpAnswer, type HttpFaultOptions, httpFaults } from '../sandbox/http-faults.ts';
import { searchDataIn, writeAnalysis } from './sandbox-analyst.ts';
import { type ClaudeSandboxBatch, type ClaudeSandboxBatchOptions, batchEndpoints } from './sandbox-batches.ts';

/**
 * A stand-in for the Claude Messages API on loopback, speaking its wire protocol, so the
 * analyst, the steps and whole pipelines run without a key or a bill.
 *
 *   POST /v1/messages   x-api-key: <key> (or Authorization: Bearer <key>), anthropic-version
 *     200 { id, type: 'message', role: 'assistant', model, content, stop_reason, usage }
 *     4xx/5xx { type: 'error', error: { type, message, details? }, request_id }
 *   POST /v1/messages/batches, GET /v1/messages/batches/{id}, GET .../{id}/results (JSONL),
 *   POST .../{id}/cancel: the Message Batches API, in sandbox-batches.ts; a batch's results
 *     are the messages POST /v1/messages answers to the same params.
 *
 * A forced tool (tool_choice { type: 'tool', name }) is answered with a tool_use block whose
 * input is generated from the tool's input_schema, seeded by a hash of the messages: the same
 * conversation always gets the same analysis. Strings are built from the domains and words
 * of the prompt, so an answer reads like an analysis of what was asked about; a prompt that
 * carries a company's search data in a ```json block is answered from its numbers
 * (sandbox-analyst.ts). `faults`
 * (connectors/sandbox/faults.ts) inject latency, rate limits, overload (errorStatus 529),
 * silence and bodies that are not JSON, on /v1/messages and the batch endpoints alike,
 * once a request is authorised; shares are chosen by a hash of the request and how often
 * it was seen, so every run fails the same way and a retry can succeed. The options
 * below add what only Claude does: a spent budget, an answer that misses the schema.
 *
 * The generator covers what analysis schemas use: objects (required and optional
 * properties), strings (enum, const, minLength, maxLength, date/date-time/email/uri
 * formats), numbers and integers within their bounds, arrays within minItems/maxItems,
 * booleans, null, anyOf/oneOf (a branch picked by the hash). `pattern` and `$ref` are not honoured.
 */
export interface ClaudeSandboxOptions extends ClaudeSandboxBatchOptions {
  /** The API key requests must carry (default "sk-ant-sandbox"). */
  apiKey?: string;
  /** Latency, 429 rate_limit_error (with retry-after), 5xx (529 overloaded_error, else api_error), silence, a body that is not JSON. */
  faults?: HttpFaultOptions;
  /** The first answer of each conversation misses the schema; the repair (a tool_result with is_error) is answered validly. */
  invalidFirst?: boolean;
  /** Every answer misses the schema, repairs included. */
  alwaysInvalid?: boolean;
  /** Every POST (messages, batch creation) gets the 429 of a reached monthly spend cap (error_code enforced_spend_limit_reached, no retry-after). */
  spendLimitReached?: boolean;
}

/** What the sandbox saw of one request; the key itself is never kept. */
export interface ClaudeSandboxRequest {
  method: string;
  /** e.g. /v1/messages or /v1/messages/batches/msgbatch_sbx_.../results */
  path: string;
  model: string | null;
  max_tokens: number | null;
  /** The tool that tool_choice forced, if any. */
  tool: string | null;
  toolChoice: unknown;
  /** The forced tool's input_schema, as sent. */
  inputSchema: unknown;
  /** The last user turn carries a tool_result with is_error: a repair of invalid input. */
  repair: boolean;
  /** The text of that tool_result: what the client said was wrong. */
  repairText: string | null;
  /** Which header carried the key, and whether it was the right one. */
  auth: 'x-api-key' | 'bearer' | null;
  authorized: boolean;
  anthropicVersion: string | null;
  status: number;
  usage: { input_tokens: number; output_tokens: number } | null;
}

export interface ClaudeSandbox {
  url: string;
  readonly requests: ClaudeSandboxRequest[];
  /** The Message Batches created, oldest first. */
  readonly batches: readonly ClaudeSandboxBatch[];
  /** The faults it injects, changeable while it runs. */
  readonly faults: FaultControl<HttpFaultOptions>;
  close(): Promise<void>;
}

export const SANDBOX_API_KEY = 'sk-ant-sandbox';
/** The versions the sandbox answers; the real API names the current one in "Versions". */
export const ANTHROPIC_VERSIONS = ['2023-06-01', '2026-10-21'];
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Schema = Record<string, unknown>;
type Block = Record<string, unknown>;

export async function startClaudeSandbox(options: ClaudeSandboxOptions = {}): Promise<ClaudeSandbox> {
  const apiKey = options.apiKey ?? SANDBOX_API_KEY;
  const requests: ClaudeSandboxRequest[] = [];
  const faults = httpFaults(options.faults, {
    throttled: (seconds) =>
      apiError(429, 'rate_limit_error', 'This request would exceed the rate limit for your organization of 50 requests per minute.', { 'retry-after': String(seconds) }),
    failed: (status) => (status === 529 ? apiError(529, 'overloaded_error', 'Overloaded') : apiError(status, 'api_error', 'Internal server error')),
    garble: () => '{"id": "msg_sbx", "type": "message", "content": [',
  });
  let url = '';
  const batches = batchEndpoints(options, { answer: (params, version) => requestProblem(params, version) ?? answerMessage(params, options), baseUrl: () => url });

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const record = blankRecord(req, apiKey);
      requests.push(record);
      /** The fault this request drew, once it is authorised; a malformed one garbles the answer. */
      let fault: Fault | undefined;
      const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        record.status = status;
        const text = typeof body === 'string' ? body : JSON.stringify(body);
        faults.send(res, { status, body: text, headers: { 'content-type': 'application/json', 'request-id': requestId(raw, requests.length), ...headers } }, fault);
      };
      const fail = (status: number, type: string, message: string, extra: { details?: object; headers?: Record<string, string> } = {}) =>
        reply(
          status,
          { type: 'error', error: { type, message, ...(extra.details ? { details: extra.details } : {}) }, request_id: requestId(raw, requests.length) },
          extra.headers,
        );

      const path = new URL(req.url ?? '/', 'http://sandbox').pathname;
      record.path = path;
      const isMessages = path === '/v1/messages';
      if ((req.method !== 'POST' || !isMessages) && !batches.routes(path)) return fail(404, 'not_found_error', `Not found: ${req.method} ${path}`);
      if (!record.auth) return fail(401, 'authentication_error', 'x-api-key header is required');
      if (!record.authorized) return fail(401, 'authentication_error', 'invalid x-api-key');
      if (!record.anthropicVersion) return fail(400, 'invalid_request_error', 'anthropic-version: header is required');
      const version = record.anthropicVersion;
      if (!ANTHROPIC_VERSIONS.includes(version)) {
        return fail(400, 'invalid_request_error', `anthropic-version: "${version}" is not a valid version`);
      }

      /** A fault for the request `identity` (its method, path and body): answered here unless it only garbles the answer. */
      const injectFailure = (identity: string): boolean => {
        fault = faults.decide({ identity });
        const injected = faults.intercept(res, fault);
        if (injected) record.status = Number(injected) || 0;
        return injected !== undefined;
      };
      const spendCap = () => fail(429, 'rate_limit_error', spendCapMessage(), { details: { error_code: 'enforced_spend_limit_reached' } });

      if (!isMessages) {
        return batches.handle({ method: req.method ?? '', path, raw, version }, {
          json: (status, body) => reply(status, body),
          jsonl: (text) => reply(200, text, { 'content-type': 'application/x-jsonl' }),
          error: (status, type, message) => fail(status, type, message),
          injected: () => {
            if (injectFailure(`${req.method} ${path} ${raw}`)) return true;
            if (!options.spendLimitReached || req.method !== 'POST' || path !== '/v1/messages/batches') return false;
            spendCap();
            return true;
          },
        });
      }

      let body: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(raw);
        if (!isObject(parsed)) throw new Error('not an object');
        body = parsed;
      } catch {
        return fail(400, 'invalid_request_error', 'The request body is not valid JSON');
      }
      const problem = requestProblem(body, version);
      if (problem) return fail(400, 'invalid_request_error', problem);

      const messages = body.messages as Block[];
      const choice = body.tool_choice as Block | undefined;
      const forced = forcedTool(body);
      const lastToolResult = toolResultIn(messages.at(-1));
      Object.assign(record, {
        model: body.model as string,
        max_tokens: body.max_tokens as number,
        tool: (forced?.name as string | undefined) ?? null,
        toolChoice: choice ?? null,
        inputSchema: forced?.input_schema ?? null,
        repair: lastToolResult?.is_error === true,
        repairText: lastToolResult?.is_error === true ? textOf(lastToolResult.content) : null,
      });

      if (options.spendLimitReached) return spendCap();
      if (injectFailure(raw)) return;

      const message = answerMessage(body, options);
      record.usage = message.usage;
      return reply(200, message);
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}`;
  return {
    url,
    requests,
    batches: batches.list,
    faults: faults.control,
    close: () =>
      new Promise((resolve) => {
        faults.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** An error in the API's shape, as the faults answer it. */
function apiError(status: number, type: string, message: string, headers: Record<string, string> = {}): HttpAnswer {
  return { status, body: JSON.stringify({ type: 'error', error: { type, message }, request_id: 'req_sbx_fault' }), headers: { 'content-type': 'application/json', ...headers } };
}

function blankRecord(req: IncomingMessage, apiKey: string): ClaudeSandboxRequest {
  const header = (name: string) => {
    const v = req.headers[name];
    return typeof v === 'string' ? v : null;
  };
  const xApiKey = header('x-api-key');
  const bearer = /^Bearer (.+)$/i.exec(header('authorization') ?? '')?.[1] ?? null;
  const key = xApiKey ?? bearer;
  return {
    method: req.method ?? '',
    path: '',
    model: null,
    max_tokens: null,
    tool: null,
    toolChoice: null,
    inputSchema: null,
    repair: false,
    repairText: null,
    auth: xApiKey !== null ? 'x-api-key' : bearer !== null ? 'bearer' : null,
    authorized: key === apiKey,
    anthropicVersion: header('anthropic-version'),
    status: 0,
    usage: null,
  };
}

/** The tool that tool_choice forces, if any. */
function forcedTool(body: Record<string, unknown>): Block | undefined {
  const tools = (body.tools ?? []) as Block[];
  const choice = body.tool_choice as Block | undefined;
  return choice?.type === 'tool' ? tools.find((t) => t.name === choice.name) : choice?.type === 'any' ? tools[0] : undefined;
}

interface SandboxMessage {
  [key: string]: unknown;
  usage: { input_tokens: number; output_tokens: number };
}

/**
 * The message the sandbox answers to a valid request body: the same body always gets the same
 * message, on POST /v1/messages and in a batch's results alike.
 */
function answerMessage(body: Record<string, unknown>, options: ClaudeSandboxOptions): SandboxMessage {
  const messages = body.messages as Block[];
  const forced = forcedTool(body);
  const repair = toolResultIn(messages.at(-1))?.is_error === true;
  const seed = createHash('sha256').update(JSON.stringify(messages)).digest('hex');
  const inputChars = charsOf(body.system) + messages.reduce((sum, m) => sum + charsOf(m.content), 0);
  const usage = { input_tokens: Math.max(1, Math.round(inputChars / 4)), output_tokens: 0 };
  const base = { id: `msg_sbx_${seed.slice(0, 24)}`, type: 'message', role: 'assistant', model: body.model, stop_sequence: null, stop_details: null, container: null };
  const vocabulary = vocabularyOf(promptText(messages));

  if (!forced) {
    const text = sentence(vocabulary, seed, 'text', 12);
    usage.output_tokens = Math.max(1, Math.round(text.length / 4));
    return { ...base, content: [{ type: 'text', text, citations: null }], stop_reason: 'end_turn', usage };
  }

  const schema = forced.input_schema as Schema;
  let input = generate(schema, '', seed, vocabulary, null) as Record<string, Json>;
  // Asked about a company's search data, it writes from the numbers, as an analyst would.
  const data = searchDataIn(promptText(messages));
  if (data) input = { ...input, ...writeAnalysis(schema, data) };
  if (options.alwaysInvalid || (options.invalidFirst && !repair)) input = breakInput(schema, input);
  usage.output_tokens = Math.max(1, Math.round(JSON.stringify(input).length / 4));
  let stopReason = 'tool_use';
  if (usage.output_tokens > (body.max_tokens as number)) {
    // Cut off mid-answer: what arrived of the input is not a whole analysis.
    stopReason = 'max_tokens';
    usage.output_tokens = body.max_tokens as number;
    input = {};
  }
  const use = { type: 'tool_use', id: `toolu_sbx_${seed.slice(24, 48)}`, name: forced.name, input, caller: { type: 'direct' } };
  return { ...base, content: [use], stop_reason: stopReason, usage };
}

/** The first thing the real API would refuse with 400, or null. */
function requestProblem(body: Record<string, unknown>, version: string): string | null {
  if (typeof body.model !== 'string' || body.model === '') return 'model: Field required';
  if (!Number.isInteger(body.max_tokens) || (body.max_tokens as number) < 1) return 'max_tokens: must be an integer of at least 1';
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages: at least one message is required';
  for (const [i, m] of body.messages.entries()) {
    if (!isObject(m) || !['user', 'assistant', 'system'].includes(m.role as string)) return `messages.${i}.role: must be "user", "assistant" or "system"`;
  }
  if (version === '2026-10-21') {
    for (const removed of ['temperature', 'top_p', 'top_k']) {
      if (removed in body) return `${removed}: Extra inputs are not permitted in API version 2026-10-21`;
    }
  }
  const tools = body.tools ?? [];
  if (!Array.isArray(tools)) return 'tools: must be an array';
  for (const [i, t] of tools.entries()) {
    if (!isObject(t) || typeof t.name !== 'string' || !TOOL_NAME.test(t.name)) return `tools.${i}.name: must match ^[a-zA-Z0-9_-]{1,64}$`;
    if (!isObject(t.input_schema) || t.input_schema.type !== 'object') return `tools.${i}.input_schema.type: Input should be 'object'`;
  }
  const choice = body.tool_choice;
  if (choice !== undefined) {
    if (!isObject(choice) || !['auto', 'any', 'tool', 'none'].includes(choice.type as string)) return 'tool_choice.type: must be auto, any, tool or none';
    if (choice.type === 'tool' && !tools.some((t) => isObject(t) && t.name === choice.name)) {
      return `tool_choice.name: no tool named "${String(choice.name)}" in tools`;
    }
  }
  return null;
}

function spendCapMessage(): string {
  const now = new Date();
  const resumes = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString().slice(0, 10);
  return `You have reached your API usage limits: your organization has crossed the monthly spend cap of its usage tier. You will regain access on ${resumes} at 00:00 UTC.`;
}

function requestId(raw: string, n: number): string {
  return `req_sbx_${createHash('sha256').update(`${n}:${raw}`).digest('hex').slice(0, 24)}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function toolResultIn(message: Block | undefined): Block | undefined {
  if (message?.role !== 'user' || !Array.isArray(message.content)) return undefined;
  return (message.content as unknown[]).find((b): b is Block => isObject(b) && b.type === 'tool_result');
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((b) => (isObject(b) && typeof b.text === 'string' ? b.text : '')).join('\n');
  return '';
}

/** Characters the model reads in a system prompt or a message's content. */
function charsOf(content: unknown): number {
  if (typeof content === 'string') return content.length;
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const block of content) {
    if (!isObject(block)) continue;
    if (block.type === 'text') n += String(block.text ?? '').length;
    else if (block.type === 'tool_use') n += JSON.stringify(block.input ?? {}).length;
    else if (block.type === 'tool_result') n += charsOf(typeof block.content === 'string' ? block.content : (block.content ?? []));
    else n += JSON.stringify(block).length;
  }
  return n;
}

/** The text of the first user turn: what the analysis is about. */
function promptText(messages: Block[]): string {
  const first = messages.find((m) => m.role === 'user');
  return first ? textOf(first.content) : '';
}

// ---- Deterministic values from a JSON Schema --------------------------------------------

interface Vocabulary {
  domains: string[];
  words: string[];
}

const STOP_WORDS = new Set(
  'about above after again also analyse analysis and are because been before being below between both but can could does doing down during each few from further have having here into its itself just more most must not now only other our out over own same should some such than that the their them then there these they this those through under until very was were what when where which while who whom why will with would you your json tool schema return'.split(
    ' ',
  ),
);
const FALLBACK_WORDS = ['visibility', 'keywords', 'traffic', 'competitors', 'rankings', 'growth', 'content', 'backlinks'];

function vocabularyOf(text: string): Vocabulary {
  const domains = [...new Set((text.match(/\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\b/gi) ?? []).map((d) => d.toLowerCase()))];
  const withoutDomains = domains.reduce((t, d) => t.split(d).join(' '), text.toLowerCase());
  const words = [...new Set((withoutDomains.match(/[a-z][a-z-]{3,}/g) ?? []).filter((w) => !STOP_WORDS.has(w)))];
  return { domains: domains.length ? domains : ['example.com'], words: words.length >= 4 ? words : [...words, ...FALLBACK_WORDS] };
}

/** A stable number for a place in the output: the same seed and path always give the same one. */
function pick(seed: string, path: string, n: number): number {
  if (n <= 1) return 0;
  return createHash('sha256').update(`${seed}\0${path}`).digest().readUInt32BE(0) % n;
}

const PHRASES = ['leads on', 'trails on', 'is gaining', 'is losing ground on', 'overlaps on', 'could win', 'should defend', 'underinvests in'];

/** A short claim about a domain of the prompt, in the prompt's own words. */
function sentence(vocabulary: Vocabulary, seed: string, path: string, maxWords: number): string {
  const domainAt = (salt: string) => vocabulary.domains[pick(seed, `${path}#${salt}`, vocabulary.domains.length)]!;
  const wordAt = (salt: string) => vocabulary.words[pick(seed, `${path}#${salt}`, vocabulary.words.length)]!;
  const count = 2 + pick(seed, `${path}#n`, Math.max(1, maxWords - 6));
  const words = Array.from({ length: count }, (_, i) => wordAt(`w${i}`));
  const subject = domainAt('d');
  const rival = domainAt('r');
  const tail = rival !== subject && pick(seed, `${path}#vs`, 2) === 0 ? `, compared with ${rival}` : '';
  return `${subject} ${PHRASES[pick(seed, `${path}#p`, PHRASES.length)]} ${words.join(' ')}${tail}.`;
}

function generate(schema: unknown, path: string, seed: string, vocabulary: Vocabulary, key: string | null): Json {
  if (!isObject(schema)) return null;
  if ('const' in schema) return schema.const as Json;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[pick(seed, path, schema.enum.length)] as Json;
  const branches = (schema.anyOf ?? schema.oneOf) as unknown[] | undefined;
  if (Array.isArray(branches) && branches.length) {
    const candidates = branches.filter((b) => !(isObject(b) && b.type === 'null'));
    const pool = candidates.length ? candidates : branches;
    return generate(pool[pick(seed, `${path}#branch`, pool.length)], path, seed, vocabulary, key);
  }
  if (Array.isArray(schema.allOf)) return generate(Object.assign({}, ...schema.allOf.filter(isObject)), path, seed, vocabulary, key);

  const type = typeOf(schema);
  switch (type) {
    case 'object': {
      const out: Record<string, Json> = {};
      const properties = isObject(schema.properties) ? schema.properties : {};
      const required = new Set(Array.isArray(schema.required) ? (schema.required as string[]) : []);
      for (const [name, sub] of Object.entries(properties)) {
        // Optional properties appear three times in four, so outputs vary in shape as Claude's do.
        if (!required.has(name) && pick(seed, `${path}/${name}?`, 4) === 0) continue;
        out[name] = generate(sub, `${path}/${name}`, seed, vocabulary, name);
      }
      return out;
    }
    case 'array': {
      const min = typeof schema.minItems === 'number' ? schema.minItems : 1;
      const max = typeof schema.maxItems === 'number' ? schema.maxItems : Math.max(min, 3);
      const n = min + pick(seed, `${path}#len`, max - min + 1);
      const items = Array.isArray(schema.prefixItems) ? schema.prefixItems : Array.isArray(schema.items) ? schema.items : null;
      return Array.from({ length: n }, (_, i) => generate(items ? items[i] : schema.items, `${path}/${i}`, seed, vocabulary, key));
    }
    case 'integer':
    case 'number':
      return numberFor(schema, type, path, seed);
    case 'boolean':
      return pick(seed, path, 2) === 0;
    case 'null':
      return null;
    default:
      return stringFor(schema, path, seed, vocabulary, key);
  }
}

function typeOf(schema: Schema): string {
  const t = schema.type;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) return (t.find((x) => x !== 'null') as string | undefined) ?? 'null';
  if (isObject(schema.properties)) return 'object';
  if (schema.items !== undefined || schema.prefixItems !== undefined) return 'array';
  return 'string';
}

function numberFor(schema: Schema, type: 'integer' | 'number', path: string, seed: string): number {
  const num = (k: string) => (typeof schema[k] === 'number' ? (schema[k] as number) : undefined);
  const step = type === 'integer' ? 1 : 0.01;
  let lo = num('minimum') ?? (num('exclusiveMinimum') !== undefined ? num('exclusiveMinimum')! + step : 0);
  let hi = num('maximum') ?? (num('exclusiveMaximum') !== undefined ? num('exclusiveMaximum')! - step : lo + 100);
  if (type === 'integer') {
    lo = Math.ceil(lo);
    hi = Math.floor(hi);
  }
  if (hi < lo) hi = lo;
  if (type === 'integer') return lo + pick(seed, path, hi - lo + 1);
  const steps = Math.floor((hi - lo) * 100);
  return Math.round((lo + pick(seed, path, steps + 1) / 100) * 100) / 100;
}

function stringFor(schema: Schema, path: string, seed: string, vocabulary: Vocabulary, key: string | null): string {
  const domain = vocabulary.domains[pick(seed, `${path}#d`, vocabulary.domains.length)]!;
  const day = `2026-${String(1 + pick(seed, `${path}#m`, 12)).padStart(2, '0')}-${String(1 + pick(seed, `${path}#day`, 28)).padStart(2, '0')}`;
  let text: string;
  switch (schema.format) {
    case 'date':
      text = day;
      break;
    case 'date-time':
      text = `${day}T09:00:00Z`;
      break;
    case 'email':
      text = `reports@${domain}`;
      break;
    case 'uri':
    case 'url':
      text = `https://${domain}/`;
      break;
    case 'hostname':
      text = domain;
      break;
    default:
      text = key && /domain|site|host/i.test(key) ? domain : sentence(vocabulary, seed, path, 14);
  }
  const minLength = typeof schema.minLength === 'number' ? schema.minLength : 0;
  for (let i = 0; text.length < minLength; i++) text += ` ${vocabulary.words[pick(seed, `${path}#pad${i}`, vocabulary.words.length)]}`;
  if (typeof schema.maxLength === 'number' && text.length > schema.maxLength) {
    const cut = text.slice(0, schema.maxLength);
    const atWord = cut.slice(0, cut.lastIndexOf(' ')).replace(/[,\s]+$/, '');
    text = atWord.length >= minLength && atWord.length > 0 ? atWord : cut.trimEnd();
  }
  return text.length < minLength ? text.padEnd(minLength, 'x') : text;
}

/** The input made to miss the schema: a required property left out, else a property of the wrong type. */
function breakInput(schema: Schema, input: Record<string, Json>): Record<string, Json> {
  const broken = { ...input };
  const required = Array.isArray(schema.required) ? (schema.required as string[]) : [];
  if (required[0] !== undefined) {
    delete broken[required[0]];
    return broken;
  }
  const [first] = Object.entries(isObject(schema.properties) ? schema.properties : {});
  if (first) broken[first[0]] = isObject(first[1]) && typeOf(first[1]) === 'string' ? 42 : 'not the declared type';
  return broken;
}
