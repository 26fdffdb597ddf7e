import { fullFormats } from 'ajv-formats/dist/formats.js';
import { normalizeDomain } from '../domain.ts';

/**
 * Email syntax as mail servers accept it in practice (RFC 5321 and 5322): a dot-atom local
 * part (no leading, trailing or doubled dot; no quoted forms), at most 64 characters, a
 * domain name, at most 254 characters in all.
 */
const DOT_ATOM_ADDRESS = fullFormats.email as RegExp;

export function isValidEmail(text: string): boolean {
  const at = text.lastIndexOf('@');
  if (at < 1 || at > 64 || text.length > 254) return false;
  return DOT_ATOM_ADDRESS.test(text) && normalizeDomain(text.slice(at + 1)) !== undefined;
}
