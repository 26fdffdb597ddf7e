import { mkdtempSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EngineConfig } from '../engine/config.ts';
import { type Database, openDatabase } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { createRegistry } from '../steps/index.ts';
import { linkedinSelect } from '../steps/linkedin/select.ts';
import { prospectsCensus } from '../steps/prospects/census.ts';
import { isValidEmail } from '../steps/prospects/email.ts';
import { businessMigrations } from '../steps/tables.ts';
import { mergeDuplicates, normalizeLinkedInUrl, readRecords, toProspect, type Source } from '../steps/prospects/sources.ts';
import { stepContext } from './helpers/context.ts';
import { createPostgresDatabase, testDatabases } from './helpers/db.ts';
import { pipelineFrom } from './helpers/pipeline.ts';

const csv: Source = { type: 'csv', path: 'data/prospects-week.csv' };
const phantom: Source = { type: 'phantombuster', path: 'data/phantom-search-export.json' };
const tmp = mkdtempSync(join(tmpdir(), 'flows-prospects-'));
let files = 0;
const csvFile = async (text: string) => {
  const file = join(tmp, `list-${++files}.csv`);
  await writeFile(file, text);
  return file;
};
const jsonFile = (records: unknown[]) => csvFile(JSON.stringify(records)).then(async (file) => {
  await rename(file, `${file}.json`);
  return `${file}.json`;
});
const read = async (name: string, source: Source) => (await readRecords(name, source, { projectDir: 'pipelines' })).map((r) => toProspect(r, name, source));

describe('prospect sources', () => {
  it('normalises domains, emails and LinkedIn URLs, and says why a record is not a prospect', async () => {
    const rows = await read('weekly', csv);
    expect(rows).toHaveLength(20);
    expect(rows[0]).toEqual({
      key: 'acme-widgets.com', source: 'weekly', domain: 'acme-widgets.com', company_name: 'Acme Widgets', contact_name: 'Ada Lovelace',
      email: 'ada@acme-widgets.com', linkedin_url: 'https://www.linkedin.com/in/ada-lovelace-acme/', sales_navigator_url: null, timezone: null, email_problem: null, problem: null,
    });
    expect(rows.map((r) => r.domain).slice(1, 5)).toEqual(['globex-corp.com', 'initech.example.com', 'umbrella-outdoor.co.uk', 'xn--bcher-haus-9db.de']);
    expect(rows[3]!.linkedin_url).toBe('https://www.linkedin.com/in/alice-abernathy/');
    const problems = Object.fromEntries(rows.filter((r) => r.problem).map((r) => [r.key, r.problem]));
    expect(problems).toEqual({ 'weekly#10': 'invalid domain', 'soylent-foods.com': 'invalid LinkedIn URL' });
    // No domain, but a LinkedIn profile: a prospect known by its profile until it has a domain.
    expect(rows[8]).toMatchObject({ key: 'https://www.linkedin.com/in/bruce-wayne-tiles/', domain: null, company_name: 'Wayne Tiles', problem: null });
    expect(rows.find((r) => r.domain === 'starkgardensupply.com')).toMatchObject({ email: null, email_problem: 'invalid email', contact_name: 'Tony Stark', problem: null });
  });

  it("keeps a contact's timezone when it is an IANA one, and drops anything else without failing the record", () => {
    const row = (tz: string) => toProspect({ values: { Website: 'tz.example', 'Time Zone': tz }, number: 1 }, 'weekly', { type: 'csv' } as Source);
    expect(row('America/Chicago')).toMatchObject({ timezone: 'America/Chicago', problem: null });
    expect(row(' Europe/Berlin ')).toMatchObject({ timezone: 'Europe/Berlin', problem: null });
    expect(row('Mars/Olympus_Mons')).toMatchObject({ timezone: null, problem: null });
    expect(row('')).toMatchObject({ timezone: null, problem: null });
  });

  it('merges duplicates by domain and by LinkedIn profile, earlier values first', async () => {
    const { rows, merged } = mergeDuplicates([...(await read('weekly', csv)), ...(await read('phantom', phantom))]);
    expect(merged).toBe(3);
    const acme = rows.find((r) => r.domain === 'acme-widgets.com')!;
    expect(acme.company_name).toBe('Acme Widgets');
    const hooli = rows.filter((r) => r.linkedin_url === 'https://www.linkedin.com/in/gavin-belson/');
    expect(hooli.map((r) => r.domain)).toEqual(['hooli.example']);
    expect(rows.filter((r) => !r.problem)).toHaveLength(20);
    expect(rows.find((r) => r.contact_name === 'Priya Raman')).toMatchObject({ key: 'https://www.linkedin.com/in/priya-raman-tea/', domain: null, problem: null });
  });

  it.each([
    ['https://www.linkedin.com/in/Ada-Lovelace?trk=x', 'https://www.linkedin.com/in/ada-lovelace/'],
    ['linkedin.com/in/ada', 'https://www.linkedin.com/in/ada/'],
    ['https://de.linkedin.com/in/m%C3%BCller-hans/', 'https://www.linkedin.com/in/m%C3%BCller-hans/'],
    ['https://www.linkedin.com/in/M%c3%9CLLER-Hans/en/', 'https://www.linkedin.com/in/m%C3%BCller-hans/'],
    ['https://www.linkedin.com/in/müller-hans', 'https://www.linkedin.com/in/m%C3%BCller-hans/'],
    ['https://www.linkedin.com/in/ACwAAAPv4tsBj2R8_nVMkCPiCaJQw9XvUBmFBrw', 'https://www.linkedin.com/in/ACwAAAPv4tsBj2R8_nVMkCPiCaJQw9XvUBmFBrw/'],
    ['https://www.linkedin.com/in/bob%zz/', undefined],
    ['https://www.linkedin.com/in/%3Cscript%3Ealert(1)%3C%2Fscript%3E/', undefined],
    ['https://www.linkedin.com/in/ada%2Fadmin/', undefined],
    ['https://www.linkedin.com/in/ada_lovelace/', undefined],
    ['https://www.linkedin.com/sales/lead/ACwAAAPv4tsBj2R8,NAME_SEARCH,x1Yz', undefined],
    ['https://www.linkedin.com/company/acme/', undefined],
    ['https://twitter.com/ada', undefined],
  ])('LinkedIn URL %s', (input, expected) => {
    expect(normalizeLinkedInUrl(input)).toBe(expected);
  });

  it.each([
    ['ada@acme-widgets.com', true],
    ["o'brien+news@mail.example.co.uk", true],
    ['greta@xn--bcher-haus-jcb.de', true],
    ['ada..lovelace@acme-widgets.com', false],
    ['.ada@acme-widgets.com', false],
    ['ada.@acme-widgets.com', false],
    ['tony@@starkgardensupply.com', false],
    ['ada@acme-widgets', false],
    ['ada@-acme.com', false],
    [`${'a'.repeat(65)}@acme-widgets.com`, false],
  ])('email %s valid: %s', (email, valid) => {
    expect(isValidEmail(email)).toBe(valid);
  });

  it('a bad value or a short record skips that record only, numbered as a record of the file', async () => {
    const file = await csvFile(
      [
        'Company,Website,Name,Email,LinkedIn',
        'Bob Tiles,bob-tiles.example,Bob,bob@bob-tiles.example,https://www.linkedin.com/in/bob%zz/',
        '',
        'Script Co,script-co.example,Eve,eve@script-co.example,https://www.linkedin.com/in/%3Cscript%3Ealert(1)%3C%2Fscript%3E/',
        '"Multi',
        'Line Ltd",multi-line.example,Max,max@multi-line.example,',
        'Short Row,short-row.example',
        'Dot "Best" Mail,dot-mail.example,Dot,dot..mail@dot-mail.example,https://www.linkedin.com/in/Dot-Mail/',
        '   ',
        'No Site,,Nora,nora@nosite.example,',
      ].join('\r\n'),
    );
    const source: Source = { type: 'csv', path: file };
    const rows = (await readRecords('list', source, { projectDir: '.' })).map((r) => toProspect(r, 'list', source));
    expect(rows.map((r) => [r.key, r.problem])).toEqual([
      ['bob-tiles.example', 'invalid LinkedIn URL'],
      ['script-co.example', 'invalid LinkedIn URL'],
      ['multi-line.example', null],
      ['list#4', 'wrong number of fields (expected 5)'],
      ['dot-mail.example', null],
      ['list#6', 'no domain or LinkedIn profile'],
    ]);
    expect(rows[2]!.company_name).toBe('Multi\r\nLine Ltd');
    expect(rows[4]).toMatchObject({ company_name: 'Dot "Best" Mail', email: null, email_problem: 'invalid email', linkedin_url: 'https://www.linkedin.com/in/dot-mail/' });
    expect(rows.every((r) => r.linkedin_url === null || /^https:\/\/www\.linkedin\.com\/in\/[a-z0-9%-]+\/$/.test(r.linkedin_url))).toBe(true);
  });

  it('a Sales Navigator export: the /in/ profile is the LinkedIn URL, the lead page is kept apart', async () => {
    const lead = 'https://www.linkedin.com/sales/lead/ACwAAAPv4tsBj2R8_nVMkCPiCaJQw9XvUBmFBrw,NAME_SEARCH,x1Yz';
    const file = await jsonFile([
      { profileUrl: lead, defaultProfileUrl: 'https://www.linkedin.com/in/ACwAAAPv4tsBj2R8_nVMkCPiCaJQw9XvUBmFBrw', fullName: 'Lena Fischer', companyWebsite: 'fischer-bakery.example', vmid: 'ACwAAAPv4tsBj2R8_nVMkCPiCaJQw9XvUBmFBrw' },
      { profileUrl: 'https://www.linkedin.com/sales/lead/ACwAAB9x8k2mQzT1aBcDeFgHiJkLmNoPqRsTuV,NAME_SEARCH,Qz', linkedInProfileUrl: 'https://www.linkedin.com/in/omar-haddad/', fullName: 'Omar Haddad', companyWebsite: 'haddad-logistics.example' },
      { profileUrl: 'https://www.linkedin.com/sales/people/ACwAAC1234567890abcdefghijKL,NAME_SEARCH,aa', fullName: 'Sam Lead', companyWebsite: 'sam-lead.example' },
    ]);
    const source: Source = { type: 'phantombuster', path: file };
    const rows = (await readRecords('sales', source, { projectDir: '.' })).map((r) => toProspect(r, 'sales', source));
    expect(rows.map((r) => [r.linkedin_url, r.sales_navigator_url, r.problem])).toEqual([
      ['https://www.linkedin.com/in/ACwAAAPv4tsBj2R8_nVMkCPiCaJQw9XvUBmFBrw/', 'https://www.linkedin.com/sales/lead/ACwAAAPv4tsBj2R8_nVMkCPiCaJQw9XvUBmFBrw,NAME_SEARCH,x1Yz/', null],
      ['https://www.linkedin.com/in/omar-haddad/', 'https://www.linkedin.com/sales/lead/ACwAAB9x8k2mQzT1aBcDeFgHiJkLmNoPqRsTuV,NAME_SEARCH,Qz/', null],
      [null, 'https://www.linkedin.com/sales/people/ACwAAC1234567890abcdefghijKL,NAME_SEARCH,aa/', null],
    ]);
  });

  it('a record without a domain joins the prospect with its LinkedIn profile, before or after it', () => {
    const source: Source = { type: 'csv' };
    const record = (number: number, values: Record<string, string>) => toProspect({ values, number }, 'list', source);
    const { rows, merged } = mergeDuplicates([
      record(1, { Name: 'Bruce Wayne', Email: 'bruce@waynetiles.example', LinkedIn: 'https://www.linkedin.com/in/bruce-wayne/' }),
      record(2, { Website: 'waynetiles.example', Company: 'Wayne Tiles', LinkedIn: 'linkedin.com/in/Bruce-Wayne' }),
      record(3, { Name: 'Nobody', LinkedIn: 'https://www.linkedin.com/in/nobody-known/' }),
      record(4, { Name: 'Nobody', Email: 'nobody@known.example', LinkedIn: 'linkedin.com/in/nobody-known' }),
      record(5, { Name: 'No One', Email: 'no-one@nowhere.example' }),
    ]);
    expect(merged).toBe(2);
    expect(rows.map((r) => [r.key, r.domain, r.contact_name, r.email, r.problem])).toEqual([
      ['waynetiles.example', 'waynetiles.example', 'Bruce Wayne', 'bruce@waynetiles.example', null],
      ['https://www.linkedin.com/in/nobody-known/', null, 'Nobody', 'nobody@known.example', null],
      ['list#5', null, 'No One', 'no-one@nowhere.example', 'no domain or LinkedIn profile'],
    ]);
  });

  it('reads JSON over HTTP at a path inside the document, and names a source that fails', async () => {
    const server = createServer((req, res) => {
      if (req.headers.authorization !== 'Bearer t') return void res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: { items: [{ website: 'api-one.example', company: 'API One' }] } }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/prospects`;
    try {
      const records = await readRecords('api', { type: 'json', url, records: 'data.items', headers: { authorization: 'Bearer t' } }, { projectDir: '.' });
      expect(records.map((r) => toProspect(r, 'api', { type: 'json' }).domain)).toEqual(['api-one.example']);
      await expect(readRecords('api', { type: 'json', url }, { projectDir: '.' })).rejects.toThrow(`prospect_sources.api: GET ${url} answered 401`);
      await expect(readRecords('api', { type: 'json', url, records: 'data.nope', headers: { authorization: 'Bearer t' } }, { projectDir: '.' })).rejects.toThrow(
        'prospect_sources.api: "data.nope" is not an array of records',
      );
    } finally {
      server.close();
    }
  });
});

describe.each(testDatabases)('importing prospects on $name', ({ open }) => {
  let db: Database;
  beforeAll(async () => (db = await open()));
  afterAll(() => db.close());

  it('saves each prospect once, skips bad rows with their reasons, and fills missing fields of known ones', async () => {
    const registry = createRegistry();
    const config = { business: { name: 'T', timezone: 'UTC' }, prospect_sources: { weekly: csv, phantom } } as EngineConfig;
    await db.query("INSERT INTO prospects (domain, company_name, source) VALUES ('globex-corp.com', 'Globex (known)', 'earlier')");
    const pipeline = pipelineFrom(
      `
name: import
trigger: { manual: {} }
steps:
  - id: read
    uses: prospects.read
    with: { sources: [weekly, phantom] }
  - id: save
    uses: prospects.save
    foreach: "\${{ steps.read.output.rows }}"
    item_key: "\${{ item.key }}"
    with: { row: "\${{ item }}" }
`,
      registry,
      config,
    );
    const store = new RunStore(db);
    const result = await executeRun({ pipeline, config, store, projectDir: 'pipelines' });
    expect(result.status).toBe('completed');
    expect(result.steps[1]!.items).toEqual({ total: 22, succeeded: 20, failed: 0, skipped: 2 });
    const reasons = Object.fromEntries((await store.items.skipReasons(result.run_id)).map((r) => [r.reason, r.n]));
    expect(reasons).toEqual({ 'invalid domain': 1, 'invalid LinkedIn URL': 1 });
    expect(result.notes.find((n) => n.step === 'read')!.text).toMatch(/: 20 prospects, 3 duplicates merged, 2 invalid \(.*\), 1 email dropped \(invalid email 1\)$/);
    const stark = (await db.query<{ email: string | null; contact_name: string }>("SELECT email, contact_name FROM prospects WHERE domain = 'starkgardensupply.com'"))[0];
    expect(stark).toEqual({ email: null, contact_name: 'Tony Stark' });
    const globex = (await db.query<{ company_name: string; email: string }>("SELECT company_name, email FROM prospects WHERE domain = 'globex-corp.com'"))[0]!;
    expect(globex).toEqual({ company_name: 'Globex (known)', email: 'hank@globex-corp.com' });
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM prospects'))[0]!.n).toBe(20);
    const wayne = await db.query("SELECT domain, company_name, contact_name FROM prospects WHERE linkedin_url = 'https://www.linkedin.com/in/bruce-wayne-tiles/'");
    expect(wayne).toEqual([{ domain: null, company_name: 'Wayne Tiles', contact_name: 'Bruce Wayne' }]);

    const again = await executeRun({ pipeline, config, store, projectDir: 'pipelines' });
    expect(again.steps[1]!.items).toMatchObject({ succeeded: 20, skipped: 2 });
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM prospects'))[0]!.n).toBe(20);
  });

  /** Reads the given sources and saves their rows, as weekly-enrich does. */
  const importFrom = async (sources: Record<string, Source>) => {
    const registry = createRegistry();
    const config = { business: { name: 'T', timezone: 'UTC' }, prospect_sources: sources } as EngineConfig;
    const pipeline = pipelineFrom(
      `
name: import-some
trigger: { manual: {} }
steps:
  - id: read
    uses: prospects.read
    with: { sources: [${Object.keys(sources).join(', ')}] }
  - id: save
    uses: prospects.save
    foreach: "\${{ steps.read.output.rows }}"
    item_key: "\${{ item.key }}"
    with: { row: "\${{ item }}" }
`,
      registry,
      config,
    );
    const store = new RunStore(db);
    const result = await executeRun({ pipeline, config, store, projectDir: '.' });
    return { result, skipped: await store.items.skipReasons(result.run_id) };
  };

  it('a malformed percent-escape in one LinkedIn URL skips that record; the import goes on', async () => {
    const path = await csvFile('Company,Website,LinkedIn\nBob Tiles,bob-tiles.example,https://www.linkedin.com/in/bob%zz/\nGood Co,good-co.example,https://www.linkedin.com/in/good-co/\n');
    const { result, skipped } = await importFrom({ list: { type: 'csv', path } });
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('completed');
    expect(result.steps[1]!.items).toEqual({ total: 2, succeeded: 1, failed: 0, skipped: 1 });
    expect(skipped).toEqual([expect.objectContaining({ reason: 'invalid LinkedIn URL', n: 1 })]);
    const saved = await db.query<{ linkedin_url: string }>("SELECT linkedin_url FROM prospects WHERE domain = 'good-co.example'");
    expect(saved).toEqual([{ linkedin_url: 'https://www.linkedin.com/in/good-co/' }]);
  });

  it('stores a Sales Navigator lead apart from the profile, which alone is the LinkedIn URL', async () => {
    const path = await jsonFile([
      { profileUrl: 'https://www.linkedin.com/sales/lead/ACwAAB9x8k2mQzT1aBcDeFgHiJkLmNoPqRsTuV,NAME_SEARCH,Qz', defaultProfileUrl: 'https://www.linkedin.com/in/omar-haddad-sn/', fullName: 'Omar Haddad', companyWebsite: 'haddad-sn.example' },
      { profileUrl: 'https://www.linkedin.com/sales/lead/ACwAAC1234567890abcdefghijKL,NAME_SEARCH,aa', fullName: 'Sam Lead', companyWebsite: 'sam-lead-sn.example' },
    ]);
    const { result } = await importFrom({ sales: { type: 'phantombuster', path } });
    expect(result.status).toBe('completed');
    const saved = await db.query<{ domain: string; linkedin_url: string | null; sales_navigator_url: string }>(
      "SELECT domain, linkedin_url, sales_navigator_url FROM prospects WHERE domain IN ('haddad-sn.example', 'sam-lead-sn.example') ORDER BY domain",
    );
    expect(saved).toEqual([
      { domain: 'haddad-sn.example', linkedin_url: 'https://www.linkedin.com/in/omar-haddad-sn/', sales_navigator_url: 'https://www.linkedin.com/sales/lead/ACwAAB9x8k2mQzT1aBcDeFgHiJkLmNoPqRsTuV,NAME_SEARCH,Qz/' },
      { domain: 'sam-lead-sn.example', linkedin_url: null, sales_navigator_url: 'https://www.linkedin.com/sales/lead/ACwAAC1234567890abcdefghijKL,NAME_SEARCH,aa/' },
    ]);
  });
});

describe.each(testDatabases)('prospects known by their LinkedIn profile on $name', ({ open }) => {
  let db: Database;
  beforeAll(async () => (db = await open()));
  afterAll(() => db.close());

  const bruce = 'https://www.linkedin.com/in/bruce-wayne/';
  const importCsv = async (name: string, lines: string[]) => {
    const path = await csvFile(['Company,Website,Name,Email,LinkedIn', ...lines, ''].join('\n'));
    const registry = createRegistry();
    const config = { business: { name: 'T', timezone: 'UTC' }, prospect_sources: { [name]: { type: 'csv', path } } } as EngineConfig;
    const pipeline = pipelineFrom(
      `
name: import-${name}
trigger: { manual: {} }
steps:
  - id: read
    uses: prospects.read
    with: { sources: [${name}] }
  - id: save
    uses: prospects.save
    foreach: "\${{ steps.read.output.rows }}"
    item_key: "\${{ item.key }}"
    with: { row: "\${{ item }}" }
`,
      registry,
      config,
    );
    const store = new RunStore(db);
    const result = await executeRun({ pipeline, config, store, projectDir: '.' });
    expect(result.error).toBeUndefined();
    return { items: result.steps[1]!.items, skipped: Object.fromEntries((await store.items.skipReasons(result.run_id)).map((r) => [r.reason, r.n])) };
  };
  const byProfile = (url: string) =>
    db.query<{ id: string; domain: string | null; company_name: string | null; contact_name: string | null; email: string | null }>(
      'SELECT id, domain, company_name, contact_name, email FROM prospects WHERE linkedin_url = $1',
      [url],
    );

  it('saves a row with a profile and no domain, rejects one with neither, and fills the domain when a later row brings it', async () => {
    const first = await importCsv('search', [',,Bruce Wayne,bruce@wayne.example,https://www.linkedin.com/in/Bruce-Wayne?trk=x', 'Nobody Ltd,,No One,no-one@nowhere.example,']);
    expect(first.items).toEqual({ total: 2, succeeded: 1, failed: 0, skipped: 1 });
    expect(first.skipped).toEqual({ 'no domain or LinkedIn profile': 1 });
    const [saved, ...others] = await byProfile(bruce);
    expect(others).toEqual([]);
    expect(saved).toMatchObject({ domain: null, contact_name: 'Bruce Wayne', email: 'bruce@wayne.example' });

    // The same row again (its item key is its profile): the same prospect, nothing added.
    expect((await importCsv('search', [',,Bruce Wayne,bruce@wayne.example,linkedin.com/in/bruce-wayne'])).items).toMatchObject({ succeeded: 1, skipped: 0 });
    // A later row with the domain and the same profile: the domain of that same prospect.
    expect((await importCsv('list', ['Wayne Tiles,waynetiles.example,B. Wayne,b@waynetiles.example,https://www.linkedin.com/in/bruce-wayne/'])).items).toMatchObject({ succeeded: 1 });
    expect(await byProfile(bruce)).toEqual([{ id: saved!.id, domain: 'waynetiles.example', company_name: 'Wayne Tiles', contact_name: 'Bruce Wayne', email: 'bruce@wayne.example' }]);
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM prospects'))[0]!.n).toBe(1);
    // A row without a domain joins the prospect whose profile it has.
    expect((await importCsv('search', [',,Bruce Wayne,,https://www.linkedin.com/in/bruce-wayne/'])).items).toMatchObject({ succeeded: 1 });
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM prospects'))[0]!.n).toBe(1);
  });

  it('a row whose domain is known and whose profile is another prospect\'s is saved without taking that profile', async () => {
    const selina = 'https://www.linkedin.com/in/selina-kyle/';
    await db.query("INSERT INTO prospects (domain, company_name, source) VALUES ('kyle-cats.example', 'Kyle Cats', 'earlier')");
    await importCsv('search', [',,Selina Kyle,,https://www.linkedin.com/in/selina-kyle/']);
    const { items } = await importCsv('list', ['Kyle Cats,kyle-cats.example,Selina Kyle,selina@kyle-cats.example,https://www.linkedin.com/in/selina-kyle/']);
    expect(items).toMatchObject({ succeeded: 1, failed: 0 });
    expect(await db.query("SELECT email, linkedin_url FROM prospects WHERE domain = 'kyle-cats.example'")).toEqual([{ email: 'selina@kyle-cats.example', linkedin_url: null }]);
    expect(await byProfile(selina)).toEqual([expect.objectContaining({ domain: null, contact_name: 'Selina Kyle' })]);
  });
});

describe.each(testDatabases)('prospects waiting for a domain on $name', ({ open }) => {
  let db: Database;
  beforeAll(async () => {
    db = await open();
    await db.query(
      `INSERT INTO prospects (domain, company_name, linkedin_url, metrics, source) VALUES
         ('enriched.example', 'Enriched', 'https://www.linkedin.com/in/enriched/', '{"organic_traffic": 10}', 'list'),
         ('new-one.example', 'New One', NULL, NULL, 'list'),
         (NULL, 'No Site Yet', 'https://www.linkedin.com/in/no-site-yet/', NULL, 'search')`,
    );
    await db.query("INSERT INTO prospect_intelligence (domain, source, data, fetched_at) VALUES ('enriched.example', 'search', '{}', now())");
  });
  afterAll(() => db.close());

  const config = { business: { name: 'T', timezone: 'UTC' }, linkedin: { weekly: 10, score: '1' } } as unknown as EngineConfig;
  const withNotes = (notes: string[], dryRun = false) => stepContext({ writable: true, query: (text, params) => db.query(text, params) }, config, undefined, { note: (text) => void notes.push(text), run: { id: 'r-test', pipeline: 'test', dryRun } });

  it('the census does not enrich a prospect without a domain and counts it as waiting for one', async () => {
    const notes: string[] = [];
    const census = await prospectsCensus.run(withNotes(notes), {});
    expect(census.to_enrich.map((t) => t.domain)).toEqual(['new-one.example']);
    expect(census).toMatchObject({ new: 1, fresh: 1, waiting_for_domain: 1 });
    expect(notes[0]).toMatch(/^1 new, 0 stale \(to enrich\), 1 fresh \(skipped: enriched since [\d-]+\), 1 waiting for a domain \(skipped: enrichment needs one\);/);
    // A dry run's rows not saved yet wait too.
    const rows = [{ domain: null, linkedin_url: 'https://www.linkedin.com/in/unsaved/', problem: null }, { domain: null, linkedin_url: 'https://www.linkedin.com/in/no-site-yet/', problem: null }];
    expect(await prospectsCensus.run(withNotes([], true), { rows })).toMatchObject({ new: 1, waiting_for_domain: 2 });
  });

  it('the LinkedIn week leaves out a prospect without a domain and says why', async () => {
    const notes: string[] = [];
    const rows = [{ domain: null, linkedin_url: 'https://www.linkedin.com/in/unsaved/', problem: null }];
    const week = (await linkedinSelect.effect!.plan(withNotes(notes, true), { rows })).output as { eligible: number; waiting_for_domain: number; selected: { domain: string }[] };
    expect(week).toMatchObject({ eligible: 1, waiting_for_domain: 2 });
    expect(week.selected.map((s) => s.domain)).toEqual(['enriched.example']);
    expect(notes[0]).toMatch(/^LinkedIn \d{4}-W\d\d: 1 of 1 eligible prospects; best: enriched\.example 1; 2 with a profile wait for a domain \(a report needs one\)$/);
  });
});

describe.each(['pglite', ...(process.env.TEST_DATABASE_URL ? ['postgres'] : [])])('one prospect per LinkedIn profile, on a database made before (%s)', (kind) => {
  it('keeps the profile on the prospect chosen for a LinkedIn week, else the first saved; the others keep their domain', async () => {
    const before = Object.fromEntries(Object.entries(businessMigrations).filter(([name]) => name < '0012'));
    const server = kind === 'postgres' ? await createPostgresDatabase(process.env.TEST_DATABASE_URL!) : undefined;
    const where = server ? { url: server.url } : { dataDir: join(tmp, `db-${++files}`) };
    try {
      const old = await openDatabase({ ...where, migrations: before });
      const profile = 'https://www.linkedin.com/in/gavin-belson/';
      await old.query(
        `INSERT INTO prospects (domain, linkedin_url, created_at) VALUES ('hooli.example', $1, now() - interval '2 days'), ('hooli-xyz.example', $1, now() - interval '1 day'), ('hooli-labs.example', $1, now()),
                ('raviga.example', $2, now() - interval '2 days'), ('raviga-capital.example', $2, now() - interval '1 day')`,
        [profile, 'https://www.linkedin.com/in/monica-hall/'],
      );
      await old.query("INSERT INTO linkedin_selections (week, prospect_id, rank, score, selected_at) SELECT '2026-W49', id, 1, 1, now() FROM prospects WHERE domain = 'hooli-xyz.example'");
      await old.close();
      const db = await openDatabase({ ...where, migrations: businessMigrations });
      try {
        expect(await db.query('SELECT domain, linkedin_url FROM prospects ORDER BY domain')).toEqual([
          { domain: 'hooli-labs.example', linkedin_url: null },
          { domain: 'hooli-xyz.example', linkedin_url: profile },
          { domain: 'hooli.example', linkedin_url: null },
          { domain: 'raviga-capital.example', linkedin_url: null },
          { domain: 'raviga.example', linkedin_url: 'https://www.linkedin.com/in/monica-hall/' },
        ]);
        await expect(db.query('INSERT INTO prospects (domain) VALUES (NULL)')).rejects.toThrow(/prospects_identity/);
      } finally {
        await db.close();
      }
    } finally {
      await server?.drop();
    }
  });
});
