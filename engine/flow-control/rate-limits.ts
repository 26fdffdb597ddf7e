import type Bottleneck from 'bottleneck';
import type { EngineConfig } from '../config.ts';
import { parseDuration } from '../duration.ts';

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
    // Shared through Redis, a place is given back after the hold even if this process dies
    // holding it (bottleneck frees a dead client's places only through job expirations).
    return this.options.redisUrl ? limiter.schedule({ expiration: this.holdMs(name) }, fn) : limiter.schedule(fn);
  }

  private holdMs(name: string): number {
    const hold = this.config.rate_limits?.[name]?.hold;
    return (hold && parseDuration(hold)) || 60_000;
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
      return recoverable(new Bottleneck.IORedisConnection({ client: new Redis(this.options.redisUrl!, { maxRetriesPerRequest: 3 }) }));
    })();
    return new Bottleneck({
      ...settings,
      id: `${this.options.prefix ?? 'flows'}:rate:${name}`,
      datastore: 'ioredis',
      connection: await this.connection,
      clearDatastore: false,
      // The limiter's keys expire when no process has used it for this long.
      timeout: Math.max(60_000, 2 * this.holdMs(name)),
    });
  }
}

/**
 * Bottleneck 2.19 re-creates a limiter's Redis keys when its scripts answer SETTINGS_KEY_NOT_FOUND
 * (the keys expired while the limiter was idle, or Redis was flushed) and registers its client
 * again on UNKNOWN_CLIENT (a restarted process). Redis 7 prefixes script errors with "ERR ", so
 * bottleneck no longer recognises them and every later call fails (its issues #205 and #219).
 * The connection hands bottleneck the message it expects.
 */
function recoverable(connection: Bottleneck.IORedisConnection): Bottleneck.IORedisConnection {
  type Callback = (err: { message?: string } | null, replies: unknown) => void;
  const scripts = connection as unknown as { __scriptArgs__(name: string, id: string, args: unknown[], cb: Callback): unknown[] };
  const original = scripts.__scriptArgs__.bind(connection);
  scripts.__scriptArgs__ = (name, id, args, cb) =>
    original(name, id, args, (err, replies) => {
      const bare = err?.message?.replace(/^ERR /, '');
      if (err && (bare === 'SETTINGS_KEY_NOT_FOUND' || bare === 'UNKNOWN_CLIENT')) err.message = bare;
      cb(err, replies);
    });
  return connection;
}
