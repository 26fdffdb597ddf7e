import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { type Static, Type } from '@sinclair/typebox';
import { type Info, type Options, parse } from 'csv-parse/sync';
import { isTimezone, NonRetriableError } from '../../engine/sdk.ts';
import { normalizeDomain } from '../domain.ts';
import { isValidEmail } from './email.ts';
import { normalizeLinkedInUrl, normalizeSalesNavigatorUrl } from './linkedin-url.ts';

export { normalizeLinkedInUrl, normalizeSalesNavigatorUrl } from './linkedin-url.ts';

/**
 * Prospect sources, declared in the config under `prospect_sources` by name: a CSV file or
 * URL, a Phantombuster result file (CSV or JSON), or JSON over HTTP. Each record becomes a
 * prospect with a normalised domain, a checked email and a canonical LinkedIn profile URL.
 * The domain is a prospect's identity, or, for a record without one, its LinkedIn profile
 * (which also links other records to it): a bad email is dropped (the reason kept on the
 * row), while a record with no usable identity, or a bad value where the identity is, is not
 * a prospect and says why. Duplicates (same domain, or same LinkedIn profile) are merged, the
 * first source's values first.
 */

const column = (what: string) =>
  Type.Optional(
    Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })], { description: `Column (or columns, the first non-empty wins) holding the ${what}.` }),
  );

export const ColumnsSchema = Type.Object(
  {
    domain: column('company website or domain'),
    company_name: column('company name'),
    contact_name: column('contact\'s full name'),
    email: column('contact\'s email'),
    linkedin_url: column('contact\'s LinkedIn profile URL (/in/...)'),
    sales_navigator_url: column('contact\'s Sales Navigator lead URL (kept apart from the profile)'),
    timezone: column("contact's IANA timezone, like America/New_York (emails go in their working hours; not a timezone: left empty)"),
  },
  { additionalProperties: false },
);

export const SourceSchema = Type.Object(
  {
    type: Type.Unsafe<'csv' | 'phantombuster' | 'json'>({
      type: 'string',
      enum: ['csv', 'phantombuster', 'json'],
      description: 'csv: a CSV file or URL; phantombuster: the result file of a search-export phantom (CSV or JSON); json: a JSON array over HTTP or in a file.',
    }),
    path: Type.Optional(Type.String({ minLength: 1, description: 'A file, relative to the pipelines folder.' })),
    url: Type.Optional(Type.String({ pattern: '^https?://', description: 'Or an http(s) URL to fetch.' })),
    columns: Type.Optional(ColumnsSchema),
    delimiter: Type.Optional(Type.String({ minLength: 1, maxLength: 1, description: 'CSV delimiter (default ",").' })),
    records: Type.Optional(Type.String({ description: 'JSON: dot path to the array of records, e.g. "data.items" (default: the document itself).' })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'HTTP headers for url, e.g. authorization through ${{ env.NAME }}.' })),
  },
  { additionalProperties: false },
);
export const SourcesSchema = Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]*$' }), SourceSchema, {
  additionalProperties: false,
  description: 'Where prospects come from, by name (prospects.read names them).',
});

export type Source = Static<typeof SourceSchema>;
type Columns = Static<typeof ColumnsSchema>;
type Field = keyof Columns;

/** Column names tried when the source maps none: common export headers, any case. */
const DEFAULT_COLUMNS: Record<'csv' | 'json' | 'phantombuster', Required<Record<Field, string[]>>> = {
  csv: {
    domain: ['domain', 'website', 'company website', 'company_website', 'url'],
    company_name: ['company', 'company name', 'company_name', 'organization'],
    contact_name: ['name', 'full name', 'contact', 'contact name', 'contact_name'],
    email: ['email', 'email address', 'e-mail'],
    linkedin_url: ['linkedin', 'linkedin url', 'linkedin_url', 'profile url', 'profileurl'],
    sales_navigator_url: ['sales navigator url', 'sales_navigator_url', 'sales navigator'],
    timezone: ['timezone', 'time zone', 'time_zone', 'tz'],
  },
  json: {
    domain: ['domain', 'website', 'companyWebsite', 'url'],
    company_name: ['company', 'companyName', 'company_name'],
    contact_name: ['name', 'fullName', 'full_name'],
    email: ['email'],
    linkedin_url: ['linkedinUrl', 'linkedin_url', 'profileUrl'],
    sales_navigator_url: ['salesNavigatorUrl', 'sales_navigator_url'],
    timezone: ['timezone', 'timeZone', 'time_zone', 'tz'],
  },
  // A search-export phantom's result: profileUrl, fullName, companyName, ... and, when the
  // company was looked up, companyWebsite. In a Sales Navigator export profileUrl is the lead
  // page (/sales/lead/...) and the profile is in linkedInProfileUrl or defaultProfileUrl: each
  // column's value goes where its form says.
  phantombuster: {
    domain: ['companyWebsite', 'website', 'companyDomain'],
    company_name: ['companyName', 'company'],
    contact_name: ['fullName', 'name'],
    email: ['email', 'mail', 'professionalEmail'],
    linkedin_url: ['linkedInProfileUrl', 'linkedinProfileUrl', 'defaultProfileUrl', 'profileUrl'],
    sales_navigator_url: ['salesNavigatorUrl', 'salesNavigatorProfileUrl', 'profileUrl'],
    timezone: ['timezone', 'timeZone'],
  },
};

/** A prospect row as prospects.read gives it and prospects.save takes it (ProspectRow). */
export const ProspectRowSchema = Type.Object(
  {
    key: Type.String(),
    source: Type.String(),
    domain: Type.Union([Type.String(), Type.Null()]),
    company_name: Type.Union([Type.String(), Type.Null()]),
    contact_name: Type.Union([Type.String(), Type.Null()]),
    email: Type.Union([Type.String(), Type.Null()]),
    linkedin_url: Type.Union([Type.String(), Type.Null()]),
    sales_navigator_url: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    timezone: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    email_problem: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    problem: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

export interface ProspectRow {
  /** The item key: the domain, else the LinkedIn profile, else `<source>#<record>` (a record that is no prospect). */
  key: string;
  source: string;
  domain: string | null;
  company_name: string | null;
  contact_name: string | null;
  /** null when the record has none or a bad one (then email_problem says why). */
  email: string | null;
  /** The profile (https://www.linkedin.com/in/<slug>/): the one to invite. */
  linkedin_url: string | null;
  /** A Sales Navigator lead page; never the profile. */
  sales_navigator_url?: string | null;
  /** The contact's IANA timezone, when the source gives a valid one. */
  timezone?: string | null;
  /** Why the record's email was dropped. */
  email_problem?: string | null;
  /** Why the record cannot be a prospect (the item is skipped with this reason). */
  problem: string | null;
}

type Record_ = Record<string, unknown>;

/** One record of a source: its values by column, its number (1 = the first record after a header). */
export interface SourceRecord {
  values: Record_;
  number: number;
  /** Why the record could not be read as one (wrong number of fields). */
  problem?: string;
}

/** The raw records of a source. */
export async function readRecords(name: string, source: Source, options: { projectDir: string; signal?: AbortSignal; fetch?: typeof fetch }): Promise<SourceRecord[]> {
  const where = `prospect_sources.${name}`;
  let text: string;
  if (source.url) {
    const response = await (options.fetch ?? fetch)(source.url, { headers: source.headers, signal: options.signal });
    if (!response.ok) {
      const message = `${where}: GET ${source.url} answered ${response.status}`;
      throw response.status >= 500 || response.status === 429 ? new Error(message) : new NonRetriableError(message);
    }
    text = await response.text();
  } else if (source.path) {
    const file = isAbsolute(source.path) ? source.path : join(options.projectDir, source.path);
    text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new NonRetriableError(`${where}: cannot read ${file} (${err.code ?? err.message})`);
    });
  } else throw new NonRetriableError(`${where}: give a path or a url`);

  const looksJson = /^\s*[[{]/.test(text);
  if (source.type === 'json' || (source.type === 'phantombuster' && looksJson)) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new NonRetriableError(`${where}: not JSON (${(err as Error).message})`);
    }
    const records = source.records ? source.records.split('.').reduce<unknown>((v, k) => (v as Record_ | undefined)?.[k], doc) : doc;
    if (!Array.isArray(records)) throw new NonRetriableError(`${where}: ${source.records ? `"${source.records}"` : 'the document'} is not an array of records`);
    return records.map((r, i) => (typeof r === 'object' && r !== null && !Array.isArray(r) ? { values: r as Record_, number: i + 1 } : { values: {}, number: i + 1, problem: 'not an object' }));
  }
  return csvRecords(text, source.delimiter ?? ',', where);
}

/**
 * A CSV file's records by header name. Records are numbered as csv-parse counts them: a
 * quoted field over several lines is one record, and blank lines are none.
 */
function csvRecords(text: string, delimiter: string, where: string): SourceRecord[] {
  let parsed: { record: string[]; info: Info }[];
  try {
    // relax_quotes: a quote inside an unquoted field (Acme "Best" Widgets) is text, as spreadsheets write it.
    const options: Options = { delimiter, bom: true, skip_empty_lines: true, skip_records_with_empty_values: true, relax_column_count: true, relax_quotes: true, trim: true, info: true };
    parsed = parse(text, options) as unknown as typeof parsed;
  } catch (err) {
    throw new NonRetriableError(`${where}: bad CSV (${(err as Error).message})`);
  }
  const [header, ...rows] = parsed;
  if (!header) return [];
  const names = header.record;
  return rows.map(({ record, info }) => {
    const number = info.records - 1;
    if (record.length !== names.length) return { values: {}, number, problem: `wrong number of fields (expected ${names.length})` };
    return { values: Object.fromEntries(names.map((n, i) => [n, record[i]])), number };
  });
}

/** The values of a field's mapped column(s), else of its default names, in any case; blanks left out. */
function valuesOf(record: Record_, field: Field, source: Source): string[] {
  const mapped = source.columns?.[field];
  const names = mapped ? (Array.isArray(mapped) ? mapped : [mapped]) : DEFAULT_COLUMNS[source.type][field];
  const byLower = new Map(Object.keys(record).map((k) => [k.toLowerCase(), k]));
  const values: string[] = [];
  for (const name of names) {
    const key = byLower.get(name.toLowerCase());
    const value = key === undefined ? undefined : record[key];
    if (typeof value === 'string' && value.trim()) values.push(value.trim());
    if (typeof value === 'number') values.push(String(value));
  }
  return values;
}

const valueOf = (record: Record_, field: Field, source: Source): string | null => valuesOf(record, field, source)[0] ?? null;

/**
 * The record's LinkedIn profile and Sales Navigator lead, each from the first column whose
 * value has that form; `invalid` when a value is neither.
 */
function linkedInOf(record: Record_, source: Source): { profile: string | null; lead: string | null; invalid: boolean } {
  const profiles = valuesOf(record, 'linkedin_url', source);
  const leads = valuesOf(record, 'sales_navigator_url', source);
  const profile = profiles.map(normalizeLinkedInUrl).find(Boolean) ?? null;
  const lead = [...leads, ...profiles].map(normalizeSalesNavigatorUrl).find(Boolean) ?? null;
  const invalid = !profile && profiles.some((v) => !normalizeSalesNavigatorUrl(v));
  return { profile, lead, invalid };
}

export const NO_IDENTITY = 'no domain or LinkedIn profile';

/** Why a row cannot be saved as a prospect, if it cannot. */
export const problemOf = (row: ProspectRow): string | null => row.problem ?? (row.domain || row.linkedin_url ? null : NO_IDENTITY);

/** A record as a prospect row, with the reason it is not one when it is not. */
export function toProspect(record: SourceRecord, name: string, source: Source): ProspectRow {
  const values = record.values;
  const rawDomain = valueOf(values, 'domain', source);
  const rawEmail = valueOf(values, 'email', source);
  const domain = rawDomain ? (normalizeDomain(rawDomain) ?? null) : null;
  const linkedIn = linkedInOf(values, source);
  const emailOk = rawEmail !== null && isValidEmail(rawEmail);
  const problem =
    record.problem ? record.problem
    : rawDomain && !domain ? 'invalid domain'
    : linkedIn.invalid ? 'invalid LinkedIn URL'
    : !domain && !linkedIn.profile ? NO_IDENTITY
    : null;
  return {
    key: domain ?? linkedIn.profile ?? `${name}#${record.number}`,
    source: name,
    domain,
    company_name: valueOf(values, 'company_name', source),
    contact_name: valueOf(values, 'contact_name', source),
    email: emailOk ? rawEmail.toLowerCase() : null,
    linkedin_url: linkedIn.profile,
    sales_navigator_url: linkedIn.lead,
    timezone: timezoneOf(valueOf(values, 'timezone', source)),
    email_problem: rawEmail !== null && !emailOk ? 'invalid email' : null,
    problem,
  };
}

/** The row for a record whose reading threw: a bad value is that record's problem, never the import's. */
export function unreadableRow(record: SourceRecord, name: string, err: unknown): ProspectRow {
  return { ...toProspect({ values: {}, number: record.number }, name, { type: 'json' }), problem: `unreadable record (${(err as Error).message})` };
}

const FIELDS = ['domain', 'company_name', 'contact_name', 'email', 'linkedin_url', 'sales_navigator_url', 'timezone'] as const;

/** A timezone the source gives, when it is an IANA one; anything else is no timezone (the mailbox's window holds), never the record's problem. */
function timezoneOf(value: string | null): string | null {
  const zone = value?.trim();
  return zone && isTimezone(zone) ? zone : null;
}

/**
 * Merges rows that are one prospect: the same domain, or the same LinkedIn profile (a
 * person's company is their company). Earlier rows win; later ones fill what is missing, a
 * domain too (a row known by its profile then takes the domain as its key). Rows with a
 * problem are kept as they are (each is reported).
 */
export function mergeDuplicates(rows: ProspectRow[]): { rows: ProspectRow[]; merged: number } {
  const out: ProspectRow[] = [];
  const byDomain = new Map<string, ProspectRow>();
  const byLinkedIn = new Map<string, ProspectRow>();
  const index = (prospect: ProspectRow, domain: string | null) => {
    if (domain) byDomain.set(domain, prospect);
    if (prospect.linkedin_url) byLinkedIn.set(prospect.linkedin_url, prospect);
  };
  let merged = 0;
  for (const row of rows) {
    const same = row.problem ? undefined : ((row.domain ? byDomain.get(row.domain) : undefined) ?? (row.linkedin_url ? byLinkedIn.get(row.linkedin_url) : undefined));
    if (!same) {
      const copy = { ...row };
      out.push(copy);
      if (!row.problem) index(copy, copy.domain);
      continue;
    }
    merged++;
    for (const f of FIELDS) same[f] ??= row[f] ?? null;
    same.key = same.domain ?? same.key;
    if (same.email) same.email_problem = null;
    index(same, row.domain);
  }
  return { rows: out, merged };
}
