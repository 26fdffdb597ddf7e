import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { semrushConnector } from '../connectors/semrush/connector.ts';
import { systemClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { writableQueryable } from '../engine/executor/context.ts';
import { executeRun } from '../engine/executor/run.ts';
import { silentLogger } from '../engine/log.ts';
import { Resources } from '../engine/resources.ts';
import { RunStore } from '../engine/store/index.ts';
import { normalizeDomain } from '../steps/domain.ts';
import { emailSend } from '../steps/email/send.ts';
import { createRegistry } from '../steps/index.ts';
import { stripeCheckout } from '../steps/stripe/checkout.ts';
import { stepContext } from './helpers/context.ts';
import { testDatabases } from './helpers/db.ts';
import { calls, pipelineFrom, testConfig } from './helpers/pipeline.ts';

describe('normalizeDomain', () => {
  it.each([
    ['example.com', 'example.com'],
    ['https://www.Example.co.uk/pricing?x=1', 'example.co.uk'],
    ['EXAMPLE.com.', 'example.com'],
    ['http://shop.example.com:8080/', 'shop.example.com'],
    ['bücher.de', 'xn--bcher-kva.de'],
    ['  www.acme-widgets.com  ', 'acme-widgets.com'],
  ])('%s -> %s', (input, expected) => {
    expect(normalizeDomain(input)).toBe(expected);
  });

  it.each(['', 'localhost', 'not a domain', 'ann@example.com', 'http://', '-bad-.com', 'example', 42, null])('rejects %s', (input) => {
    expect(normalizeDomain(input)).toBeUndefined();
  });
});

/** A step context over a real database (or none, for steps that do not touch it). */
const contextOn = (db: Database | undefined, config: EngineConfig = testConfig, resources?: Resources) =>
  stepContext(db ? writableQueryable(db) : (undefined as never), config, resources);

describe.each(testDatabases)('stripe.checkout on $name', ({ open }) => {
  let db: Database;
  let prospect: string;
  beforeAll(async () => {
    db = await open();
    const [row] = await db.query<{ id: string }>("INSERT INTO prospects (domain, company_name) VALUES ('known.example.com', 'Known Ltd') RETURNING id");
    prospect = row!.id;
  });
  afterAll(() => db.close());

  const read = (session: Record<string, unknown>) =>
    stripeCheckout.run(contextOn(db), { session: { id: 'cs_1', object: 'checkout.session', amount_total: 900, currency: 'gbp', payment_status: 'paid', ...session } });

  it('finds the company through the prospect in the metadata, and reads the attribution', async () => {
    const facts = await read({ metadata: { prospect_id: prospect, channel: 'email', campaign: 'c1', variant: 'A' }, customer_details: { email: 'x@y.com', name: 'X' } });
    expect(facts).toEqual({
      session_id: 'cs_1', paid: true, amount: 900, currency: 'gbp', email: 'x@y.com', name: 'X',
      domain: 'known.example.com', company: 'Known Ltd', prospect_id: prospect, channel: 'email', campaign: 'c1', variant: 'A', problem: null,
    });
  });

  it('uses client_reference_id, then metadata.domain, then a custom field, and links a known domain to its prospect', async () => {
    expect((await read({ client_reference_id: prospect })).domain).toBe('known.example.com');
    expect(await read({ metadata: { domain: 'https://www.Known.example.com/' } })).toMatchObject({ domain: 'known.example.com', prospect_id: prospect });
    const fields = [{ key: 'company_website', type: 'text', text: { value: 'globex.com' } }];
    expect(await read({ custom_fields: fields })).toMatchObject({ domain: 'globex.com', prospect_id: null, problem: null });
  });

  it('says why there is no domain', async () => {
    expect((await read({})).problem).toBe('session cs_1 names no known prospect, no metadata.domain and no domain custom field');
    expect((await read({ metadata: { prospect_id: '3f1c1f9e-0000-4000-8000-000000000000' } })).problem).toContain('(3f1c1f9e-0000-4000-8000-000000000000 is unknown)');
    expect(await read({ metadata: { domain: 'our website' } })).toMatchObject({ domain: null, problem: 'the session\'s domain "our website" is not a domain name' });
  });

  it('a prospect known by its LinkedIn profile alone: its session gives the domain, or the problem says it has none', async () => {
    const [row] = await db.query<{ id: string }>("INSERT INTO prospects (linkedin_url, company_name) VALUES ('https://www.linkedin.com/in/no-site/', 'No Site Ltd') RETURNING id");
    expect(await read({ metadata: { prospect_id: row!.id } })).toMatchObject({
      domain: null, prospect_id: row!.id, company: 'No Site Ltd', problem: `prospect ${row!.id} has no domain yet, and session cs_1 gives none (no metadata.domain, no domain custom field)`,
    });
    expect(await read({ metadata: { prospect_id: row!.id, domain: 'no-site.example' } })).toMatchObject({ domain: 'no-site.example', prospect_id: row!.id, problem: null });
  });

  it('refuses something that is not a Checkout Session', async () => {
    await expect(stripeCheckout.run(contextOn(db), { session: { id: 'ch_1', object: 'charge' } })).rejects.toThrow('expected a checkout.session object, got "charge"');
  });
});

describe.each(testDatabases)('needs_attention on $name', ({ open }) => {
  let db: Database;
  beforeAll(async () => (db = await open()));
  afterAll(() => db.close());

  it('stops the run as needs_attention with the reason; later steps do not run', async () => {
    calls.reset();
    const pipeline = pipelineFrom(`
name: attention
trigger: { manual: {} }
inputs: { domain: { type: string } }
steps:
  - id: check
    uses: run.needs_attention
    when: "\${{ inputs.domain == '' }}"
    with: { reason: "no domain: look the company up" }
  - id: send
    uses: test.send
    key: "\${{ 'k' }}"
    with: { to: x }
`);
    const store = new RunStore(db);
    const stopped = await executeRun({ pipeline, config: testConfig, store, inputs: { domain: '' } });
    expect(stopped.status).toBe('needs_attention');
    expect(stopped.error).toBe('step check: no domain: look the company up');
    expect(stopped.steps.map((s) => s.status)).toEqual(['failed', 'not_run']);
    expect(calls.performed).toEqual([]);
    expect((await store.runs.list({ status: 'needs_attention' })).map((r) => r.id)).toEqual([stopped.run_id]);

    const fine = await executeRun({ pipeline, config: testConfig, store, inputs: { domain: 'a.com' } });
    expect(fine.status).toBe('completed');
    expect(calls.performed).toHaveLength(1);
  });
});

describe('connectors without keys', () => {
  const yaml = `
sandboxes: never
connectors:
  semrush: { key: "\${{ env.SEMRUSH_API_KEY }}" }
`;
  it('with sandboxes: never, a missing key is an error naming the variable to set', async () => {
    const { config } = loadConfig(yaml, 'flows.config.yaml', {}, createRegistry());
    const resources = new Resources({ config: config!, env: {}, log: silentLogger, clock: systemClock, projectDir: 'pipelines', stateDir: '.flows' });
    await expect(resources.use(semrushConnector)).rejects.toThrow(
      'semrush: key not set (set the environment variable SEMRUSH_API_KEY); the config says sandboxes: never, so no sandbox stands in',
    );
    await resources.close();
  });

  it('by default, the sandbox answers in its place', async () => {
    const { config } = loadConfig(yaml.replace('never', 'auto'), 'flows.config.yaml', {}, createRegistry());
    const resources = new Resources({ config: config!, env: {}, log: silentLogger, clock: systemClock, projectDir: 'pipelines', stateDir: '.flows' });
    const semrush = await resources.use(semrushConnector);
    const rank = await semrush.domainRank('example.com');
    expect(rank.rows).toHaveLength(1);
    expect(rank.units).toBe(10);
    await resources.close();
  });
});

describe('email.send', () => {
  const state = mkdtempSync(join(tmpdir(), 'flows-email-'));
  const config: EngineConfig = {
    business: { name: 'Search Intel', timezone: 'Europe/London', address: '20 Wenlock Road, London' },
    senders: [{ id: 'd1', domain: 'mail.example', from_email: 'reports@mail.example', from_name: 'Reports' }],
  };
  const resources = new Resources({ config, env: {}, log: silentLogger, clock: systemClock, projectDir: 'pipelines', stateDir: state });
  afterAll(async () => {
    await resources.close();
    rmSync(state, { recursive: true, force: true });
  });
  const input = {
    to: 'buyer@example.com',
    sender: 'd1',
    subject: 'Your report',
    template: 'report-delivery',
    transactional: true,
    data: { name: '<script>alert(1)</script>', company: '"><img src=x onerror=alert(1)>', domain: 'acme.com', url: 'https://r.example/reports/t', pdf_url: 'https://r.example/reports/t.pdf', headline: 'Up & away' },
  };

  it('escapes every value in the HTML part, not in the text part, and ends with the business address', async () => {
    const planned = await emailSend.effect!.plan(contextOn(undefined, config, resources), input);
    const html = planned.artifacts!.find((a) => a.name === 'email.html')!.content;
    const text = planned.artifacts!.find((a) => a.name === 'email.txt')!.content;
    expect(html).not.toMatch(/<script|<img/i);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&#34;&gt;&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('Up &amp; away');
    expect(html).toMatch(/20 Wenlock Road, London<\/p>\s*<\/body>/);
    expect(text).toContain('Hi <script>alert(1)</script>,');
    expect(text.trimEnd()).toMatch(/Search Intel · 20 Wenlock Road, London$/);
    expect(planned.summary).toBe('email to buyer@example.com: Your report');
  });

  it('will not send without a physical address, nor from an unknown sender', async () => {
    const bare = { ...config, business: { name: 'X', timezone: 'UTC' } };
    await expect(emailSend.effect!.plan(contextOn(undefined, bare, resources), input)).rejects.toThrow('set business.address in the config');
    await expect(emailSend.effect!.plan(contextOn(undefined, config, resources), { ...input, sender: 'd9' })).rejects.toThrow('unknown sender "d9" (senders in the config: d1)');
  });
});
