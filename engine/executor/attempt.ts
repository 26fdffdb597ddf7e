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

/**
 * Runs `fn` with retries. Each attempt gets its own signal that aborts on the run's hard
 * stop or after `timeoutMs`; a step that ignores its signal is abandoned all the same.
 * What to retry is decided by the error: NonRetriableError never, RetryAfterError after its
 * delay, anything else with backoff.
 */
export async function withRetries<T>(
  fn: (signal: AbortSignal, attempt: number) => Promise<T>,
  options: {
    policy: RetryPolicy;
    timeoutMs?: number;
    abort: AbortSignal;
    clock: Clock;
    onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
    /** Admits each attempt (a rate limit); the attempt's timer starts once it is admitted. */
    gate?: <T>(attempt: () => Promise<T>) => Promise<T>;
  },
): Promise<AttemptResult<T>> {
  const { policy, clock, abort } = options;
  for (let attempt = 1; ; attempt++) {
    try {
      const run = () => attemptOnce(fn, attempt, options.timeoutMs, abort);
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

/** Rejects when `signal` aborts: one listener per signal, however many attempts race it. */
const abortions = new WeakMap<AbortSignal, Promise<never>>();
function aborted(signal: AbortSignal): Promise<never> {
  let promise = abortions.get(signal);
  if (!promise) {
    promise = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    promise.catch(() => {});
    abortions.set(signal, promise);
  }
  return promise;
}

async function attemptOnce<T>(fn: (signal: AbortSignal, attempt: number) => Promise<T>, attempt: number, timeoutMs: number | undefined, abort: AbortSignal): Promise<T> {
  if (abort.aborted) throw abort.reason;
  // Without a time limit the attempt needs no signal of its own (the one per item would cost more
  // than the call): it gets the hard stop, and is abandoned when that fires.
  if (timeoutMs === undefined) return Promise.race([fn(abort, attempt), aborted(abort)]);
  const controller = new AbortController();
  const onAbort = () => controller.abort(abort.reason);
  abort.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const stopped = new Promise<never>((_, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => controller.abort(new StepTimeoutError(`timed out after ${timeoutMs}ms`)), timeoutMs);
    }
  });
  stopped.catch(() => {});
  try {
    return await Promise.race([fn(controller.signal, attempt), stopped]);
  } finally {
    if (timer) clearTimeout(timer);
    abort.removeEventListener('abort', onAbort);
  }
}
