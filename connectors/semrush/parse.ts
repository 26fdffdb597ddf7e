import { NonRetriableError } from '../../engine/sdk.ts';

/**
 * Reading SEMrush Analytics API v3 answers. Pure: text in, typed rows (or a typed error) out.
 *
 * A report answer is `;`-separated CSV: a header line of human column names ("Keyword;
 * Position;..."), then one line per result. With `export_escape=1` every field is wrapped in
 * double quotes, so a field may hold a `;`. An error is a single plain-text line,
 * `ERROR 50 :: NOTHING FOUND`, usually with HTTP 200.
 */

export type SemrushReportType = 'domain_rank' | 'domain_organic' | 'domain_organic_organic' | 'domain_adwords';

/** One row of `domain_rank` (Domain Overview, one database). */
export interface DomainRankRow {
  domain: string;
  rank: number | null;
  organicKeywords: number | null;
  organicTraffic: number | null;
  /** USD a month the organic traffic would cost in Google Ads. */
  organicCost: number | null;
  adwordsKeywords: number | null;
  adwordsTraffic: number | null;
  adwordsCost: number | null;
}

/** One row of `domain_organic` (Domain Organic Search Keywords). */
export interface OrganicKeywordRow {
  keyword: string;
  position: number | null;
  /** 0 when the domain did not rank for the keyword before. */
  previousPosition: number | null;
  searchVolume: number | null;
  cpc: number | null;
  url: string;
  trafficPercent: number | null;
  trafficCostPercent: number | null;
  /** Competitive density of advertisers, 0..1. */
  competition: number | null;
  results: number | null;
  /** Interest over the last 12 months, oldest first, each 0..1. */
  trends: number[];
}

/** One row of `domain_organic_organic` (Competitors in Organic Search). */
export interface CompetitorRow {
  domain: string;
  /** Competition level, 0..1: how much the two domains' keywords overlap. */
  relevance: number | null;
  commonKeywords: number | null;
  organicKeywords: number | null;
  organicTraffic: number | null;
  organicCost: number | null;
  adwordsKeywords: number | null;
}

/** One row of `domain_adwords` (Domain Paid Search Keywords). */
export interface AdwordsKeywordRow {
  keyword: string;
  position: number | null;
  previousPosition: number | null;
  searchVolume: number | null;
  cpc: number | null;
  /** The URL shown on the ad; often empty. */
  visibleUrl: string;
  url: string;
  trafficPercent: number | null;
  /** Headed "Traffic Cost" in this report (the organic report says "Traffic Cost (%)"). */
  trafficCost: number | null;
  competition: number | null;
  results: number | null;
  trends: number[];
}

export interface SemrushRows {
  domain_rank: DomainRankRow;
  domain_organic: OrganicKeywordRow;
  domain_organic_organic: CompetitorRow;
  domain_adwords: AdwordsKeywordRow;
}

/** A column we ask for: its `export_columns` code and the header names SEMrush gives it. */
interface Column {
  code: string;
  header: string;
  aliases?: string[];
}

interface Cells {
  text(code: string): string;
  num(code: string): number | null;
  trend(code: string): number[];
}

export interface ReportSpec<T extends SemrushReportType> {
  type: T;
  /** What the client sends as `export_columns`, in this order. */
  columns: Column[];
  toRow(cells: Cells): SemrushRows[T];
}

const col = (code: string, header: string, ...aliases: string[]): Column => ({ code, header, aliases });

/** The columns we ask for, per report, and how each line becomes a typed row. */
export const REPORTS: { [T in SemrushReportType]: ReportSpec<T> } = {
  domain_rank: {
    type: 'domain_rank',
    columns: [
      col('Dn', 'Domain'),
      col('Rk', 'Rank'),
      col('Or', 'Organic Keywords'),
      col('Ot', 'Organic Traffic'),
      col('Oc', 'Organic Cost'),
      col('Ad', 'Adwords Keywords'),
      col('At', 'Adwords Traffic'),
      col('Ac', 'Adwords Cost'),
    ],
    toRow: (c) => ({
      domain: c.text('Dn'),
      rank: c.num('Rk'),
      organicKeywords: c.num('Or'),
      organicTraffic: c.num('Ot'),
      organicCost: c.num('Oc'),
      adwordsKeywords: c.num('Ad'),
      adwordsTraffic: c.num('At'),
      adwordsCost: c.num('Ac'),
    }),
  },
  domain_organic: {
    type: 'domain_organic',
    columns: [
      col('Ph', 'Keyword'),
      col('Po', 'Position'),
      col('Pp', 'Previous Position'),
      col('Nq', 'Search Volume'),
      col('Cp', 'CPC'),
      col('Ur', 'Url'),
      col('Tr', 'Traffic (%)'),
      col('Tc', 'Traffic Cost (%)'),
      col('Co', 'Competition'),
      col('Nr', 'Number of Results'),
      col('Td', 'Trends'),
    ],
    toRow: (c) => ({
      keyword: c.text('Ph'),
      position: c.num('Po'),
      previousPosition: c.num('Pp'),
      searchVolume: c.num('Nq'),
      cpc: c.num('Cp'),
      url: c.text('Ur'),
      trafficPercent: c.num('Tr'),
      trafficCostPercent: c.num('Tc'),
      competition: c.num('Co'),
      results: c.num('Nr'),
      trends: c.trend('Td'),
    }),
  },
  domain_organic_organic: {
    type: 'domain_organic_organic',
    columns: [
      col('Dn', 'Domain'),
      col('Cr', 'Competitor Relevance'),
      col('Np', 'Common Keywords'),
      col('Or', 'Organic Keywords'),
      col('Ot', 'Organic Traffic'),
      col('Oc', 'Organic Cost'),
      col('Ad', 'Adwords Keywords'),
    ],
    toRow: (c) => ({
      domain: c.text('Dn'),
      relevance: c.num('Cr'),
      commonKeywords: c.num('Np'),
      organicKeywords: c.num('Or'),
      organicTraffic: c.num('Ot'),
      organicCost: c.num('Oc'),
      adwordsKeywords: c.num('Ad'),
    }),
  },
  domain_adwords: {
    type: 'domain_adwords',
    columns: [
      col('Ph', 'Keyword'),
      col('Po', 'Position'),
      col('Pp', 'Previous Position'),
      col('Nq', 'Search Volume'),
      col('Cp', 'CPC'),
      col('Vu', 'Visible Url'),
      col('Ur', 'Url'),
      col('Tr', 'Traffic (%)'),
      col('Tc', 'Traffic Cost', 'Traffic Cost (%)'),
      col('Co', 'Competition'),
      col('Nr', 'Number of Results'),
      col('Td', 'Trends'),
    ],
    toRow: (c) => ({
      keyword: c.text('Ph'),
      position: c.num('Po'),
      previousPosition: c.num('Pp'),
      searchVolume: c.num('Nq'),
      cpc: c.num('Cp'),
      visibleUrl: c.text('Vu'),
      url: c.text('Ur'),
      trafficPercent: c.num('Tr'),
      trafficCost: c.num('Tc'),
      competition: c.num('Co'),
      results: c.num('Nr'),
      trends: c.trend('Td'),
    }),
  },
};

export const exportColumns = (type: SemrushReportType): string => REPORTS[type].columns.map((c) => c.code).join(',');

/** An `ERROR <code> :: <message>` answer. */
export interface SemrushErrorLine {
  code: number;
  message: string;
}

const ERROR_LINE = /^ERROR\s+(\d+)\s*::\s*(.*)$/s;

/** The error a body carries, if it is one (`ERROR 50 :: NOTHING FOUND`, also `ERROR 50:: ...`). */
export function parseErrorLine(body: string): SemrushErrorLine | undefined {
  const m = ERROR_LINE.exec(body.trim());
  return m ? { code: Number(m[1]), message: m[2]!.trim() } : undefined;
}

/**
 * Splits `;`-separated CSV into records of fields. A field starting with `"` is quoted: `""`
 * inside it is one quote, and a quote not followed by `;` or a line end is kept as text
 * (SEMrush does not always double the quotes inside a keyword like `27" monitor`).
 * Accepts LF and CRLF; ignores a final line end and blank lines.
 */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let fields: string[] = [];
  let field = '';
  let i = 0;
  const atFieldEnd = (j: number) => j >= text.length || text[j] === ';' || text[j] === '\n' || text[j] === '\r';
  const endRecord = () => {
    fields.push(field);
    if (fields.length > 1 || fields[0] !== '') records.push(fields);
    fields = [];
    field = '';
  };
  while (i < text.length) {
    if (field === '' && text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) break;
        const ch = text[i]!;
        if (ch === '"' && text[i + 1] === '"') {
          field += '"';
          i += 2;
        } else if (ch === '"' && atFieldEnd(i + 1)) {
          i++;
          break;
        } else {
          field += ch;
          i++;
        }
      }
      continue;
    }
    const ch = text[i]!;
    if (ch === ';') {
      fields.push(field);
      field = '';
      i++;
    } else if (ch === '\r' || ch === '\n') {
      endRecord();
      i += ch === '\r' && text[i + 1] === '\n' ? 2 : 1;
    } else {
      field += ch;
      i++;
    }
  }
  if (field !== '' || fields.length) endRecord();
  return records;
}

const normalise = (header: string) => header.trim().toLowerCase();

/**
 * Turns a report body into typed rows. Throws NonRetriableError naming the report, the
 * domain, the line and the bad value when the body is not the report that was asked for.
 */
export function parseReport<T extends SemrushReportType>(type: T, body: string, domain: string): SemrushRows[T][] {
  const spec = REPORTS[type] as ReportSpec<T>;
  const where = `SEMrush ${type} for ${domain}`;
  const records = parseCsv(body);
  const header = records[0];
  if (!header) throw new NonRetriableError(`${where}: the answer is empty, expected a header line like "${spec.columns.map((c) => c.header).join(';')}"`);
  const asked = spec.columns.map((c) => c.header).join(';');
  if (header.length !== spec.columns.length) {
    throw new NonRetriableError(`${where}: the header has ${header.length} columns, expected ${spec.columns.length} ("${asked}"), got "${header.join(';').slice(0, 200)}"`);
  }
  const position = new Map<string, number>();
  const names = header.map(normalise);
  for (const column of spec.columns) {
    const at = [column.header, ...(column.aliases ?? [])].map(normalise).map((h) => names.indexOf(h)).find((j) => j >= 0);
    if (at === undefined) {
      throw new NonRetriableError(`${where}: the header has no "${column.header}" column (asked for ${column.code}); expected "${asked}", got "${header.join(';').slice(0, 200)}"`);
    }
    position.set(column.code, at);
  }
  return records.slice(1).map((fields, index) => {
    const line = index + 2;
    if (fields.length !== header.length) {
      throw new NonRetriableError(`${where}: line ${line} has ${fields.length} fields, expected ${header.length} ("${fields.join(';').slice(0, 120)}")`);
    }
    const cell = (code: string) => fields[position.get(code)!]!.trim();
    const number = (code: string, value: string): number => {
      const n = Number(value);
      if (!Number.isFinite(n)) {
        const name = spec.columns.find((c) => c.code === code)!.header;
        throw new NonRetriableError(`${where}: line ${line}, column "${name}": expected a number, got "${value.slice(0, 40)}"`);
      }
      return n;
    };
    return spec.toRow({
      text: cell,
      num: (code) => {
        const value = cell(code);
        return value === '' ? null : number(code, value);
      },
      trend: (code) => {
        const value = cell(code);
        return value === '' ? [] : value.split(',').map((v) => number(code, v.trim()));
      },
    });
  });
}
