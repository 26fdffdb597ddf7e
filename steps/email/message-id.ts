import { createHash } from 'node:crypto';

/**
 * The Message-ID of a send, derived from its idempotency key and the sending domain: a resend
 * after a crash carries the same one (so a receiver's duplicate check and the thread of a
 * follow-up hold), and two sends never share one. The one rule for every email step.
 */
export function messageIdFor(key: string, domain: string): string {
  return `<${createHash('sha256').update(key).digest('hex').slice(0, 32)}@${domain}>`;
}
