import { BlockList, isIP } from 'node:net';
import type { EngineConfig } from '../../engine/sdk.ts';
import { type ClickSettings, emailSettings } from './settings.ts';

/**
 * Telling a person's click on an email's link from a machine's fetch of it.
 *
 * Mail security gateways (Microsoft Defender Safe Links, Proofpoint URL Defense, Mimecast,
 * Barracuda, Gmail) fetch every link of a message as it arrives, from their own networks,
 * most with an ordinary browser's user agent; in B2B mail that is 10 to 30% of all clicks.
 * The usual three tests each miss them: time since the *send* (the scan comes after the
 * queue and the transit, at delivery, and can come minutes later), a list of single
 * addresses (the scanners rotate through whole networks), and a list of user agents (most
 * send a real browser's). So the rules look at what a person cannot do: send a HEAD, follow
 * a link nobody can see, fetch two links of one email within seconds, or come from a
 * network that only ever filters mail.
 *
 * Every rule is evaluated and what fired is kept in `signals`; the class is the first that
 * fired in this order, the surest first:
 *
 * - head: a HEAD request. A browser following a link sends GET; link checkers send HEAD.
 * - honeypot: the email's hidden link, which no person can see to click.
 * - prefetch: a speculative fetch (Sec-Purpose/Purpose: prefetch, X-Moz, X-Purpose): a
 *   browser or mail client loading ahead, not a click.
 * - user_agent: no user agent at all, a bot by isbot's maintained list, or a scanner's own
 *   name in it (SCANNER_AGENTS).
 * - network: the address is in a network of link scanners (SCANNER_NETWORKS plus
 *   email.clicks.scanner_networks), IPv4 or IPv6.
 * - burst: another link of the same email was fetched within burst_seconds (default 10):
 *   a walk over the links. A person clicks one; the same link again is still a person.
 * - too_soon: within min_seconds_after_delivery (default 30) of the moment the receiving
 *   server accepted the email (sent_at). This is the weak rule. It decides only when no other
 *   rule did, so it never outvotes the others; its job is the first fetch of a scan, which
 *   no burst can show yet because nothing else of the email was fetched. On its own it says
 *   "too early to be sure", not "a scanner": in confirm mode it changes nothing, and in
 *   direct mode it holds back the automatic report, so that a quick person gets the landing
 *   page's button instead (one press) while a scanner, which never presses, costs nothing.
 *   Later fetches are judged afresh: a too_soon fetch is no mark against the email.
 * - human: none of the above.
 *
 * The cost of a mistake is lopsided here, and the rules lean on it: a machine taken for a
 * person spends SEMrush units and Claude tokens on a report nobody asked for, while a person
 * taken for a machine still reaches the landing page and gets the report with one press.
 */

export type ClickClass = 'head' | 'honeypot' | 'prefetch' | 'user_agent' | 'network' | 'burst' | 'too_soon' | 'human';

export const CLICK_CLASSES: readonly ClickClass[] = ['head', 'honeypot', 'prefetch', 'user_agent', 'network', 'burst', 'too_soon', 'human'];

/** One fetch of a link, as the click page saw it. */
export interface ClickObservation {
  method: string;
  /** The visitor's address (IPv4, IPv6 or IPv4-mapped IPv6); null when unknown. */
  ip: string | null;
  userAgent: string | null;
  /** Request headers, names lower-cased. */
  headers: Record<string, string | string[] | undefined>;
  at: Date;
}

/** What is known about the link and its email when it is fetched. */
export interface ClickContext {
  /** The link's purpose: report, honeypot ... */
  purpose: string;
  linkId: string;
  /** When the receiving server accepted the email; null when it was never sent. */
  sentAt: Date | null;
  /** The earlier fetches of any link of the same email. */
  earlier: readonly { at: Date; linkId: string; ip: string | null }[];
}

export interface ScannerNetwork {
  cidr: string;
  /** Whose network it is (Microsoft 365 Exchange Online Protection ...). */
  label: string;
}

export interface ClickRules {
  burst_seconds: number;
  min_seconds_after_delivery: number;
  networks: readonly { cidr: string; list: BlockList }[];
  /** isbot's match of a user agent against its maintained list (the pattern it matched, or null). */
  botMatch: (userAgent: string) => string | null;
  /** Entries of email.clicks.scanner_networks that are no network (and so match nothing). */
  skipped: string[];
}

export interface ClickVerdict {
  class: ClickClass;
  signals: Record<string, unknown>;
}

/**
 * The networks of link scanners shipped with flows: only mail-filtering networks, the tier
 * that scans mail on arrival and from which no person reads mail or browses. Whole clouds
 * (Azure, Google Cloud, AWS) are left out on purpose: people browse from them too (Windows
 * 365, virtual desktops, corporate NAT), and a click from there is judged by the other rules.
 * So are vendors whose browser isolation renders a person's click from the vendor's own
 * network (Proofpoint, Mimecast): their scanners are caught by their user agent, the burst
 * and the time rule. email.clicks.scanner_networks adds to this list.
 */
export const SCANNER_NETWORKS: readonly ScannerNetwork[] = [
  // Microsoft 365 Exchange Online Protection (*.protection.outlook.com): mail flow, Safe
  // Links rewriting and delivery-time URL detonation. Published by Microsoft in the
  // "Microsoft 365 URLs and IP address ranges" list (Exchange Online, mail flow endpoint
  // sets), the same networks as spf.protection.outlook.com.
  { cidr: '40.92.0.0/15', label: 'Microsoft 365 Exchange Online Protection' },
  { cidr: '40.107.0.0/16', label: 'Microsoft 365 Exchange Online Protection' },
  { cidr: '52.100.0.0/14', label: 'Microsoft 365 Exchange Online Protection' },
  { cidr: '52.238.78.88/32', label: 'Microsoft 365 Exchange Online Protection' },
  { cidr: '104.47.0.0/17', label: 'Microsoft 365 Exchange Online Protection' },
  { cidr: '2a01:111:f400::/48', label: 'Microsoft 365 Exchange Online Protection' },
  { cidr: '2a01:111:f403::/48', label: 'Microsoft 365 Exchange Online Protection' },
  // Microsoft's network that senders report Safe Links fetching every link of a message from
  // at delivery (40.94.x.x in their logs); Microsoft serves no person's browsing from it.
  { cidr: '40.94.0.0/16', label: 'Microsoft 365 Safe Links' },
  // Barracuda: the Email Security Service networks of its SPF record
  // (spf.ess.barracudanetworks.com), and the Email Gateway Defense ranges its filtering layer
  // works from, one block per region, published by Barracuda ("Email Gateway Defense IP ranges").
  { cidr: '64.235.144.0/20', label: 'Barracuda Email Security Service' },
  { cidr: '209.222.80.0/21', label: 'Barracuda Email Security Service' },
  { cidr: '3.24.133.128/25', label: 'Barracuda Email Gateway Defense' },
  { cidr: '15.222.16.128/25', label: 'Barracuda Email Gateway Defense' },
  { cidr: '35.157.190.224/27', label: 'Barracuda Email Gateway Defense' },
  { cidr: '18.185.115.192/26', label: 'Barracuda Email Gateway Defense' },
  { cidr: '18.184.203.224/27', label: 'Barracuda Email Gateway Defense' },
  { cidr: '13.200.136.128/25', label: 'Barracuda Email Gateway Defense' },
  { cidr: '35.176.92.96/27', label: 'Barracuda Email Gateway Defense' },
  { cidr: '18.133.136.128/26', label: 'Barracuda Email Gateway Defense' },
  { cidr: '18.133.136.96/27', label: 'Barracuda Email Gateway Defense' },
];

/**
 * Names scanners put in their user agent that isbot's list does not know. Lower case;
 * matched anywhere in the user agent.
 */
export const SCANNER_AGENTS: readonly string[] = ['proofpoint', 'urldefense', 'mimecast', 'barracuda', 'safelinks', 'ironport', 'forcepoint', 'appriver', 'trendmicro'];

/** The headers browsers mark a speculative (not clicked) fetch with, and the values that mean one. */
const PREFETCH_HEADERS: readonly [string, RegExp][] = [
  ['sec-purpose', /prefetch|prerender/i],
  ['purpose', /prefetch|preview/i],
  ['x-purpose', /prefetch|preview/i],
  ['x-moz', /prefetch/i],
];

const DEFAULTS = { burst_seconds: 10, min_seconds_after_delivery: 30 };

/** A network as a matcher; undefined for text that is not one. */
function networkOf(cidr: string): BlockList | undefined {
  const [address = '', bits = '', extra] = cidr.trim().split('/');
  const family = isIP(address);
  const prefix = Number(bits);
  if (!family || extra !== undefined || !/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128)) return undefined;
  const list = new BlockList();
  list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
  return list;
}

/**
 * The rules from the email.clicks settings: the defaults, and the shipped networks plus the
 * configured ones. isbot's list is loaded here, on the first rules made, not when the daemon starts.
 */
export async function scannerRules(settings: ClickSettings = {}): Promise<ClickRules> {
  const { isbotMatch } = await import('isbot');
  const networks: ClickRules['networks'][number][] = [];
  const skipped: string[] = [];
  for (const cidr of [...SCANNER_NETWORKS.map((n) => n.cidr), ...(settings.scanner_networks ?? [])]) {
    const list = networkOf(cidr);
    if (list) networks.push({ cidr: cidr.trim(), list });
    else skipped.push(cidr);
  }
  return {
    burst_seconds: settings.burst_seconds ?? DEFAULTS.burst_seconds,
    min_seconds_after_delivery: settings.min_seconds_after_delivery ?? DEFAULTS.min_seconds_after_delivery,
    networks,
    botMatch: isbotMatch,
    skipped,
  };
}

export const clickRules = (config: EngineConfig): Promise<ClickRules> => scannerRules(emailSettings(config)?.clicks);

/** confirm (default) or direct: whether a human click is email.clicked at once. */
export const clickMode = (config: EngineConfig): 'confirm' | 'direct' => emailSettings(config)?.clicks?.mode ?? 'confirm';

/** The scanner network an address is in, if any; IPv4-mapped IPv6 addresses are taken as IPv4. */
function scannerNetwork(ip: string | null, rules: ClickRules): string | undefined {
  if (!ip) return undefined;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const address = mapped ? mapped[1]! : ip.replace(/%.*$/, '');
  const family = isIP(address);
  if (!family) return undefined;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  return rules.networks.find((n) => n.list.check(address, type))?.cidr;
}

/** What gives the user agent away as a machine, if anything. */
function machineAgent(userAgent: string | null, rules: ClickRules): string | undefined {
  const ua = userAgent?.trim() ?? '';
  if (!ua) return 'none';
  const lower = ua.toLowerCase();
  const scanner = SCANNER_AGENTS.find((name) => lower.includes(name));
  if (scanner) return scanner;
  const bot = rules.botMatch(ua);
  return bot ? `isbot: ${bot}` : undefined;
}

function prefetchHeader(headers: ClickObservation['headers']): string | undefined {
  for (const [name, pattern] of PREFETCH_HEADERS) {
    const value = headers[name];
    const text = Array.isArray(value) ? value.join(', ') : value;
    if (text && pattern.test(text)) return `${name}: ${text}`;
  }
  return undefined;
}

/** Other links of the email fetched within burst_seconds before this fetch: how many links in all, over how long. */
function burstOf(observation: ClickObservation, context: ClickContext, rules: ClickRules): { links: number; within_seconds: number } | undefined {
  const windowMs = rules.burst_seconds * 1000;
  const now = observation.at.getTime();
  const near = context.earlier.filter((e) => e.linkId !== context.linkId && now - e.at.getTime() <= windowMs && now - e.at.getTime() >= -windowMs);
  if (!near.length) return undefined;
  const links = new Set([context.linkId, ...near.map((e) => e.linkId)]).size;
  const earliest = Math.min(...near.map((e) => e.at.getTime()));
  return { links, within_seconds: Math.round((now - earliest) / 100) / 10 };
}

/** The class of one fetch of a link, with every signal that fired; pure. */
export function classifyClick(observation: ClickObservation, context: ClickContext, rules: ClickRules): ClickVerdict {
  const signals: Record<string, unknown> = {};
  const fired: ClickClass[] = [];
  const fire = (cls: ClickClass, key: string, value: unknown) => {
    fired.push(cls);
    signals[key] = value;
  };
  if (observation.method.toUpperCase() === 'HEAD') fire('head', 'head', true);
  if (context.purpose === 'honeypot') fire('honeypot', 'honeypot', true);
  const prefetch = prefetchHeader(observation.headers);
  if (prefetch) fire('prefetch', 'prefetch', prefetch);
  const agent = machineAgent(observation.userAgent, rules);
  if (agent) fire('user_agent', 'user_agent', agent);
  const network = scannerNetwork(observation.ip, rules);
  if (network) fire('network', 'network', network);
  const burst = burstOf(observation, context, rules);
  if (burst) fire('burst', 'burst', burst);
  const seconds = context.sentAt ? Math.round((observation.at.getTime() - context.sentAt.getTime()) / 100) / 10 : null;
  if (seconds !== null && seconds < rules.min_seconds_after_delivery) fire('too_soon', 'too_soon', true);
  signals.seconds_after_delivery = seconds;
  const cls = CLICK_CLASSES.find((c) => fired.includes(c)) ?? 'human';
  return { class: cls, signals };
}
