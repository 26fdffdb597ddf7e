import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Fault, FaultControl } from '../sandbox/faults.ts';
import { type HttpFaultOptions, httpFaults } from '../sandbox/http-faults.ts';
import { SEMRUSH_UNITS_PER_LINE, type SemrushReportType } from './client.ts';

/**
 * A SEMrush Analytics API v3 on loopback that speaks its wire protocol: GET / with type, key,
 * domain, database, display_limit, export_columns and export_escape; `;`-separated CSV with
 * human headers; `ERROR <code> :: <MESSAGE>` lines, with HTTP 200 like the real API (403 for
 * ERROR 132, as observed). Every number comes from sha256 of the domain, so the same domain
 * always gives the same answer and rows for display_limit=5 are the first five of 10. The
 * numbers hold together like a real domain's: a keyword's share of the traffic is its
 * visits (its searches times the click rate of its position) over the domain's traffic, the
 * shares fall as fast as that domain's traffic is concentrated, and add up to under 100.
 *
 * Unlike the real API, it insists on display_limit: SEMrush defaults to 10,000 lines, and a
 * client that forgets the limit should fail here rather than spend 100,000 units there.
 */
export interface SemrushSandboxOptions {
  /** The one API key it accepts (default SANDBOX_KEY). */
  key?: string;
  /**
   * Latency, 429s, 500s, silence, garbled reports (connectors/sandbox/faults.ts), decided
   * after the request is checked; `{ keys }` are domains. Changeable later with `faults.set()`.
   */
  faults?: HttpFaultOptions;
  /** How a malformed report is garbled: a line missing a field (default) or a header whose last column was not asked for. */
  malformedAs?: 'columns' | 'header';
  /** Answer ERROR 50 :: NOTHING FOUND for these domains (and for any *.invalid). */
  unknownDomains?: string[];
  /** API units the key may spend; per-line reports are cut to what is left, then ERROR 132. */
  unitsBalance?: number;
}

/** One request as the sandbox saw it; the key itself is never kept. */
export interface SandboxRequest {
  type: string | null;
  domain: string | null;
  database: string | null;
  displayLimit: string | null;
  exportColumns: string | null;
  keyAccepted: boolean;
  status: number;
  /** "12 lines", "ERROR 50 :: NOTHING FOUND", "429", "held" ... */
  answer: string;
  lines: number;
  units: number;
}

export interface SemrushSandbox {
  url: string;
  /** The faults it injects, changeable while it runs. */
  readonly faults: FaultControl<HttpFaultOptions>;
  readonly requests: readonly SandboxRequest[];
  /** Units spent by all answers so far. */
  readonly unitsSpent: number;
  close(): Promise<void>;
}

export const SANDBOX_KEY = 'sandbox-0123456789abcdef';

/** Column headers by export_columns code, per report, as SEMrush writes them. */
const HEADERS: Record<SemrushReportType, Record<string, string>> = {
  domain_rank: {
    Db: 'Database', Dn: 'Domain', Rk: 'Rank', Or: 'Organic Keywords', Ot: 'Organic Traffic', Oc: 'Organic Cost',
    Ad: 'Adwords Keywords', At: 'Adwords Traffic', Ac: 'Adwords Cost',
  },
  domain_organic: {
    Ph: 'Keyword', Po: 'Position', Pp: 'Previous Position', Pd: 'Position Difference', Nq: 'Search Volume', Cp: 'CPC',
    Ur: 'Url', Tr: 'Traffic (%)', Tc: 'Traffic Cost (%)', Co: 'Competition', Nr: 'Number of Results', Td: 'Trends',
  },
  domain_organic_organic: {
    Dn: 'Domain', Cr: 'Competitor Relevance', Np: 'Common Keywords', Or: 'Organic Keywords', Ot: 'Organic Traffic',
    Oc: 'Organic Cost', Ad: 'Adwords Keywords',
  },
  domain_adwords: {
    Ph: 'Keyword', Po: 'Position', Pp: 'Previous Position', Pd: 'Position Difference', Nq: 'Search Volume', Cp: 'CPC',
    Vu: 'Visible Url', Ur: 'Url', Tr: 'Traffic (%)', Tc: 'Traffic Cost', Co: 'Competition', Nr: 'Number of Results', Td: 'Trends',
  },
};

/** What SEMrush sends when export_columns is absent. */
const DEFAULT_COLUMNS: Record<SemrushReportType, string> = {
  domain_rank: 'Dn,Rk,Or,Ot,Oc,Ad,At,Ac',
  domain_organic: 'Ph,Po,Pp,Pd,Nq,Cp,Ur,Tr,Tc,Co,Nr,Td',
  domain_organic_organic: 'Dn,Cr,Np,Or,Ot,Oc,Ad',
  domain_adwords: 'Ph,Po,Pp,Pd,Nq,Cp,Vu,Tr,Tc,Co,Nr,Td',
};

const isReport = (type: string): type is SemrushReportType => type in HEADERS;

type Row = Record<string, string | number>;

/** A reproducible random stream: sha256 of the domain, then of the stream's name. */
function randomOf(domain: string, name: string): () => number {
  const seed = createHash('sha256').update(createHash('sha256').update(domain).digest()).update(name).digest();
  let a = seed.readUInt32BE(0);
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(r: () => number, list: readonly T[]): T => list[Math.floor(r() * list.length)]!;
const int = (r: () => number, min: number, max: number) => min + Math.floor(r() * (max - min + 1));
const fixed2 = (n: number) => n.toFixed(2);

const VOLUMES = [10, 20, 30, 50, 70, 90, 110, 140, 210, 320, 480, 720, 1000, 1300, 1900, 2900, 4400, 6600, 9900, 14800, 22200, 33100, 49500, 74000, 110000];
const INTENTS = ['pricing', 'reviews', 'alternatives', 'login', 'free trial', 'api', 'tutorial', 'discount code', 'support', 'integrations', 'how to use', 'templates', 'comparison', 'features', 'download'];
const TOPICS = ['seo tools', 'keyword research', 'rank tracker', 'backlink checker', 'site audit', 'competitor analysis', 'ppc tool', 'content planner', 'traffic analytics', 'serp checker'];
const SYLLABLES = ['lo', 'ra', 'vix', 'ten', 'qua', 'mar', 'zen', 'pol', 'dri', 'sa', 'kor', 'nu', 'bel', 'fy', 'tro'];
const TLDS = ['com', 'io', 'net', 'co', 'org'];

function profileOf(domain: string) {
  const r = randomOf(domain, 'profile');
  const organicKeywords = int(r, 30, 60_000);
  const organicTraffic = Math.floor(organicKeywords * (0.5 + r() * 20));
  const adwordsKeywords = r() < 0.25 ? 0 : int(r, 5, 4000);
  const adwordsTraffic = Math.floor(adwordsKeywords * (1 + r() * 30));
  return {
    rank: Math.max(1, Math.floor(200_000_000 / (organicTraffic + 50))),
    organicKeywords,
    organicTraffic,
    organicCost: Math.floor(organicTraffic * (0.2 + r() * 2)),
    adwordsKeywords,
    adwordsTraffic,
    adwordsCost: Math.floor(adwordsTraffic * (0.5 + r() * 3)),
    competitors: int(r, 5, 400),
  };
}

const stemOf = (domain: string) => domain.replace(/^www\./, '').split('.')[0]!.replace(/-/g, ' ');
const trends = (r: () => number) => Array.from({ length: 12 }, () => fixed2(Math.round(r() * 100) / 100)).join(',');

/** Keyword i of a domain; row 4 holds a `;`, as real keywords sometimes do. */
function keywords(domain: string, kind: string, count: number): string[] {
  const stem = stemOf(domain);
  const seen = new Set<string>();
  return Array.from({ length: count }, (_, i) => {
    const r = randomOf(domain, `${kind}-keyword:${i}`);
    let keyword = i === 0 ? stem : i === 4 ? `${stem} pros; cons` : r() < 0.5 ? `${stem} ${pick(r, INTENTS)}` : `${pick(r, TOPICS)} ${pick(r, INTENTS)}`;
    if (seen.has(keyword)) keyword = `${keyword} ${pick(r, ['online', 'guide', 'uk', 'free', '2025'])} ${i}`;
    seen.add(keyword);
    return keyword;
  });
}

/** Share of a result page's searches that click the result at `position` (organic, or an ad). */
function clickRate(position: number, paid: boolean): number {
  if (paid) return [0.06, 0.04, 0.03, 0.02][position - 1] ?? 0.01;
  return [0.28, 0.15, 0.1, 0.07, 0.05, 0.04, 0.03, 0.025, 0.02, 0.018][position - 1] ?? (position <= 20 ? 0.01 : 0.002);
}

/**
 * Row i's share (0..1) of the domain's organic or paid traffic: a geometric series whose first
 * share and decay are the domain's own, adding up to at most `reach` of the whole.
 */
function shareOf(domain: string, kind: string, i: number): number {
  const r = randomOf(domain, `${kind}-shares`);
  const reach = 0.15 + r() * 0.35;
  const decay = 0.7 + r() * 0.25;
  return reach * (1 - decay) * decay ** i;
}

/** The SEMrush volume (one of VOLUMES) nearest above what `visits` need at `rate`. */
function volumeFor(visits: number, rate: number): number {
  const needed = visits / rate;
  return VOLUMES.find((v) => v >= needed) ?? Math.ceil(needed / 10_000) * 10_000;
}

function reportRows(type: SemrushReportType, domain: string, count: number): Row[] {
  const p = profileOf(domain);
  if (type === 'domain_rank') {
    return [{ Db: 'us', Dn: domain, Rk: p.rank, Or: p.organicKeywords, Ot: p.organicTraffic, Oc: p.organicCost, Ad: p.adwordsKeywords, At: p.adwordsTraffic, Ac: p.adwordsCost }];
  }
  if (type === 'domain_organic_organic') {
    const seen = new Set([domain]);
    return Array.from({ length: Math.min(count, p.competitors) }, (_, i) => {
      const r = randomOf(domain, `competitor:${i}`);
      let name = `${pick(r, SYLLABLES)}${pick(r, SYLLABLES)}${pick(r, SYLLABLES)}.${pick(r, TLDS)}`;
      if (seen.has(name)) name = `${name.split('.')[0]}${i}.${name.split('.')[1]}`;
      seen.add(name);
      const organicKeywords = int(r, 50, 90_000);
      const organicTraffic = Math.floor(organicKeywords * (0.5 + r() * 15));
      return {
        Dn: name,
        Cr: fixed2(0.6 * 0.93 ** i),
        Np: Math.min(organicKeywords, int(r, 10, Math.max(10, Math.floor(p.organicKeywords / (i + 2))))),
        Or: organicKeywords,
        Ot: organicTraffic,
        Oc: Math.floor(organicTraffic * (0.2 + r() * 2)),
        Ad: r() < 0.4 ? 0 : int(r, 1, 3000),
      };
    });
  }
  const paid = type === 'domain_adwords';
  const available = paid ? p.adwordsKeywords : p.organicKeywords;
  const n = Math.min(count, available);
  return keywords(domain, paid ? 'paid' : 'organic', n).map((keyword, i) => {
    const r = randomOf(domain, `${type}:${i}`);
    const position = paid ? int(r, 1, 8) : i === 0 ? 1 : int(r, 1, Math.min(100, 3 + 2 * i));
    const previous = r() < 0.15 ? 0 : Math.max(1, position + int(r, -5, 5));
    const share = shareOf(domain, paid ? 'paid' : 'organic', i);
    const visits = share * (paid ? p.adwordsTraffic : p.organicTraffic);
    const traffic = share * 100;
    const slug = keyword.replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
    const row: Row = {
      Ph: keyword,
      Po: position,
      Pp: previous,
      Pd: previous === 0 ? 0 : previous - position,
      Nq: volumeFor(visits, clickRate(position, paid)),
      Cp: fixed2(r() * 18),
      Ur: `https://www.${domain}/${paid ? 'lp/' : ''}${slug}`,
      Tr: fixed2(traffic),
      Co: fixed2(r()),
      Nr: int(r, 1000, 900_000_000),
      Td: trends(r),
    };
    if (paid) {
      row.Vu = r() < 0.2 ? '' : `www.${domain}/`;
      row.Tc = Math.floor(traffic * 40 * r());
    } else {
      row.Tc = fixed2(traffic * (0.5 + r() * 0.8));
    }
    return row;
  });
}

const quote = (value: string) => `"${value.replace(/"/g, '""')}"`;

export async function startSemrushSandbox(options: SemrushSandboxOptions = {}): Promise<SemrushSandbox> {
  const key = options.key ?? SANDBOX_KEY;
  const requests: SandboxRequest[] = [];
  const unknown = new Set(options.unknownDomains ?? []);
  const faults = httpFaults(options.faults, {
    throttled: (seconds) => text(429, 'Too Many Requests', { 'retry-after': String(seconds) }),
    failed: (status) => text(status, 'Internal Server Error'),
    garble: options.malformedAs === 'header' ? unaskedColumn : missingField,
  });
  let spent = 0;

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://sandbox');
    const q = (name: string) => url.searchParams.get(name);
    const seen: SandboxRequest = {
      type: q('type'),
      domain: q('domain'),
      database: q('database'),
      displayLimit: q('display_limit'),
      exportColumns: q('export_columns'),
      keyAccepted: q('key') === key,
      status: 0,
      answer: '',
      lines: 0,
      units: 0,
    };
    requests.push(seen);

    const reply = (status: number, body: string, fault?: Fault) => {
      seen.status = status;
      seen.answer ||= body.startsWith('ERROR') ? body : String(status);
      faults.send(res, text(status, body), fault);
    };
    const error = (line: string, status = 200) => reply(status, line);

    if (url.pathname !== '/') return reply(404, 'Not Found');
    if (req.method !== 'GET') return error('ERROR 48 :: REQUEST METHOD NOT ALLOWED, USE GET');
    if (!q('key')) return error('ERROR 122 :: WRONG FORMAT OR EMPTY KEY');
    if (!seen.keyAccepted) return error('ERROR 120 :: WRONG KEY - ID PAIR');
    const type = q('type');
    if (!type) return error('ERROR 41 :: MANDATORY PARAMETER type NOT SET OR EMPTY');
    if (!isReport(type)) return error(`ERROR 10000 :: Wrong parameter 'type'. The sandbox serves ${Object.keys(HEADERS).join(', ')}.`);
    const domain = q('domain')?.trim().toLowerCase();
    if (!domain) return error('ERROR 42 :: MANDATORY PARAMETER domain NOT SET OR EMPTY');
    if (!q('database')) return error('ERROR 46 :: MANDATORY PARAMETER database NOT SET OR EMPTY');
    const limitText = q('display_limit');
    if (limitText === null || limitText === '') return error("ERROR 10013 :: Wrong parameter 'display_limit'. The required parameter is not specified.");
    if (!/^\d+$/.test(limitText) || Number(limitText) > 4_000_000) {
      return error("ERROR 10000 :: Wrong parameter 'display_limit'. Expected a whole number from 0 to 4000000.");
    }
    const limit = Math.min(Number(limitText) || 10_000, 100_000);
    const codes = (q('export_columns') || DEFAULT_COLUMNS[type]).split(',').map((c) => c.trim());
    const unknownCode = codes.find((c) => !(c in HEADERS[type]));
    if (unknownCode !== undefined) return error(`ERROR 10000 :: Wrong parameter 'export_columns'. Unknown column '${unknownCode}' for ${type}.`);

    // A fault is decided once the request is understood, before any unit is spent.
    const fault = faults.decide({ key: domain, identity: `${type}|${domain}|${q('database')}` });
    const injected = faults.intercept(res, fault);
    if (injected) {
      seen.answer = injected;
      seen.status = Number(injected) || 0;
      return;
    }
    const price = SEMRUSH_UNITS_PER_LINE[type];
    const left = options.unitsBalance === undefined ? Infinity : options.unitsBalance - spent;
    if (left < price) return error('ERROR 132 :: API UNITS BALANCE IS ZERO', 403);
    if (unknown.has(domain) || domain.endsWith('.invalid')) return error('ERROR 50 :: NOTHING FOUND');

    const rows = reportRows(type, domain, Math.min(limit, Math.floor(left / price)));
    if (!rows.length) return error('ERROR 50 :: NOTHING FOUND');
    const escape = q('export_escape') === '1';
    const line = (fields: string[]) => (escape ? fields.map(quote) : fields).join(';');
    const header = codes.map((c) => HEADERS[type][c]!);
    const lines = rows.map((row) => codes.map((c) => String(row[c] ?? '')));

    spent += rows.length * price;
    seen.lines = rows.length;
    seen.units = rows.length * price;
    seen.answer = rows.length === 1 ? '1 line' : `${rows.length} lines`;
    reply(200, [line(header), ...lines.map(line)].join('\r\n'), fault);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    faults: faults.control,
    get unitsSpent() {
      return spent;
    },
    close: () =>
      new Promise((resolve) => {
        faults.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const text = (status: number, body: string, headers: Record<string, string> = {}) => ({ status, body, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers } });

/** A report whose second data line (or only one) lost its last field. */
function missingField(body: string): string {
  const lines = body.split('\r\n');
  const at = Math.min(2, lines.length - 1);
  lines[at] = lines[at]!.slice(0, Math.max(0, lines[at]!.lastIndexOf(';')));
  return lines.join('\r\n');
}

/** A report whose header's last column is one nobody asked for. */
function unaskedColumn(body: string): string {
  const lines = body.split('\r\n');
  const fields = lines[0]!.split(';');
  fields[fields.length - 1] = fields.at(-1)!.startsWith('"') ? '"Timestamp"' : 'Timestamp';
  lines[0] = fields.join(';');
  return lines.join('\r\n');
}
