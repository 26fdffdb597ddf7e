import { createHmac, timingSafeEqual } from 'node:crypto';
import { NonRetriableError } from '../../engine/sdk.ts';

/**
 * The tokens in the links of an email: /u/<token> to unsubscribe (naming an email_addresses
 * row), /c/<token> for a click (an email_links row), /r/<token> for the landing page of the
 * report link (an email_outbox row: the email whose report it offers). A token carries no personal data: one byte for the kind, the 16 bytes of a uuid (the
 * recipient's row, never the address), the day it was issued, and an HMAC-SHA256 over
 * those, cut to 128 bits; 37 bytes in all, base64url. Only its one canonical spelling is
 * accepted, so no two spellings of one token exist.
 */

export type LinkKind = 'u' | 'c' | 'r';

export interface LinkClaim {
  kind: LinkKind;
  /** A uuid: whose link it is (the row the page looks up). */
  id: string;
  /** Days since 1970-01-01 (UTC) when it was issued. */
  day: number;
}

const KINDS: readonly LinkKind[] = ['u', 'c', 'r'];
const PAYLOAD_BYTES = 1 + 16 + 4;
const MAC_BYTES = 16;
const TOKEN = /^[A-Za-z0-9_-]{50}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DAY_MS = 86_400_000;

function mac(secret: string, payload: Buffer): Buffer {
  return createHmac('sha256', secret).update('flows-link-v1\0').update(payload).digest().subarray(0, MAC_BYTES);
}

export function signLink(secret: string, claim: { kind: LinkKind; id: string; issuedAt: Date }): string {
  if (!secret) throw new NonRetriableError('no secret to sign the link with');
  if (!UUID.test(claim.id)) throw new NonRetriableError(`a link names a uuid, got "${claim.id}"`);
  const payload = Buffer.alloc(PAYLOAD_BYTES);
  payload.write(claim.kind, 0, 'latin1');
  Buffer.from(claim.id.replaceAll('-', ''), 'hex').copy(payload, 1);
  payload.writeUInt32BE(Math.floor(claim.issuedAt.getTime() / DAY_MS), 17);
  return Buffer.concat([payload, mac(secret, payload)]).toString('base64url');
}

/** The claim of a token signed with `secret`; undefined for anything else (tampered, cut, unknown kind, no secret). */
export function readLink(secret: string, token: string): LinkClaim | undefined {
  if (!secret || !TOKEN.test(token)) return undefined;
  const bytes = Buffer.from(token, 'base64url');
  if (bytes.length !== PAYLOAD_BYTES + MAC_BYTES || bytes.toString('base64url') !== token) return undefined;
  const payload = bytes.subarray(0, PAYLOAD_BYTES);
  if (!timingSafeEqual(bytes.subarray(PAYLOAD_BYTES), mac(secret, payload))) return undefined;
  const kind = KINDS.find((k) => k === String.fromCharCode(payload[0]!));
  if (!kind) return undefined;
  const hex = payload.subarray(1, 17).toString('hex');
  const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { kind, id, day: payload.readUInt32BE(17) };
}
