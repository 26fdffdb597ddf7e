import { createHash } from 'node:crypto';

/**
 * The faults every sandbox can inject, set the same way everywhere: in the options a
 * sandbox starts with (`faults: { ... }`) and at run time through its `faults.set()`.
 * This module decides which request gets which fault; each sandbox answers it in its own
 * protocol (http-faults.ts for HTTP, the SMTP sandbox for SMTP).
 *
 * A schedule says which requests a fault hits, deterministically:
 * - `true` every request, `false` none;
 * - a share in [0, 1]: chosen by a hash of the seed, the request's identity and how often
 *   that identity was seen, so every run fails the same requests, whatever their order,
 *   and a retry of a failed request can succeed;
 * - `{ first: n }`: the first n requests; `{ every: n }`: the nth, 2nth ...;
 * - `{ keys: [...] }`: requests about these keys (a domain, for SEMrush and SpyFu).
 */
export type FaultSchedule = boolean | number | { first: number } | { every: number } | { keys: readonly string[] };

export interface FaultOptions {
  /** Added before every answer, faults included, in milliseconds. */
  latencyMs?: number;
  /** Never answers: the client's timeout or AbortSignal has to end the request. */
  hang?: FaultSchedule;
  /** Cuts the connection without an answer (HTTP: a reset socket; SMTP: a dropped connection). */
  drop?: FaultSchedule;
  /** Rate limiting: HTTP 429 with Retry-After; SMTP 421, try again later. */
  throttle?: FaultSchedule;
  /** Retry-After of a throttled HTTP answer, in seconds (default 1). */
  retryAfterSeconds?: number;
  /** A server failure the client should retry: HTTP 5xx (errorStatus); SMTP a temporary 451 reply. */
  error?: FaultSchedule;
  /** Status of an HTTP server failure (default 500; 503, or 529 for Claude's overload). */
  errorStatus?: number;
  /** SMTP only: a permanent 554 reply, which no retry can fix. */
  reject?: FaultSchedule;
  /** HTTP only: a 200 whose body the client cannot read (each sandbox garbles in its own format). */
  malformed?: FaultSchedule;
  /** Seeds the shares (default "faults"). */
  seed?: string;
}

/** The fault one request gets; at most one, in this order of precedence. */
export const FAULTS = ['hang', 'drop', 'throttle', 'error', 'reject', 'malformed'] as const;
export type Fault = (typeof FAULTS)[number];

/** What a request is, for the schedules: `key` for `{ keys }`, `identity` for shares (default: its number). */
export interface FaultSubject {
  key?: string | null;
  identity?: string;
}

/** The faults of one sandbox, changeable while it runs; `O` is the part of FaultOptions its protocol has. */
export interface FaultControl<O extends FaultOptions = FaultOptions> {
  readonly options: Readonly<O>;
  /** Replaces the options and starts counting requests again (so `{ first: 2 }` means the next two). */
  set(options: O): void;
  /** Counts one request and says which fault it gets, if any. */
  next(subject?: FaultSubject): Fault | undefined;
  /** Requests counted since the options were last set. */
  readonly requests: number;
}

export function createFaults<O extends FaultOptions>(initial: O = {} as O): FaultControl<O> {
  let options: O = { ...initial };
  let count = 0;
  let seen = new Map<string, number>();
  return {
    get options() {
      return options;
    },
    get requests() {
      return count;
    },
    set(next) {
      options = { ...next };
      count = 0;
      seen = new Map();
    },
    next(subject = {}) {
      const n = ++count;
      const identity = subject.identity ?? `#${n}`;
      const attempt = (seen.get(identity) ?? 0) + 1;
      seen.set(identity, attempt);
      const seed = options.seed ?? 'faults';
      return FAULTS.find((fault) => hits(options[fault], { n, key: subject.key ?? undefined, share: () => shareOf(seed, fault, identity, attempt) }));
    },
  };
}

function hits(schedule: FaultSchedule | undefined, request: { n: number; key?: string; share: () => number }): boolean {
  if (schedule === undefined || schedule === false) return false;
  if (schedule === true) return true;
  if (typeof schedule === 'number') return schedule > 0 && request.share() < schedule;
  if ('first' in schedule) return request.n <= schedule.first;
  if ('every' in schedule) return schedule.every > 0 && request.n % schedule.every === 0;
  return request.key !== undefined && schedule.keys.includes(request.key);
}

/** A stable number in [0, 1) per seed, fault, identity and attempt. */
function shareOf(seed: string, fault: Fault, identity: string, attempt: number): number {
  return createHash('sha256').update(`${seed}\0${fault}\0${identity}\0${attempt}`).digest().readUInt32BE(0) / 2 ** 32;
}
