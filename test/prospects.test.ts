import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EngineConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { createRegistry } from '../steps/index.ts';
import { mergeDuplicates, normalizeLinkedInUrl, readRecords, toProspect, type Source } from '../steps/prospects/sources.ts';
import { testDatabases } from './helpers/db.ts';
import { pipelineFrom } from './helpers/pipeline.ts';

const csv: Source = { type: 'csv', path: 'data/prospects-week.csv' };
const phantom: Source = { type: 'phantombuster', path: 'data/phantom-search-export.json' };
const read = async (name: string, source: Source) => (await readRecords(name, source, { projectDir: 'pipelines' })).map((r, i) => toProspect(r, i, name, source));

describe('prospect sources', () => {
  it('normalises domains, emails and LinkedIn URLs, and says why a record is not a prospect', async () => {
    const rows = await read('weekly', csv);
    expect(rows).toHaveLength(20);
    expect(rows[0]).toEqual({
      key: 'acme-widgets.com', source: 'weekly', domain: 'acme-widgets.com', company_name: 'Acme Widgets', contact_name: 'Ada Lovelace',
      email: 'ada@acme-widgets.com', linkedin_url: 'https://www.linkedin.com/in/ada-lovelace-acme/', problem: null,
    });
    expect(rows.map((r) => r.domain).slice(1, 5)).toEqual(['globex-corp.com', 'initech.example.com', 'umbrella-outdoor.co.uk', 'xn--bcher-haus-9db.de']);
    expect(rows[3]!.linkedin_url).toBe('https://www.linkedin.com/in/alice-abernathy/');
    const problems = Object.fromEntries(rows.filter((r) => r.problem).map((r) => [r.key, r.problem]));
    expect(problems).toEqual({ 'starkgardensupply.com': 'invalid email', 'weekly#9': 'no domain', 'weekly#10': 'invalid domain', 'soylent-foods.com': 'invalid LinkedIn URL' });
  });

  it('merges duplicates by domain and by LinkedIn profile, earlier values first', async () => {
    const { rows, merged } = mergeDuplicates([...(await read('weekly', csv)), ...(await read('phantom', phantom))]);
    expect(merged).toBe(3);
    const acme = rows.find((r) => r.domain === 'acme-widgets.com')!;
    expect(acme.company_name).toBe('Acme Widgets');
    const hooli = rows.filter((r) => r.linkedin_url === 'https://www.linkedin.com/in/gavin-belson/');
    expect(hooli.map((r) => r.domain)).toEqual(['hooli.example']);
    expect(rows.filter((r) => !r.problem)).toHaveLength(17);
    expect(rows.find((r) => r.contact_name === 'Priya Raman')!.problem).toBe('no domain');
  });

  it.each([
    ['https://www.linkedin.com/in/Ada-Lovelace?trk=x', 'https://www.linkedin.com/in/ada-lovelace/'],
    ['linkedin.com/in/ada', 'https://www.linkedin.com/in/ada/'],
    ['https://de.linkedin.com/in/m%C3%BCller-hans/', 'https://www.linkedin.com/in/müller-hans/'],
    ['https://www.linkedin.com/company/acme/', undefined],
    ['https://twitter.com/ada', undefined],
  ])('LinkedIn URL %s', (input, expected) => {
    expect(normalizeLinkedInUrl(input)).toBe(expected);
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
      expect(records.map((r, i) => toProspect(r, i, 'api', { type: 'json' }).domain)).toEqual(['api-one.example']);
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
    expect(result.steps[1]!.items).toEqual({ total: 22, succeeded: 17, failed: 0, skipped: 5 });
    const reasons = Object.fromEntries((await store.items.skipReasons(result.run_id)).map((r) => [r.reason, r.n]));
    expect(reasons).toEqual({ 'no domain': 2, 'invalid domain': 1, 'invalid email': 1, 'invalid LinkedIn URL': 1 });
    const globex = (await db.query<{ company_name: string; email: string }>("SELECT company_name, email FROM prospects WHERE domain = 'globex-corp.com'"))[0]!;
    expect(globex).toEqual({ company_name: 'Globex (known)', email: 'hank@globex-corp.com' });
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM prospects'))[0]!.n).toBe(17);

    const again = await executeRun({ pipeline, config, store, projectDir: 'pipelines' });
    expect(again.steps[1]!.items).toMatchObject({ succeeded: 17, skipped: 5 });
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM prospects'))[0]!.n).toBe(17);
  });
});
