/**
 * LinkedIn URLs in prospect sources. A profile is stored in one canonical form,
 * https://www.linkedin.com/in/<slug>/, whose slug is letters, digits and hyphens (other
 * letters percent-encoded as UTF-8), or a member id (`ACwAA...`, which may hold `_`). A Sales
 * Navigator lead is a different page: kept apart, it never stands for the profile.
 */

const LINKEDIN_PATH = /^(?:https?:\/\/)?(?:[a-z]{2,3}\.)?linkedin\.com\/(in|sales\/lead|sales\/people)\/([^/?#\s]+)(?:[/?#]\S*)?$/i;

/** A member id as LinkedIn writes it in profile URLs it generates; case matters in it. */
const MEMBER_ID = /^AC[A-Za-z0-9_-]{20,}$/;
const SLUG = /^[\p{L}\p{M}0-9-]{3,100}$/u;

function parts(text: string): { kind: string; segment: string } | undefined {
  const match = LINKEDIN_PATH.exec(text.trim());
  return match ? { kind: match[1]!.toLowerCase(), segment: match[2]! } : undefined;
}

function decoded(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined; // an invalid escape like %zz
  }
}

/** The slug in canonical form: ASCII lower-case, any other letter percent-encoded as UTF-8. */
function canonicalSlug(segment: string): string | undefined {
  const text = decoded(segment);
  if (text === undefined) return undefined;
  if (MEMBER_ID.test(text)) return text;
  if (!SLUG.test(text)) return undefined;
  return [...text.toLowerCase()].map((ch) => (/[a-z0-9-]/.test(ch) ? ch : encodeURIComponent(ch))).join('');
}

/** https://www.linkedin.com/in/<slug>/ for any form of a profile URL; undefined when it is not a valid one. */
export function normalizeLinkedInUrl(text: string): string | undefined {
  const found = parts(text);
  if (found?.kind !== 'in') return undefined;
  const slug = canonicalSlug(found.segment);
  return slug && `https://www.linkedin.com/in/${slug}/`;
}

/** https://www.linkedin.com/sales/lead/<id>/ (or sales/people) for a Sales Navigator lead URL; undefined otherwise. */
export function normalizeSalesNavigatorUrl(text: string): string | undefined {
  const found = parts(text);
  if (!found || found.kind === 'in' || !/^[A-Za-z0-9_,-]+$/.test(found.segment)) return undefined;
  return `https://www.linkedin.com/${found.kind}/${found.segment}/`;
}

/** A profile URL in its canonical form, the key invitations, connections and threads are matched by; undefined when it is not a profile URL. */
export const normaliseProfileUrl = normalizeLinkedInUrl;
