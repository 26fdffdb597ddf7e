/**
 * Errors that carry their own retry behaviour: steps throw them, the executor alone
 * decides what to do (retry, wait, give up).
 */

/** The attempt failed and another attempt cannot succeed (bad input, 4xx, spent budget). */
export class NonRetriableError extends Error {
  override readonly name: string = 'NonRetriableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The run cannot go on without a person: the input is incomplete in a way no retry fixes
 * (a payment without a domain). The run ends as `needs_attention` with this message, later
 * steps do not run, and `flows runs --status needs_attention` lists it.
 */
export class NeedsAttentionError extends NonRetriableError {
  override readonly name = 'NeedsAttentionError';
}

/**
 * This item is not for this run (a bad row, a domain enriched last week): it is recorded as
 * skipped with this reason, which `flows show` counts, and the run goes on as completed.
 */
export class SkipItemError extends NonRetriableError {
  override readonly name = 'SkipItemError';
}

/** The error of type `type` in `err` or its causes (the executor wraps what steps throw). */
export function findCause<T extends Error>(err: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (let e = err; e instanceof Error; e = e.cause) if (e instanceof type) return e;
  return undefined;
}

/**
 * An HTTP Retry-After header in milliseconds from `nowMs`: delay-seconds or an HTTP date.
 * Undefined when absent or unreadable (each caller knows its provider's default wait).
 */
export function retryAfterMs(header: string | null | undefined, nowMs: number): number | undefined {
  const value = header?.trim();
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** The attempt failed; try again, but not before `afterMs` (a 429 with Retry-After). */
export class RetryAfterError extends Error {
  override readonly name = 'RetryAfterError';
  constructor(
    message: string,
    readonly afterMs: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The effect did not happen and can be tried again at `until` (a 4xx soft bounce, a provider
 * asking to come back later): the reservation is given back, the item waits like a quota
 * wait (the daemon parks a long one), then reserves afresh. Never retried at once.
 */
export class DeferredError extends NonRetriableError {
  override readonly name = 'DeferredError';
  constructor(
    message: string,
    readonly until: Date,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A step ran past its `timeout`. Retriable: the next attempt gets a fresh timer. */
export class StepTimeoutError extends Error {
  override readonly name = 'StepTimeoutError';
}

/** A problem in a user's file, with the place to fix it. */
export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  /** Where in the document, as the user would write it: `steps[2].with.limit`. */
  path: string;
  message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.path ? `${d.path}: ` : '';
  return `${d.file}:${d.line}:${d.col}: ${where}${d.message}`;
}

/** Thrown when a file the engine needs does not validate; carries every problem found. */
export class ValidationError extends Error {
  override readonly name = 'ValidationError';
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join('\n'));
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
