/**
 * What a finished Phantombuster launch means for LinkedIn outreach, from its container, its
 * console output and its result object. Pure: the client calls it after a run, the tests
 * call it with the texts below.
 *
 * The error table of Phantombuster's own assistant (phantombuster/mcp-skill-public,
 * SKILL.md, "Error fixes" and "Health signals"): "Expired or invalid session cookie, exit
 * code 87"; "Disconnected by LinkedIn"; "Rate limited / too many requests"; "Weekly
 * invitation limit reached" (stop connecting until the rolling week resets, do not retry);
 * and "A run with status "success" can still have produced nothing. Check the result object".
 * Containers (API v2 containers/fetch) carry `status` (starting, running, finished ...),
 * `exitCode` and `endType`; the webhook payload names the end reason `exitMessage`
 * ("finished", "killed", "global timeout", "org timeout", "agent timeout", "unknown").
 */

/** The exit code a LinkedIn phantom ends with when its session cookie is invalid or expired. */
export const SESSION_EXIT_CODE = 87;

/** The texts the phantoms print, as the sandbox prints them too. */
export const PHANTOM_MESSAGES = {
  sessionExpired: "Can't connect to LinkedIn with this session cookie: expired or invalid session cookie.",
  disconnected: 'Disconnected by LinkedIn',
  rateLimited: 'Rate limited by LinkedIn: too many requests, stopping for now.',
  weeklyLimit: 'Weekly invitation limit reached',
  messageTooLong: 'Message too long',
  nothingToDo: 'No new profiles to process in the input.',
} as const;

export type RunOutcome =
  | { kind: 'ok' }
  /** Finished and produced nothing: not a success (nothing was sent or read). */
  | { kind: 'empty'; message: string }
  | { kind: 'session_expired'; message: string }
  | { kind: 'disconnected'; message: string }
  | { kind: 'rate_limited'; message: string }
  | { kind: 'weekly_invitation_limit'; message: string }
  | { kind: 'failed'; message: string };

/** The container fields classification reads; a fetched container has more. */
export interface ContainerEnd {
  status: string;
  exitCode?: number | null;
  endType?: string | null;
  exitMessage?: string | null;
}

const SESSION = [/session cookie/i, /\bli_at\b/i, /not logged in/i, /log ?in again/i];
const SESSION_BAD = /expired|invalid|not valid|can'?t connect|cannot connect|no longer valid/i;
const DISCONNECTED = /disconnected by linkedin/i;
const WEEKLY = /weekly invitation limit|weekly limit of invitations|reached the weekly (?:invitation )?limit/i;
const RATE = /rate[- ]limit|too many requests|\b429\b/i;

/** The line of `output` matching `pattern`, trimmed, or the pattern's own name. */
function lineOf(output: string, pattern: RegExp, fallback: string): string {
  return output.split(/\r?\n/).find((line) => pattern.test(line))?.trim() || fallback;
}

/** The last line that reads as an error, for a failure nobody classified. */
function lastError(output: string): string | undefined {
  const lines = output.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  return [...lines].reverse().find((l) => /error|fail|❌/i.test(l)) ?? lines.at(-1);
}

/** True for a result object that holds nothing: null, empty text, [], {}. */
export function isEmptyResult(result: unknown): boolean {
  if (result === null || result === undefined) return true;
  if (typeof result === 'string') return result.trim() === '' || result.trim() === '[]' || result.trim() === '{}';
  if (Array.isArray(result)) return result.length === 0;
  if (typeof result === 'object') return Object.keys(result).length === 0;
  return false;
}

export function classify(container: ContainerEnd, output: string, result: unknown): RunOutcome {
  const text = `${output}\n${container.exitMessage ?? ''}`;
  const sessionLine = text.split(/\r?\n/).find((line) => SESSION.some((p) => p.test(line)) && SESSION_BAD.test(line));
  if (container.exitCode === SESSION_EXIT_CODE || sessionLine) {
    return { kind: 'session_expired', message: sessionLine?.trim() || `exit code ${SESSION_EXIT_CODE}: expired or invalid session cookie` };
  }
  if (DISCONNECTED.test(text)) return { kind: 'disconnected', message: lineOf(text, DISCONNECTED, PHANTOM_MESSAGES.disconnected) };
  if (WEEKLY.test(text)) return { kind: 'weekly_invitation_limit', message: lineOf(text, WEEKLY, PHANTOM_MESSAGES.weeklyLimit) };
  if (RATE.test(text)) return { kind: 'rate_limited', message: lineOf(text, RATE, 'rate limited') };
  const endedBadly = (container.endType && container.endType !== 'finished') || (container.exitMessage && container.exitMessage !== 'finished');
  if (container.status !== 'finished' || (container.exitCode ?? 0) !== 0 || endedBadly) {
    const why = lastError(output) ?? container.exitMessage ?? container.endType ?? container.status;
    return { kind: 'failed', message: `exit code ${container.exitCode ?? 'none'}, ${container.endType ?? container.status}: ${why}` };
  }
  if (isEmptyResult(result)) return { kind: 'empty', message: lastError(output) ?? 'the run finished without a result' };
  return { kind: 'ok' };
}
