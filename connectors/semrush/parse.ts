import { type Info, type Options, parse } from 'csv-parse/sync';
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
  url: string | null;
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
  visibleUrl: string | null;
  url: string | null;
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
  /** The row means nothing without it (its domain or keyword); the others may be missing. */
  required?: boolean;
}

interface Cells {
  /** A required column's text. */
  key(code: string): string;
  /** null when the header lacks the column. */
  text(code: string): string | null;
  /** null when the header lacks the column or the cell is empty. */
  num(code: string): number | null;
  /** [] when the header lacks the column or the cell is empty. */
  trend(code: string): number[];
}

export interface ReportSpec<T extends SemrushReportType> {
  type: T;
  /** What the client sends as `export_columns`, in this order. */
  columns: Column[];
  toRow(cells: Cells): SemrushRows[T];
}

const col = (code: string, header: string, ...aliases: string[]): Column => ({ code, header, aliases });
const keyCol = (code: string, header: string): Column => ({ code, header, required: true });

/** The columns we ask for, per report, and how each line becomes a typed row. */
export const REPORTS: { [T in SemrushReportType]: ReportSpec<T> } = {
  domain_rank: {
    type: 'domain_rank',
    columns: [
      keyCol('Dn', 'Domain'),
      col('Rk', 'Rank'),
      col('Or', 'Organic Keywords'),
      col('Ot', 'Organic Traffic'),
      col('Oc', 'Organic Cost'),
      col('Ad', 'Adwords Keywords'),
      col('At', 'Adwords Traffic'),
      col('Ac', 'Adwords Cost'),
    ],
    toRow: (c) => ({
      domain: c.key('Dn'),
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
      keyCol('Ph', 'Keyword'),
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
      keyword: c.key('Ph'),
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
      keyCol('Dn', 'Domain'),
      col('Cr', 'Competitor Relevance'),
      col('Np', 'Common Keywords'),
      col('Or', 'Organic Keywords'),
      col('Ot', 'Organic Traffic'),
      col('Oc', 'Organic Cost'),
      col('Ad', 'Adwords Keywords'),
    ],
    toRow: (c) => ({
      domain: c.key('Dn'),
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
      keyCol('Ph', 'Keyword'),
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
      keyword: c.key('Ph'),
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

/** csv-parse's reading of a SEMrush answer: `;` between fields, LF or CRLF between records. */
const CSV_OPTIONS: Options = {
  delimiter: ';',
  record_delimiter: ['\r\n', '\n', '\r'],
  bom: true,
  skip_empty_lines: true,
  relax_column_count: true,
  // SEMrush does not always double the quotes inside a keyword like `27" monitor`.
  relax_quotes: true,
  info: true,
};

/** One record of an answer and the line of the file it ends on. */
export interface CsvRecord {
  fields: string[];
  line: number;
}

/** Splits `;`-separated CSV into records of fields; blank lines and a final line end are ignored. */
export function parseCsv(text: string): CsvRecord[] {
  const records = parse(text, CSV_OPTIONS) as unknown as { record: string[]; info: Info }[];
  return records.map(({ record, info }) => ({ fields: record, line: info.lines }));
}

function readCsv(body: string, where: string): CsvRecord[] {
  try {
    return parseCsv(body);
  } catch (err) {
    throw new NonRetriableError(`${where}: the answer is not ;-separated CSV (${(err as Error).message})`);
  }
}

const normalise = (header: string) => header.trim().toLowerCase();

/** Where each asked-for column sits in the header; a column the header lacks is absent from the map. */
function locateColumns(spec: ReportSpec<SemrushReportType>, header: string[], where: string): Map<string, number> {
  const names = header.map(normalise);
  const position = new Map<string, number>();
  for (const column of spec.columns) {
    const at = [column.header, ...(column.aliases ?? [])].map((h) => names.indexOf(normalise(h))).find((j) => j >= 0);
    if (at !== undefined) position.set(column.code, at);
    else if (column.required) {
      throw new NonRetriableError(`${where}: the header has no "${column.header}" column (asked for ${column.code}), which this report needs; got "${header.join(';').slice(0, 200)}"`);
    }
  }
  return position;
}

/**
 * Turns a report body into typed rows, mapping columns by their header names: a column
 * SEMrush adds is ignored, an optional column it leaves out reads as null. Throws
 * NonRetriableError naming the report, the domain, the line and the bad value when the body
 * is not the report that was asked for.
 */
export function parseReport<T extends SemrushReportType>(type: T, body: string, domain: string): SemrushRows[T][] {
  const spec = REPORTS[type] as ReportSpec<T>;
  const where = `SEMrush ${type} for ${domain}`;
  const [header, ...records] = readCsv(body, where);
  if (!header) throw new NonRetriableError(`${where}: the answer is empty, expected a header line like "${spec.columns.map((c) => c.header).join(';')}"`);
  const position = locateColumns(spec, header.fields, where);
  return records.map(({ fields, line }) => {
    if (fields.length !== header.fields.length) {
      throw new NonRetriableError(`${where}: line ${line} has ${fields.length} fields, expected ${header.fields.length} like the header ("${fields.join(';').slice(0, 120)}")`);
    }
    const cell = (code: string): string | null => {
      const at = position.get(code);
      return at === undefined ? null : fields[at]!.trim();
    };
    const number = (code: string, value: string): number => {
      const n = Number(value);
      if (!Number.isFinite(n)) {
        const name = spec.columns.find((c) => c.code === code)!.header;
        throw new NonRetriableError(`${where}: line ${line}, column "${name}": expected a number, got "${value.slice(0, 40)}"`);
      }
      return n;
    };
    return spec.toRow({
      key: (code) => cell(code)!,
      text: cell,
      num: (code) => {
        const value = cell(code);
        return value === null || value === '' ? null : number(code, value);
      },
      trend: (code) => {
        const value = cell(code);
        return value === null || value === '' ? [] : value.split(',').map((v) => number(code, v.trim()));
      },
    });
  });
}
