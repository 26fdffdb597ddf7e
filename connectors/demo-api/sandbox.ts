import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FaultControl } from '../sandbox/faults.ts';
import { type HttpFaultOptions, httpFaults } from '../sandbox/http-faults.ts';

/**
 * A small search-visibility API for the demo and the tests, on loopback. Numbers are derived
 * from the domain, so the same domain always gives the same answer. `faults` inject latency,
 * 429s with Retry-After, 5xx, silence and garbled bodies to exercise retries; `{ keys }` are
 * domains.
 *
 *   GET /v1/overview?domain=example.com -> { domain, visibility, organic_keywords, organic_traffic, paid_keywords, trend }
 */
export interface DemoApiOptions {
  /** Changeable later with `faults.set()`. */
  faults?: HttpFaultOptions;
}

export interface DemoApi {
  url: string;
  /** Requests received, by path and domain. */
  readonly requests: { method: string; path: string; domain: string | null }[];
  /** The faults it injects, changeable while it runs. */
  readonly faults: FaultControl<HttpFaultOptions>;
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

const json = (status: number, body: unknown, headers: Record<string, string> = {}) => ({
  status,
  body: JSON.stringify(body),
  headers: { 'content-type': 'application/json', ...headers },
});

export async function startDemoApi(options: DemoApiOptions = {}): Promise<DemoApi> {
  const requests: DemoApi['requests'] = [];
  const faults = httpFaults(options.faults, {
    throttled: (seconds) => json(429, { error: 'slow down' }, { 'retry-after': String(seconds) }),
    failed: (status) => json(status, { error: 'internal error' }),
  });
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sandbox');
    const domain = url.searchParams.get('domain');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, domain });
    if (url.pathname !== '/v1/overview') return faults.send(res, json(404, { error: 'not found' }));
    if (!domain) return faults.send(res, json(400, { error: 'domain is required' }));
    const fault = faults.decide({ key: domain, identity: domain });
    if (faults.intercept(res, fault)) return;
    faults.send(res, json(200, overviewOf(domain)), fault);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    faults: faults.control,
    close: () =>
      new Promise((resolve) => {
        faults.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
