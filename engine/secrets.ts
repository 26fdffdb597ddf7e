/**
 * Secret values must never reach logs, run records or dry-run artifacts. They are found by
 * the names of the environment variables that hold them (and passwords inside URLs), and
 * every string written anywhere is scrubbed of them.
 */
const SECRET_NAME = /(_KEY|_SECRET|_TOKEN|_PASSWORD|_PASS|_PWD)$/i;
const URL_PASSWORD = /[a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]*:([^@/?#\s]+)@/gi;
export const REDACTED = '[redacted]';

export function secretValues(env: Record<string, string | undefined>): string[] {
  const found = new Set<string>();
  for (const [name, value] of Object.entries(env)) {
    if (!value) continue;
    if (SECRET_NAME.test(name) && value.length >= 4) found.add(value);
    for (const m of value.matchAll(URL_PASSWORD)) {
      const pw = m[1]!;
      if (pw.length >= 3) {
        found.add(pw);
        try {
          found.add(decodeURIComponent(pw));
        } catch {
          /* not percent-encoded */
        }
      }
    }
  }
  // Longest first, so a secret containing another is replaced whole.
  return [...found].sort((a, b) => b.length - a.length);
}

export type Scrubber = <T>(value: T) => T;

export function createScrubber(env: Record<string, string | undefined>): Scrubber {
  const secrets = secretValues(env);
  const scrubString = (s: string): string => {
    let out = s.replace(URL_PASSWORD, (whole, pw: string) => whole.replace(`:${pw}@`, `:${REDACTED}@`));
    for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out;
  };
  const walk = (value: unknown, depth: number): unknown => {
    if (typeof value === 'string') return scrubString(value);
    if (value === null || typeof value !== 'object' || depth > 50) return value;
    if (value instanceof Date) return value;
    if (value instanceof Error) {
      const copy = new Error(scrubString(value.message));
      copy.name = value.name;
      copy.stack = value.stack && scrubString(value.stack);
      return copy;
    }
    if (Array.isArray(value)) return value.map((v) => walk(v, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = walk(v, depth + 1);
    return out;
  };
  return <T>(value: T) => walk(value, 0) as T;
}
