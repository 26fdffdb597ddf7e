import type { ConnectorSpec } from '../../engine/sdk.ts';
import type { Fault, FaultControl, FaultOptions } from './faults.ts';

/**
 * What the one connector suite (test/connectors.test.ts) needs of a connector: how to start
 * its sandbox with faults, the settings a wrong key or a short timeout takes, and one
 * representative call. Every connector folder exports one (conformance.ts); the suite runs
 * the same cases against each client pointed at its sandbox, and against the live service
 * when the environment has its secrets.
 */
export interface ConformanceAdapter<T = any> {
  readonly spec: ConnectorSpec<any, any, T>;
  /** Starts the sandbox injecting `faults`. Absent for a connector that is local anyway (storage, the browser). */
  sandbox?(faults: FaultOptions): Promise<ConformanceSandbox>;
  /** One representative call, passing `signal` on. */
  call(client: T, context: ConformanceContext): Promise<unknown>;
  /** Throws unless `result` is well-formed data. */
  check(result: unknown): void;
  /** The faults its protocol has (SMTP has no bodies to garble, HTTP no permanent refusal). */
  readonly faults: readonly Fault[];
  /** What a throttled call throws: RetryAfterError with the server's delay, or (SMTP, which has none) a retriable error. */
  readonly throttle?: 'retry-after' | 'retriable';
  /** Settings with a wrong secret, merged over the sandbox's or the live ones, and that secret: it must never appear in an error. */
  readonly wrongKey?: { config: Record<string, unknown>; secret: string };
  /** Settings that give one call at most `ms`. */
  timeout?(ms: number): Record<string, unknown>;
  /** The variables that, all set, make the suite run against the live service, and the settings they give. */
  readonly live?: { variables: readonly string[]; config(env: Record<string, string | undefined>): Record<string, unknown> };
  /** Why the connector cannot run on this machine (no Chromium), if it cannot. */
  unavailable?(env: Record<string, string | undefined>): string | undefined;
  /** false when the call takes no signal (it is instant and local). */
  readonly abortable?: boolean;
}

export interface ConformanceSandbox {
  /** Settings that point the client at the sandbox. */
  config: Record<string, unknown>;
  faults: FaultControl<any>;
  close(): Promise<void>;
}

export interface ConformanceContext {
  signal: AbortSignal;
  env: Record<string, string | undefined>;
}

/** Throws "not well-formed: <what>" unless `ok`: for the adapters' checks. */
export function wellFormed(ok: boolean, what: string): void {
  if (!ok) throw new Error(`not well-formed: ${what}`);
}
