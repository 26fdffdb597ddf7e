import { Type } from '@sinclair/typebox';
import { defineStep, NonRetriableError, RetryAfterError, retryAfterMs } from '../../engine/sdk.ts';

const READ_METHODS = new Set(['GET', 'HEAD']);

const Input = Type.Object(
  {
    url: Type.String({ pattern: '^https?://', description: 'Absolute http(s) URL.', 'x-hint': 'write a full URL like "https://api.example.com/v1/items"' }),
    method: Type.Optional(Type.Unsafe<'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD'>({ type: 'string', enum: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'], default: 'GET' })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Request headers.' })),
    query: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]), { description: 'Query string parameters, URL-encoded for you.' })),
    body: Type.Optional(Type.Unknown({ description: 'Sent as JSON (Content-Type: application/json).' })),
    effect: Type.Optional(
      Type.Boolean({ description: 'Whether the request changes something outside (default: true for POST/PUT/PATCH/DELETE, false for GET/HEAD). Effects are planned, not sent, in a dry run.' }),
    ),
    cost: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_]*$' }), Type.Number({ minimum: 0 }), {
        additionalProperties: false,
        description: 'What one call spends, by unit (priced by config prices), e.g. { partner_api_call: 1 }: reported as the run\'s cost, and what a budget reserves.',
      }),
    ),
    idempotency_header: Type.Optional(
      Type.String({ description: 'Send the effect\'s idempotency key in this header (e.g. Idempotency-Key); the request is then safely repeated after a crash.' }),
    ),
  },
  { additionalProperties: false },
);

const Output = Type.Object(
  {
    status: Type.Integer({ description: 'HTTP status.' }),
    headers: Type.Record(Type.String(), Type.String()),
    body: Type.Unknown({ description: 'Parsed JSON when the response is JSON, otherwise the text.' }),
  },
  { additionalProperties: false },
);

function buildUrl(url: string, query?: Record<string, string | number | boolean>): string {
  if (!query) return url;
  const u = new URL(url);
  for (const [k, v] of Object.entries(query)) u.searchParams.set(k, String(v));
  return u.toString();
}

export const httpRequest = defineStep({
  type: 'http.request',
  description: 'Calls an HTTP API with a JSON body; retries 429 (after Retry-After), 408 and 5xx; fails at once on other 4xx.',
  input: Input,
  output: Output,
  effect: {
    kind: (input) => ((input.effect ?? !READ_METHODS.has(input.method ?? 'GET')) ? 'http' : null),
    plan: (_ctx, input) => {
      const method = input.method ?? 'GET';
      const url = buildUrl(input.url, input.query);
      return {
        summary: `${method} ${url}`,
        output: { status: 0, headers: {}, body: null },
        cost: input.cost,
        artifacts: [{ name: 'request.json', content: JSON.stringify({ method, url, headers: input.headers ?? {}, body: input.body ?? null }, null, 2) }],
      };
    },
    cost: (input) => input.cost ?? {},
    costUnknown: (withValue) =>
      withValue.cost === undefined ? 'a budget needs to know what one call costs: add with.cost, the units one call spends, e.g. cost: { partner_api_call: 1 }' : undefined,
    describe: (input) => ({ summary: `${input.method ?? 'GET'} ${buildUrl(input.url, input.query)}` }),
    providerIdempotent: (input) => Boolean(input.idempotency_header),
  },
  async run(ctx, input) {
    const method = input.method ?? 'GET';
    const headers: Record<string, string> = { accept: 'application/json', ...input.headers };
    if (input.idempotency_header && ctx.effectKey) headers[input.idempotency_header] = ctx.effectKey;
    let body: string | undefined;
    if (input.body !== undefined && method !== 'GET' && method !== 'HEAD') {
      body = JSON.stringify(input.body);
      headers['content-type'] ??= 'application/json';
    }
    let response: Response;
    try {
      response = await fetch(buildUrl(input.url, input.query), { method, headers, body, signal: ctx.signal });
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      throw new Error(`${method} ${input.url}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`);
    }
    const text = await response.text();
    const type = response.headers.get('content-type') ?? '';
    let parsed: unknown = text;
    if (type.includes('json') && text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new NonRetriableError(`${method} ${input.url}: the response says JSON but is not (${text.slice(0, 80)})`);
      }
    }
    const snippet = text.slice(0, 200);
    if (response.status === 429) throw new RetryAfterError(`${method} ${input.url}: 429 Too Many Requests`, retryAfterMs(response.headers.get('retry-after'), ctx.clock.now().getTime()) ?? 1000);
    if (response.status >= 500 || response.status === 408) throw new Error(`${method} ${input.url}: ${response.status} ${snippet}`);
    if (response.status >= 400) throw new NonRetriableError(`${method} ${input.url}: ${response.status} ${snippet}`);
    if (input.cost) ctx.spend(input.cost);
    const received: Record<string, string> = {};
    response.headers.forEach((value, name) => (received[name] = value));
    return { status: response.status, headers: received, body: parsed };
  },
});
