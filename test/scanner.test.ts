import { describe, expect, it } from 'vitest';
import { type ClickContext, type ClickObservation, classifyClick, SCANNER_NETWORKS, scannerRules } from '../steps/email/scanner.ts';

/**
 * The scanner rules on traffic as it arrives at a click link: Microsoft Defender Safe Links
 * walking every link of an email seconds after delivery, a Proofpoint fetch, a HEAD, the
 * hidden link, a browser's prefetch, and a person on a phone two hours later.
 */

const SENT = new Date('2026-11-30T09:00:00Z');
const at = (seconds: number) => new Date(SENT.getTime() + seconds * 1000);

const CHROME_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';

const rules = await scannerRules();

function fetchOf(over: Partial<ClickObservation> = {}): ClickObservation {
  return { method: 'GET', ip: '81.2.69.160', userAgent: IPHONE, headers: { accept: 'text/html' }, at: at(7200), ...over };
}

function contextOf(over: Partial<ClickContext> = {}): ClickContext {
  return { purpose: 'report', linkId: 'link-report', sentAt: SENT, earlier: [], ...over };
}

describe('classifyClick', () => {
  it('calls a person on a phone two hours after delivery human', () => {
    const verdict = classifyClick(fetchOf(), contextOf(), rules);
    expect(verdict.class).toBe('human');
    expect(verdict.signals).toEqual({ seconds_after_delivery: 7200 });
    expect(classifyClick(fetchOf({ ip: '2a00:23c8:4e1:f701::1a' }), contextOf(), rules).class).toBe('human');
  });

  it('sees Safe Links walking every link from Microsoft ranges seconds after delivery', () => {
    // The scan: report link at +4s from EOP (IPv4), honeypot at +4.3s, report again from an IPv6 EOP address.
    const first = classifyClick(fetchOf({ ip: '40.107.22.83', userAgent: CHROME_WINDOWS, at: at(4) }), contextOf(), rules);
    expect(first.class).toBe('network');
    expect(first.signals).toMatchObject({ network: '40.107.0.0/16', too_soon: true, seconds_after_delivery: 4 });

    const honeypot = classifyClick(
      fetchOf({ ip: '104.47.17.110', userAgent: CHROME_WINDOWS, at: at(4.3) }),
      contextOf({ purpose: 'honeypot', linkId: 'link-honeypot', earlier: [{ at: at(4), linkId: 'link-report', ip: '40.107.22.83' }] }),
      rules,
    );
    expect(honeypot.class).toBe('honeypot');
    expect(honeypot.signals).toMatchObject({ honeypot: true, network: '104.47.0.0/17', burst: { links: 2 } });

    const again = classifyClick(
      fetchOf({ ip: '2a01:111:f403:c10d::5', userAgent: CHROME_WINDOWS, at: at(6) }),
      contextOf({ earlier: [{ at: at(4), linkId: 'link-report', ip: '40.107.22.83' }, { at: at(4.3), linkId: 'link-honeypot', ip: '104.47.17.110' }] }),
      rules,
    );
    expect(again.class).toBe('network');
    expect(again.signals).toMatchObject({ network: '2a01:111:f403::/48', burst: { links: 2 } });
  });

  it('sees a burst over the links of one email from an address on no list, and only within burst_seconds', async () => {
    const earlier = [{ at: at(300), linkId: 'link-honeypot', ip: '198.51.100.7' }];
    const burst = classifyClick(fetchOf({ ip: '198.51.100.9', userAgent: CHROME_WINDOWS, at: at(302) }), contextOf({ earlier }), rules);
    expect(burst.class).toBe('burst');
    expect(burst.signals).toMatchObject({ burst: { links: 2, within_seconds: 2 } });
    // The same link twice is a person clicking again, not a walk over the links.
    const twice = classifyClick(fetchOf({ at: at(7205) }), contextOf({ earlier: [{ at: at(7200), linkId: 'link-report', ip: '81.2.69.160' }] }), rules);
    expect(twice.class).toBe('human');
    expect(classifyClick(fetchOf({ at: at(311) }), contextOf({ earlier }), rules).class).toBe('human');
    expect(classifyClick(fetchOf({ at: at(311) }), contextOf({ earlier }), await scannerRules({ burst_seconds: 15 })).class).toBe('burst');
  });

  it('sees a Proofpoint fetch, a headless browser, a library and a missing user agent by the user agent', () => {
    const proofpoint = classifyClick(fetchOf({ ip: '67.231.148.20', userAgent: 'Mozilla/5.0 (compatible; Proofpoint URL Defense)', at: at(95) }), contextOf(), rules);
    expect(proofpoint.class).toBe('user_agent');
    expect(proofpoint.signals).toMatchObject({ user_agent: 'proofpoint' });
    const headless = classifyClick(fetchOf({ userAgent: CHROME_WINDOWS.replace('Chrome/', 'HeadlessChrome/') }), contextOf(), rules);
    expect(headless).toMatchObject({ class: 'user_agent', signals: { user_agent: 'isbot: Headless' } });
    expect(classifyClick(fetchOf({ userAgent: 'python-requests/2.32.3' }), contextOf(), rules).class).toBe('user_agent');
    expect(classifyClick(fetchOf({ userAgent: null }), contextOf(), rules)).toMatchObject({ class: 'user_agent', signals: { user_agent: 'none' } });
  });

  it('calls a HEAD head, whoever sends it, and the hidden link honeypot even hours later', () => {
    expect(classifyClick(fetchOf({ method: 'HEAD' }), contextOf(), rules)).toMatchObject({ class: 'head', signals: { head: true } });
    expect(classifyClick(fetchOf(), contextOf({ purpose: 'honeypot' }), rules).class).toBe('honeypot');
  });

  it('calls a speculative fetch prefetch, by any of the headers browsers mark one with', () => {
    for (const headers of [{ 'sec-purpose': 'prefetch' }, { 'sec-purpose': 'prefetch;prerender' }, { purpose: 'prefetch' }, { 'x-moz': 'prefetch' }, { 'x-purpose': 'preview' }]) {
      expect(classifyClick(fetchOf({ headers }), contextOf(), rules).class, JSON.stringify(headers)).toBe('prefetch');
    }
  });

  it('takes too soon after delivery as the weakest rule: only when nothing else decides, and measured from delivery', async () => {
    const soon = classifyClick(fetchOf({ at: at(12) }), contextOf(), rules);
    expect(soon).toEqual({ class: 'too_soon', signals: { too_soon: true, seconds_after_delivery: 12 } });
    expect(classifyClick(fetchOf({ at: at(31) }), contextOf(), rules).class).toBe('human');
    expect(classifyClick(fetchOf({ at: at(31) }), contextOf(), await scannerRules({ min_seconds_after_delivery: 60 })).class).toBe('too_soon');
    // An email not yet accepted anywhere has no delivery to measure from.
    expect(classifyClick(fetchOf({ at: at(1) }), contextOf({ sentAt: null }), rules)).toEqual({ class: 'human', signals: { seconds_after_delivery: null } });
  });

  it('adds the networks of the config to the shipped ones, IPv4-mapped addresses included', async () => {
    const extended = await scannerRules({ scanner_networks: ['198.51.100.0/24', '2001:db8:aa::/48'] });
    expect(classifyClick(fetchOf({ ip: '198.51.100.44' }), contextOf(), extended).signals.network).toBe('198.51.100.0/24');
    expect(classifyClick(fetchOf({ ip: '::ffff:198.51.100.44' }), contextOf(), extended).class).toBe('network');
    expect(classifyClick(fetchOf({ ip: '2001:db8:aa:1::9' }), contextOf(), extended).class).toBe('network');
    expect(classifyClick(fetchOf({ ip: '40.107.1.1' }), contextOf(), extended).class).toBe('network');
    expect(classifyClick(fetchOf({ ip: '198.51.100.44' }), contextOf(), rules).class).toBe('human');
  });

  it('skips an entry that is no network, and says which', async () => {
    const odd = await scannerRules({ scanner_networks: ['300.1.2.0/24', '10.0.0.0/33', '10.1.0.0/16'] });
    expect(odd.skipped).toEqual(['300.1.2.0/24', '10.0.0.0/33']);
    expect(classifyClick(fetchOf({ ip: '10.1.2.3' }), contextOf(), odd).class).toBe('network');
    expect((await scannerRules()).skipped).toEqual([]);
    expect(SCANNER_NETWORKS.length).toBeGreaterThan(5);
  });
});
