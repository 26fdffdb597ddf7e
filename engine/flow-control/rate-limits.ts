import type Bottleneck from 'bottleneck';
import type { EngineConfig } from '../config.ts';

/**
 * Named rate limits from the config (`rate_limits:`), applied to each attempt of a step that
 * names one (`rate_limit: semrush`). Short windows (requests per second, requests in flight)
 * are bottleneck's job; with a Redis URL the limiters are shared by every process that uses
 * the same Redis, so several workers together stay under the API's limit.
 */
export class RateLimits {
  private readonly limiters = new Map<string, Promise<Bottleneck>>();
  private connection: Promise<Bottleneck.IORedisConnection> | undefined;

  constructor(
    private readonly config: EngineConfig,
    private readonly options: { redisUrl?: string; prefix?: string } = {},
  ) {}

  /** Runs `fn` when the named limit allows. */
  async schedule<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const limiter = await this.limiter(name);
    return limiter.schedule(fn);
  }

  async close(): Promise<void> {
    for (const limiter of this.limiters.values()) await (await limiter).disconnect(false);
    if (this.connection) await (await this.connection).disconnect(false);
  }

  private limiter(name: string): Promise<Bottleneck> {
    let limiter = this.limiters.get(name);
    if (!limiter) {
      limiter = this.create(name);
      this.limiters.set(name, limiter);
    }
    return limiter;
  }

  private async create(name: string): Promise<Bottleneck> {
    const limit = this.config.rate_limits?.[name];
    if (!limit) throw new Error(`no rate limit "${name}" in the config`);
    const { default: Bottleneck } = await import('bottleneck');
    const minTime = limit.per_second ? Math.ceil(1000 / limit.per_second) : limit.per_minute ? Math.ceil(60_000 / limit.per_minute) : 0;
    const settings: Bottleneck.ConstructorOptions = { maxConcurrent: limit.concurrency ?? null, minTime };
    if (!this.options.redisUrl) return new Bottleneck(settings);
    this.connection ??= (async () => {
      const { Redis } = await import('ioredis');
      return new Bottleneck.IORedisConnection({ client: new Redis(this.options.redisUrl!, { maxRetriesPerRequest: 3 }) });
    })();
    return new Bottleneck({
      ...settings,
      id: `${this.options.prefix ?? 'flows'}:rate:${name}`,
      datastore: 'ioredis',
      connection: await this.connection,
      clearDatastore: false,
      // A worker that dies does not hold its slots for ever.
      timeout: 60_000,
    });
  }
}
