import type { Clock } from '../clock.ts';
import { errorMessage, NonRetriableError, RetryAfterError, StepTimeoutError } from '../errors.ts';
import type { RetryPolicy } from '../pipeline/types.ts';

export interface AttemptResult<T> {
  value: T;
  attempts: number;
}

export class AttemptsExhaustedError extends Error {
  override readonly name = 'AttemptsExhaustedError';
  constructor(
    readonly attempts: number,
    readonly last: unknown,
  ) {
    super(attempts > 1 ? `${errorMessage(last)} (after ${attempts} attempts)` : errorMessage(last), { cause: last });
  }
}

/** Exponential backoff with equal jitter: half the delay fixed, half random. */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const full = Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** (attempt - 1));
  return full / 2 + random() * (full / 2);
}

/** One attempt as the step sees it: its number, and the signal that stops it. */
export interface AttemptHandle {
  readonly number: number;
  readonly signal: AbortSignal;
}

/**
 * An attempt's signal is made only when the step asks for it (a fetch does, a database write
 * does not): thousands of calls a second need no AbortController each, nor a listener each on
 * the run's hard stop.
 */
class Attempt implements AttemptHandle {
  private controller?: AbortController;
  private reason?: unknown;
  /** Rejects the attempt's race at once (a step that ignores its signal is given up on). */
  onAbort?: (reason: unknown) => void;

  constructor(readonly number: number) {}

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.controller?.abort(reason);
    this.onAbort?.(reason);
  }
}

/** The attempts in flight under one hard-stop signal: one listener on it aborts them all. */
const inFlight = new WeakMap<AbortSignal, Set<Attempt>>();
function attemptsUnder(abort: AbortSignal): Set<Attempt> {
  let set = inFlight.get(abort);
  if (!set) {
    const attempts = new Set<Attempt>();
    abort.addEventListener('abort', () => {
      for (const a of attempts) a.abort(abort.reason);
    }, { once: true });
    inFlight.set(abort, (set = attempts));
  }
  return set;
}

/**
 * Runs `fn` with retries. Each attempt can be stopped by the run's hard stop or after
 * `timeoutMs` (its signal aborts), and a step that ignores its signal is abandoned all the
 * same. What to retry is decided by the error: NonRetriableError never, RetryAfterError after
 * its delay, anything else with backoff.
 */
export async function withRetries<T>(
  fn: (attempt: AttemptHandle) => Promise<T>,
  options: {
    policy: RetryPolicy;
    timeoutMs?: number;
    abort: AbortSignal;
    clock: Clock;
    onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
    /** Admits each attempt (a rate limit); the attempt's timer starts once it is admitted. */
    gate?: <T>(attempt: () => Promise<T>) => Promise<T>;
    /**
     * The attempt gets the hard-stop signal itself, and no race of its own: for work that
     * cannot be abandoned halfway (a database statement) and has no time limit.
     */
    bare?: boolean;
  },
): Promise<AttemptResult<T>> {
  const { policy, clock, abort } = options;
  for (let attempt = 1; ; attempt++) {
    try {
      const run = options.bare && options.timeoutMs === undefined ? () => fn({ number: attempt, signal: abort }) : () => attemptOnce(fn, attempt, options.timeoutMs, abort);
      return { value: await (options.gate ? options.gate(run) : run()), attempts: attempt };
    } catch (err) {
      if (err instanceof NonRetriableError || abort.aborted || attempt >= policy.attempts) {
        throw new AttemptsExhaustedError(attempt, err);
      }
      const delay = err instanceof RetryAfterError ? Math.max(err.afterMs, 0) : backoffMs(policy, attempt);
      options.onRetry?.(err, attempt, delay);
      await clock.sleep(delay, abort);
    }
  }
}

function attemptOnce<T>(fn: (attempt: AttemptHandle) => Promise<T>, number: number, timeoutMs: number | undefined, abort: AbortSignal): Promise<T> {
  if (abort.aborted) return Promise.reject(abort.reason);
  const attempt = new Attempt(number);
  const running = attemptsUnder(abort);
  running.add(attempt);
  let timer: NodeJS.Timeout | undefined;
  // One promise settled by whichever comes first: the work, or the attempt being stopped.
  return new Promise<T>((resolve, reject) => {
    attempt.onAbort = reject;
    if (timeoutMs !== undefined) timer = setTimeout(() => attempt.abort(new StepTimeoutError(`timed out after ${timeoutMs}ms`)), timeoutMs);
    fn(attempt).then(resolve, reject);
  }).finally(() => {
    if (timer) clearTimeout(timer);
    running.delete(attempt);
  });
}
