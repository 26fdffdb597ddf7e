import type { Clock } from './clock.ts';
import type { EngineConfig } from './config.ts';
import { type ConnectorSpec, isConnector } from './connector.ts';
import { connectorResource } from './connector-open.ts';
import { errorMessage } from './errors.ts';
import type { Logger } from './log.ts';

/**
 * Resources are the long-lived things steps share inside one process: an API client, the
 * browser that prints PDFs, a pool of SMTP connections, a sandbox standing in for a service
 * without a key. A step asks for one with `ctx.use(resource)`; it is made on first use from
 * the config, shared by every run of the process, and closed when the process stops. The
 * engine knows resources only through this interface, never by name. A connector spec is
 * used the same way (`ctx.use(semrush)`): the live-or-sandbox rule makes it a resource.
 */
export interface Resource<T> {
  /** Unique name, for logs and for tests that provide a fake under it. */
  readonly name: string;
  create(env: ResourceEnv): Promise<T> | T;
  close?(value: T): Promise<void> | void;
}

/** What a resource is made from. */
export interface ResourceEnv {
  readonly config: EngineConfig;
  readonly env: Record<string, string | undefined>;
  readonly log: Logger;
  readonly clock: Clock;
  /** The pipelines folder (templates, prompts). */
  readonly projectDir: string;
  /** Where local state lives (.flows): sandbox outboxes, report files. */
  readonly stateDir: string;
}

export function defineResource<T>(resource: Resource<T>): Resource<T> {
  return resource;
}

/** What a step may ask for: a resource, or a connector spec (its client). */
export type Usable<T> = Resource<T> | ConnectorSpec<any, any, T>;

function asResource<T>(usable: Usable<T>): Resource<T> {
  return isConnector(usable) ? connectorResource(usable as ConnectorSpec<any, any, T>) : (usable as Resource<T>);
}

export class Resources {
  private readonly made = new Map<string, { resource: Resource<unknown>; value: Promise<unknown> }>();
  private readonly provided = new Map<string, unknown>();
  private closed = false;

  constructor(readonly env: ResourceEnv) {}

  /** Uses `value` instead of making the resource or connector of this name (tests, benchmarks). */
  provide<T>(resource: Usable<T>, value: T): this {
    this.provided.set(resource.name, value);
    return this;
  }

  use<T>(usable: Usable<T>): Promise<T> {
    const resource = asResource(usable);
    if (this.provided.has(resource.name)) return Promise.resolve(this.provided.get(resource.name) as T);
    if (this.closed) return Promise.reject(new Error(`resource ${resource.name}: the process is stopping`));
    let entry = this.made.get(resource.name);
    if (!entry) {
      const value = Promise.resolve()
        .then(() => resource.create(this.env))
        .catch((err) => {
          // A failed start is not cached: the next attempt tries again.
          this.made.delete(resource.name);
          throw err;
        });
      entry = { resource: resource as Resource<unknown>, value };
      this.made.set(resource.name, entry);
    }
    return entry.value as Promise<T>;
  }

  /** Names of the resources made so far. */
  names(): string[] {
    return [...this.made.keys()];
  }

  /** Closes what was made, newest first; a failure to close one is logged, not thrown. */
  async close(): Promise<void> {
    this.closed = true;
    for (const [name, { resource, value }] of [...this.made].reverse()) {
      this.made.delete(name);
      try {
        const made = await value.catch(() => undefined);
        if (made !== undefined) await resource.close?.(made);
      } catch (err) {
        this.env.log.warn({ resource: name, err: errorMessage(err) }, 'resource did not close cleanly');
      }
    }
  }
}
