import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { type Static, Type } from '@sinclair/typebox';
import { parse } from 'csv-parse/sync';
import { NonRetriableError } from '../../engine/sdk.ts';
import { normalizeDomain } from '../domain.ts';

/**
 * Prospect sources, declared in the config under `prospect_sources` by name: a CSV file or
 * URL, a Phantombuster result file (CSV or JSON), or JSON over HTTP. Each record becomes a
 * prospect with a normalised domain, a checked email and a canonical LinkedIn profile URL;
 * a record that cannot be one says why. Duplicates (same domain, or same LinkedIn profile)
 * are merged, the first source's values first.
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
    linkedin_url: column('contact\'s LinkedIn profile URL'),
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
  },
  json: {
    domain: ['domain', 'website', 'companyWebsite', 'url'],
    company_name: ['company', 'companyName', 'company_name'],
    contact_name: ['name', 'fullName', 'full_name'],
    email: ['email'],
    linkedin_url: ['linkedinUrl', 'linkedin_url', 'profileUrl'],
  },
  // A search-export phantom's result: profileUrl, fullName, companyName, ... and, when the
  // company was looked up, companyWebsite.
  phantombuster: {
    domain: ['companyWebsite', 'website', 'companyDomain'],
    company_name: ['companyName', 'company'],
    contact_name: ['fullName', 'name'],
    email: ['email', 'mail', 'professionalEmail'],
    linkedin_url: ['profileUrl', 'linkedInProfileUrl', 'defaultProfileUrl', 'linkedinProfileUrl'],
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
    problem: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

export interface ProspectRow {
  /** The item key: the domain, or `<source>#<record>` for a record without one. */
  key: string;
  source: string;
  domain: string | null;
  company_name: string | null;
  contact_name: string | null;
  email: string | null;
  linkedin_url: string | null;
  /** Why the record cannot be a prospect (the item is skipped with this reason). */
  problem: string | null;
}

type Record_ = Record<string, unknown>;

/** The raw records of a source. */
export async function readRecords(name: string, source: Source, options: { projectDir: string; signal?: AbortSignal; fetch?: typeof fetch }): Promise<Record_[]> {
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
    return records.filter((r): r is Record_ => typeof r === 'object' && r !== null);
  }
  try {
    return parse(text.replace(/^\uFEFF/, ''), { columns: true, skip_empty_lines: true, delimiter: source.delimiter ?? ',', relax_column_count: true, trim: true }) as Record_[];
  } catch (err) {
    throw new NonRetriableError(`${where}: bad CSV (${(err as Error).message})`);
  }
}

const EMAIL = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

/** https://www.linkedin.com/in/<slug>/ for any form of a profile URL; undefined when it is not one. */
export function normalizeLinkedInUrl(text: string): string | undefined {
  const match = /^(?:https?:\/\/)?(?:[a-z]{2,3}\.)?linkedin\.com\/(in|sales\/lead|sales\/people)\/([^/?#\s]+)/i.exec(text.trim());
  if (!match) return undefined;
  if (match[1]!.toLowerCase() !== 'in') return `https://www.linkedin.com/${match[1]!.toLowerCase()}/${match[2]}/`;
  return `https://www.linkedin.com/in/${decodeURIComponent(match[2]!).toLowerCase()}/`;
}

/** Finds a field's value by the mapped column(s), else by the default names, in any case. */
function valueOf(record: Record_, field: Field, source: Source): string | null {
  const mapped = source.columns?.[field];
  const names = mapped ? (Array.isArray(mapped) ? mapped : [mapped]) : DEFAULT_COLUMNS[source.type][field];
  const byLower = new Map(Object.keys(record).map((k) => [k.toLowerCase(), k]));
  for (const name of names) {
    const key = byLower.get(name.toLowerCase());
    const value = key === undefined ? undefined : record[key];
    if (typeof value === 'string' && value.trim()) return value.trim();
    if (typeof value === 'number') return String(value);
  }
  return null;
}

/** A record as a prospect row, with the reason it is not one when it is not. */
export function toProspect(record: Record_, index: number, name: string, source: Source): ProspectRow {
  const rawDomain = valueOf(record, 'domain', source);
  const rawEmail = valueOf(record, 'email', source);
  const rawLinkedIn = valueOf(record, 'linkedin_url', source);
  const domain = rawDomain ? (normalizeDomain(rawDomain) ?? null) : null;
  const linkedin = rawLinkedIn ? (normalizeLinkedInUrl(rawLinkedIn) ?? null) : null;
  const problem =
    !rawDomain ? 'no domain'
    : !domain ? 'invalid domain'
    : rawEmail && !EMAIL.test(rawEmail) ? 'invalid email'
    : rawLinkedIn && !linkedin ? 'invalid LinkedIn URL'
    : null;
  return {
    key: domain ?? `${name}#${index + 1}`,
    source: name,
    domain,
    company_name: valueOf(record, 'company_name', source),
    contact_name: valueOf(record, 'contact_name', source),
    email: rawEmail && EMAIL.test(rawEmail) ? rawEmail.toLowerCase() : null,
    linkedin_url: linkedin,
    problem,
  };
}

const FIELDS = ['company_name', 'contact_name', 'email', 'linkedin_url'] as const;

/**
 * Merges rows that are one prospect: the same domain, or the same LinkedIn profile (a
 * person's company is their company). Earlier rows win; later ones fill what is missing.
 * Rows with a problem are kept as they are (each is reported).
 */
export function mergeDuplicates(rows: ProspectRow[]): { rows: ProspectRow[]; merged: number } {
  const out: ProspectRow[] = [];
  const byDomain = new Map<string, ProspectRow>();
  const byLinkedIn = new Map<string, ProspectRow>();
  let merged = 0;
  for (const row of rows) {
    if (row.problem) {
      out.push(row);
      continue;
    }
    const same = byDomain.get(row.domain!) ?? (row.linkedin_url ? byLinkedIn.get(row.linkedin_url) : undefined);
    if (!same) {
      const copy = { ...row };
      out.push(copy);
      byDomain.set(copy.domain!, copy);
      if (copy.linkedin_url) byLinkedIn.set(copy.linkedin_url, copy);
      continue;
    }
    merged++;
    for (const f of FIELDS) same[f] ??= row[f];
    if (same.linkedin_url) byLinkedIn.set(same.linkedin_url, same);
    byDomain.set(row.domain!, same);
  }
  return { rows: out, merged };
}
