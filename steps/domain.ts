import { domainToASCII } from 'node:url';

/** A host name as stored and compared: lower-case ASCII (punycode), no scheme, www., port or path. */
export type Domain = string & { readonly __domain: unique symbol };

const HOST = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;

/**
 * The domain in what a person or a form wrote: "https://www.Example.co.uk/pricing",
 * "EXAMPLE.com.", "bücher.de" (stored as xn--bcher-kva.de). Undefined when it is not a
 * domain name at all, so callers can say why they skip it.
 */
export function normalizeDomain(input: unknown): Domain | undefined {
  if (typeof input !== 'string') return undefined;
  let text = input.trim();
  if (!text || /[\s@]/.test(text)) return undefined;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) text = `http://${text}`;
  let host: string;
  try {
    host = new URL(text).hostname;
  } catch {
    return undefined;
  }
  host = domainToASCII(host.replace(/\.$/, '')).toLowerCase();
  if (host.startsWith('www.')) host = host.slice(4);
  return HOST.test(host) ? (host as Domain) : undefined;
}
