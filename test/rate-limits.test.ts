import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineConfig } from '../engine/config.ts';
import { type Database, openDatabase } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { RateLimits } from '../engine/flow-control/rate-limits.ts';
import { RunStore } from '../engine/store/index.ts';
import { diagnosticsOf, pipelineFrom, testRegistry } from './helpers/pipeline.ts';

const config: EngineConfig = { rate_limits: { api: { per_second: 25, concurrency: 2 } } };

/** Records when each request arrived and how many were in flight. */
function startApi(): Promise<{ server: Server; url: string; arrivals: number[]; peak: () => number }> {
  const arrivals: number[] = [];
  let inFlight = 0;
  let peak = 0;
  const server = createServer((req, res) => {
    arrivals.push(performance.now());
    peak = Math.max(peak, ++inFlight);
    setImmediate(() => {
      inFlight--;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    req.resume();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrivals, peak: () => peak })),
  );
}

const pipeline = (url: string, tag: string) => `
name: limited-${tag}
trigger: { manual: {} }
steps:
  - id: call
    uses: http.request
    foreach: "\${{ range(0, 12) }}"
    concurrency: 6
    rate_limit: api
    with: { url: "${url}/x?i=\${{ item }}" }
`;

/**
 * Requests per second over the whole burst. (Single gaps are noisy: the first request also
 * opens a connection, so it can arrive late and close to the second.)
 */
const rate = (times: number[]) => ((times.length - 1) * 1000) / (Math.max(...times) - Math.min(...times));

describe('rate limits', () => {
  let db: Database;
  let api: Awaited<ReturnType<typeof startApi>>;
  beforeAll(async () => {
    db = await openDatabase({ dataDir: 'memory://' });
    api = await startApi();
    await (await fetch(`${api.url}/warm-up`)).text(); // open the keep-alive connection before measuring
  });
  afterAll(async () => {
    api.server.close();
    await db.close();
  });

  it('are checked by name when a pipeline loads', () => {
    const yaml = 'name: r\ntrigger: { manual: {} }\nsteps:\n  - { id: a, uses: test.send, rate_limit: apl, with: { to: m } }\n';
    expect(diagnosticsOf(yaml, testRegistry(), config)).toEqual(['p.yaml:4:43: steps[0].rate_limit: unknown rate limit "apl" (did you mean "api"?)']);
  });

  it('space the attempts of a step and cap those in flight, whatever its concurrency', async () => {
    api.arrivals.length = 0;
    const result = await executeRun({ pipeline: pipelineFrom(pipeline(api.url, 'a'), testRegistry(), config), config, store: new RunStore(db) });
    expect(result.status).toBe('completed');
    expect(api.arrivals).toHaveLength(12);
    // 25 per second at most, never more than 2 at once, although the step allows 6.
    expect(rate(api.arrivals)).toBeLessThanOrEqual(26);
    expect(api.peak()).toBeLessThanOrEqual(2);
  });

  it.runIf(process.env.REDIS_URL)('are shared through Redis by separate limiters (as by separate processes)', async () => {
    api.arrivals.length = 0;
    const prefix = `flows-test-${process.pid}-${Date.now()}`;
    const one = new RateLimits(config, { redisUrl: process.env.REDIS_URL, prefix });
    const two = new RateLimits(config, { redisUrl: process.env.REDIS_URL, prefix });
    try {
      const [a, b] = await Promise.all([
        executeRun({ pipeline: pipelineFrom(pipeline(api.url, 'b'), testRegistry(), config), config, store: new RunStore(db), rateLimits: one }),
        executeRun({ pipeline: pipelineFrom(pipeline(api.url, 'c'), testRegistry(), config), config, store: new RunStore(db), rateLimits: two }),
      ]);
      expect([a.status, b.status]).toEqual(['completed', 'completed']);
    } finally {
      await one.close();
      await two.close();
    }
    expect(api.arrivals).toHaveLength(24);
    expect(rate(api.arrivals)).toBeLessThanOrEqual(26); // one limit for both, not 25 each
  });

  it.skipIf(!process.env.REDIS_URL)('outlive the expiry of their Redis keys (an idle limiter, a restarted process)', async () => {
    const prefix = `flows-test-${process.pid}-${Date.now()}`;
    const limits = new RateLimits(config, { redisUrl: process.env.REDIS_URL, prefix });
    const { Redis } = await import('ioredis');
    const redis = new Redis(process.env.REDIS_URL!);
    try {
      expect(await limits.schedule('api', async () => 'first')).toBe('first');
      // What an idle limiter's expiry (or a FLUSHDB) leaves: the limiter's keys are gone.
      const keys = await redis.keys(`b_${prefix}:rate:api_*`);
      expect(keys.length).toBeGreaterThan(0);
      await redis.del(...keys);
      expect(await limits.schedule('api', async () => 'again')).toBe('again');
      expect(await redis.exists(`b_${prefix}:rate:api_settings`)).toBe(1);
    } finally {
      await limits.close();
      redis.disconnect();
    }
  });

  it.skipIf(!process.env.REDIS_URL)('free the places a dead process held, after the limit\'s hold', async () => {
    const prefix = `flows-test-hold-${process.pid}-${Date.now()}`;
    const held: EngineConfig = { rate_limits: { api: { per_second: 1000, concurrency: 2, hold: '400ms' } } };
    const dead = new RateLimits(held, { redisUrl: process.env.REDIS_URL, prefix });
    const alive = new RateLimits(held, { redisUrl: process.env.REDIS_URL, prefix });
    try {
      // A process takes both places and dies in the middle of its calls: they never finish.
      for (let i = 0; i < 2; i++) void dead.schedule('api', () => new Promise(() => {})).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      expect(await alive.schedule('api', async () => 'served')).toBe('served');
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await dead.close();
      await alive.close();
    }
  });
});
