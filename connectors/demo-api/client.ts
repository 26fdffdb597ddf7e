import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { DURATION_PATTERN, NonRetriableError, parseDuration, RetryAfterError, retryAfterMs } from '../../engine/sdk.ts';

/**
 * The demo's search-visibility API: GET /v1/overview?domain= -> one JSON object. The demo's
 * pipelines call it through http.request (its URL from config.connectors.demo_api.base_url);
 * this client is the same contract for code, and what the connector suite runs against.
 */
export const DemoApiConfigSchema = Type.Object(
  {
    base_url: Type.Optional(Type.String({ pattern: '^https?://', description: 'Where the API answers; unset, the sandbox starts in-process.' })),
    timeout: Type.String({ pattern: DURATION_PATTERN, default: '10s', description: 'How long one request may take, like "10s".' }),
  },
  { additionalProperties: false },
);
export type DemoApiConfig = Static<typeof DemoApiConfigSchema>;

export const DemoOverviewSchema = Type.Object({
  domain: Type.String(),
  visibility: Type.Number(),
  organic_keywords: Type.Integer(),
  organic_traffic: Type.Integer(),
  paid_keywords: Type.Integer(),
  trend: Type.Union([Type.Literal('rising'), Type.Literal('flat'), Type.Literal('falling')]),
});
export type DemoOverview = Static<typeof DemoOverviewSchema>;

export interface DemoApiClient {
  overview(domain: string, options?: { signal?: AbortSignal }): Promise<DemoOverview>;
}

export function createDemoApiClient(config: DemoApiConfig & { base_url: string }, deps: { fetch?: typeof fetch; now?: () => number } = {}): DemoApiClient {
  const timeoutMs = parseDuration(config.timeout) ?? 10_000;
  const doFetch = deps.fetch ?? globalThis.fetch;
  const now = deps.now ?? Date.now;
  return {
    async overview(domain, { signal } = {}) {
      const where = `demo_api overview for ${domain}`;
      const url = new URL('/v1/overview', config.base_url);
      url.searchParams.set('domain', domain);
      const timeout = AbortSignal.timeout(timeoutMs);
      let response: Response;
      let text: string;
      try {
        response = await doFetch(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
        text = await response.text();
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (timeout.aborted) throw new Error(`${where}: no answer within ${timeoutMs}ms`);
        throw new Error(`${where}: ${(err as Error).message}`);
      }
      if (response.status === 429) throw new RetryAfterError(`${where}: 429 Too Many Requests`, retryAfterMs(response.headers.get('retry-after'), now()) ?? 1000);
      if (response.status >= 500) throw new Error(`${where}: HTTP ${response.status}`);
      if (response.status >= 400) throw new NonRetriableError(`${where}: HTTP ${response.status} ${text.slice(0, 120)}`);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new NonRetriableError(`${where}: the answer is not JSON: ${text.slice(0, 80)}`);
      }
      if (!Value.Check(DemoOverviewSchema, body)) throw new NonRetriableError(`${where}: the answer misses the overview's fields`);
      return body;
    },
  };
}
