import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small search-visibility API for the demo and the tests, on loopback. Numbers are derived
 * from the domain, so the same domain always gives the same answer. Knobs inject latency
 * and failures (429 with Retry-After, 500) to exercise retries.
 *
 *   GET /v1/overview?domain=example.com -> { domain, visibility, organic_keywords, organic_traffic, paid_keywords, trend }
 */
export interface DemoApiOptions {
  /** Added to every response. */
  latencyMs?: number;
  /** Answer 429 (Retry-After: 0) to the first N requests of each domain. */
  throttleFirst?: number;
  /** Answer 500 for these domains, always. */
  failDomains?: string[];
}

export interface DemoApi {
  url: string;
  /** Requests received, by path and domain. */
  readonly requests: { method: string; path: string; domain: string | null }[];
  close(): Promise<void>;
}

export function overviewOf(domain: string) {
  const h = createHash('sha256').update(domain).digest();
  const traffic = 500 + (h.readUInt32BE(0) % 200_000);
  const keywords = 50 + (h.readUInt16BE(4) % 8000);
  return {
    domain,
    visibility: Math.round((h[6]! / 255) * 1000) / 10,
    organic_keywords: keywords,
    organic_traffic: traffic,
    paid_keywords: h[7]! % 3 === 0 ? 0 : h.readUInt16BE(8) % 900,
    trend: (['rising', 'flat', 'falling'] as const)[h[10]! % 3],
  };
}

export async function startDemoApi(options: DemoApiOptions = {}): Promise<DemoApi> {
  const requests: DemoApi['requests'] = [];
  const seen = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sandbox');
    const domain = url.searchParams.get('domain');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, domain });
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      const send = () => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      if (options.latencyMs) setTimeout(send, options.latencyMs);
      else send();
    };
    if (url.pathname !== '/v1/overview') return reply(404, { error: 'not found' });
    if (!domain) return reply(400, { error: 'domain is required' });
    const n = (seen.get(domain) ?? 0) + 1;
    seen.set(domain, n);
    if (options.failDomains?.includes(domain)) return reply(500, { error: 'internal error' });
    if (options.throttleFirst && n <= options.throttleFirst) return reply(429, { error: 'slow down' }, { 'retry-after': '0' });
    return reply(200, overviewOf(domain));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
