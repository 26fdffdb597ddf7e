import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SmtpSandbox, startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { loadConfig } from '../engine/config.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import type { Database } from '../engine/db/connect.ts';
import { silentLogger } from '../engine/log.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { Resources } from '../engine/resources.ts';
import { systemClock } from '../engine/clock.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { first, testDatabases } from './helpers/db.ts';
import { eventually } from './helpers/eventually.ts';
import { checkoutSession, signedStripeRequest, stripeEvent } from './helpers/stripe.ts';

/**
 * The paid-report pipeline end to end, as shipped in pipelines/: a Stripe test-signed
 * event to the running daemon ends in a PDF on disk, an email with the PDF in the sandbox
 * SMTP server, a payment with its attribution, and report links the daemon serves.
 */

const SECRET = 'whsec_paid_report_test';
const hasChromium = existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium');
const hasPdftoppm = (() => {
  try {
    execFileSync('pdftoppm', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const session = checkoutSession;
const event = stripeEvent;
const signed = (body: Record<string, unknown>) => signedStripeRequest(body, SECRET);

/** Grey levels of page 1 at low resolution: a blank page has (almost) one level. */
function distinctGreyLevels(pdfFile: string): number {
  const pgm = execFileSync('pdftoppm', ['-gray', '-r', '30', '-f', '1', '-l', '1', pdfFile]);
  // P5 header: magic, width, height, maxval, each followed by whitespace.
  const header = /^P5\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(pgm.subarray(0, 50).toString('latin1'))!;
  const pixels = pgm.subarray(header[0].length);
  return new Set(pixels).size;
}

describe.runIf(hasChromium).each(testDatabases)('paid-report on $name', ({ open }) => {
  let db: Database;
  let daemon: Daemon;
  let resources: Resources;
  let mailbox: SmtpSandbox;
  let state: string;
  let prospectId: string;

  beforeAll(async () => {
    db = await open();
    state = mkdtempSync(join(tmpdir(), 'flows-paid-'));
    const env = { STRIPE_WEBHOOK_SECRET: SECRET };
    const registry = createRegistry();
    const loaded = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', env, registry);
    const base = loaded.config!;
    // The email goes to an SMTP sandbox of the test's own, configured as the server.
    mailbox = await startSmtpSandbox();
    const connectors = { ...base.connectors, storage: { dir: join(state, 'reports') }, smtp: { host: mailbox.host, port: mailbox.port } };
    const config = { ...base, public_url: 'https://reports.example.test', connectors };
    const { pipeline, diagnostics } = loadPipeline(readFileSync('pipelines/paid-report.yaml', 'utf8'), 'paid-report.yaml', { registry, config });
    expect(diagnostics).toEqual([]);
    resources = new Resources({ config, env, log: silentLogger, clock: systemClock, projectDir: 'pipelines', stateDir: state });
    daemon = new Daemon({ db, config, pipelines: [pipeline!], pages: builtinPages, verifiers: registry.verifiers, resources, env, port: 0 });
    await daemon.start();
    const [row] = await db.query<{ id: string }>(
      "INSERT INTO prospects (domain, company_name, email, source) VALUES ('acme-widgets.com', $1, 'founder@acme-widgets.com', 'test') RETURNING id",
      ['Acme <script>alert(1)</script> Widgets'],
    );
    prospectId = row!.id;
    // A buyer who once unsubscribed from teasers still gets the report they paid for.
    await db.query("INSERT INTO email_suppressions (address, reason, source) VALUES ('founder@acme-widgets.com', 'unsubscribed', 'test')");
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await resources?.close();
    await mailbox?.close();
    await db?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  const post = (req: { body: string; headers: Record<string, string> }) => fetch(`${daemon.url}/hooks/stripe`, { method: 'POST', body: req.body, headers: req.headers });
  const runOf = (id: string) => first(db.query<{ status: string; error: string | null }>('SELECT status, error FROM flow_runs WHERE id = $1', [id]));
  const finished = async (id: string) => {
    await eventually(async () => !['queued', 'running'].includes((await runOf(id)).status), `run ${id} to finish`, 90_000);
    return runOf(id);
  };

  it('turns a paid Checkout Session into a stored report, an email with the PDF and a payment with its attribution', async () => {
    const metadata = { prospect_id: prospectId, channel: 'linkedin', campaign: '2026-w48', variant: 'B' };
    const answer = await post(signed(event('evt_paid_1', 'checkout.session.completed', session('cs_test_paid_1', { metadata }))));
    expect(answer.status).toBe(200);
    const body = (await answer.json()) as { status: string; run_id: string };
    expect(body.status).toBe('started');
    expect(await finished(body.run_id)).toEqual({ status: 'completed', error: null });

    const payment = await first(db.query<Record<string, unknown>>('SELECT * FROM payments WHERE session_id = $1', ['cs_test_paid_1']));
    expect(payment).toMatchObject({ prospect_id: prospectId, domain: 'acme-widgets.com', channel: 'linkedin', campaign: '2026-w48', variant: 'B', currency: 'usd', event_id: 'evt_paid_1' });
    expect(Number(payment.amount)).toBe(4900);
    const paid = await first(db.query<{ key: string; payload: unknown }>("SELECT key, payload FROM flow_events WHERE type = 'paid'"));
    expect(paid.key).toBe(prospectId);
    expect(typeof paid.payload === 'string' ? JSON.parse(paid.payload) : paid.payload).toMatchObject({ channel: 'linkedin', campaign: '2026-w48', variant: 'B', amount: 4900 });

    const report = await first(db.query<Record<string, unknown>>('SELECT * FROM generated_reports WHERE prospect_id = $1', [prospectId]));
    expect(payment.report_id).toBe(report.id);
    expect(report.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const cost = (typeof report.cost === 'string' ? JSON.parse(report.cost) : report.cost) as Record<string, number>;
    expect(cost.semrush_units).toBeGreaterThan(0);
    expect(cost.spyfu_rows).toBeGreaterThan(0);
    expect(cost.claude_input_tokens).toBeGreaterThan(0);
    expect(cost.claude_output_tokens).toBeGreaterThan(0);
    expect(Number(report.cost_usd)).toBeGreaterThan(0);

    // The files on disk: the PDF is a real, non-blank A4 document.
    const pdfFile = join(state, 'reports', String(report.pdf_path));
    const html = readFileSync(join(state, 'reports', String(report.html_path)), 'utf8');
    expect(readFileSync(pdfFile).subarray(0, 5).toString()).toBe('%PDF-');
    expect(html).toContain('Acme &lt;script&gt;alert(1)&lt;/script&gt; Widgets');
    expect(html).not.toMatch(/<script/i);
    if (hasPdftoppm) expect(distinctGreyLevels(pdfFile)).toBeGreaterThan(8);
    // No key is set, so SEMrush, SpyFu and Claude answered from their sandboxes: the report says so.
    expect(html).toContain('<div class="sample-banner" role="note"><strong>Sample data, not a real analysis.</strong> This report was made from the local sandbox of SEMrush, SpyFu, Claude');
    if (hasPdftoppm) expect(execFileSync('pdftotext', [pdfFile, '-'], { encoding: 'utf8' })).toContain('SAMPLE DATA (SEMrush, SpyFu, Claude sandbox)');

    // The email: to the buyer (suppressed, but it is transactional), with the link and the PDF attached, and the business address.
    const [mail] = await mailbox.waitFor(1);
    expect(mail!.envelope.to).toEqual(['founder@acme-widgets.com']);
    expect(mail!.headers['list-unsubscribe']).toBeUndefined();
    expect(mail!.subject).toBe('Your competitive-intelligence report for Acme <script>alert(1)</script> Widgets');
    expect(mail!.html).toContain(`https://reports.example.test/reports/${report.token}`);
    expect(mail!.html).not.toMatch(/<script/i);
    expect(mail!.text).toContain('20 Wenlock Road');
    expect(mail!.attachments).toHaveLength(1);
    expect(mail!.attachments[0]!).toMatchObject({ filename: 'acme-widgets.com-report.pdf', contentType: 'application/pdf' });
    expect(mail!.attachments[0]!.content.equals(readFileSync(pdfFile))).toBe(true);

    // The links the daemon serves; anything else is a 404 that tells nothing.
    const page = await fetch(`${daemon.url}/reports/${report.token}`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await page.text()).toBe(html);
    const pdf = await fetch(`${daemon.url}/reports/${report.token}.pdf`);
    expect(pdf.status).toBe(200);
    expect(pdf.headers.get('content-type')).toBe('application/pdf');
    expect(Buffer.from(await pdf.arrayBuffer()).equals(readFileSync(pdfFile))).toBe(true);
    for (const wrong of ['A'.repeat(32), `${String(report.token).slice(0, 31)}${String(report.token).endsWith('x') ? 'y' : 'x'}`, 'short', '..%2F..%2Fetc%2Fpasswd']) {
      expect((await fetch(`${daemon.url}/reports/${wrong}`)).status).toBe(404);
    }
    const views = await db.query("SELECT 1 FROM flow_events WHERE type = 'report.viewed' AND key = $1", [report.id]);
    expect(views).toHaveLength(2);
  }, 120_000);

  it('creates nothing new for a replayed event or a second event of the same session', async () => {
    const count = async () => (await db.query<{ n: string }>('SELECT (SELECT count(*) FROM payments) + (SELECT count(*) FROM generated_reports) + (SELECT count(*) FROM flow_runs) AS n'))[0]!.n;
    const before = await count();
    const replay = await post(signed(event('evt_paid_1', 'checkout.session.completed', session('cs_test_paid_1', { metadata: { prospect_id: prospectId } }))));
    expect(await replay.json()).toMatchObject({ status: 'duplicate' });
    const again = await post(signed(event('evt_paid_1b', 'checkout.session.async_payment_succeeded', session('cs_test_paid_1'))));
    expect(await again.json()).toMatchObject({ status: 'duplicate' });
    expect(await count()).toBe(before);
  });

  it('ignores a session that is not paid yet, and an event type it does not handle', async () => {
    const unpaid = await post(signed(event('evt_unpaid', 'checkout.session.completed', session('cs_test_unpaid', { payment_status: 'unpaid' }))));
    expect(unpaid.status).toBe(200);
    expect(await unpaid.json()).toMatchObject({ status: 'ignored' });
    const other = await post(signed(event('evt_refund', 'charge.refunded', { id: 'ch_1', object: 'charge' })));
    expect(await other.json()).toMatchObject({ status: 'ignored' });
    expect(await db.query("SELECT 1 FROM payments WHERE session_id = 'cs_test_unpaid'")).toEqual([]);
  });

  it('reports on the domain of a custom field when no prospect is known', async () => {
    const fields = [{ key: 'website', type: 'text', label: { type: 'custom', custom: 'Company website' }, text: { value: 'https://www.Globex-Corp.com/about' } }];
    const answer = await post(signed(event('evt_paid_2', 'checkout.session.async_payment_succeeded', session('cs_test_paid_2', { custom_fields: fields }))));
    const { run_id } = (await answer.json()) as { run_id: string };
    expect(await finished(run_id)).toEqual({ status: 'completed', error: null });
    const report = await first(db.query<{ domain: string; company_name: string }>("SELECT domain, company_name FROM generated_reports WHERE domain = 'globex-corp.com'"));
    expect(report.company_name).toBe('globex-corp.com');
  }, 120_000);

  it('marks a payment with no domain as needing attention, records the money, and still answers Stripe 200', async () => {
    const answer = await post(signed(event('evt_paid_3', 'checkout.session.completed', session('cs_test_nodomain', { customer_details: { email: 'who@gmail.com', name: null } }))));
    expect(answer.status).toBe(200);
    const { run_id } = (await answer.json()) as { run_id: string };
    const run = await finished(run_id);
    expect(run.status).toBe('needs_attention');
    expect(run.error).toContain('cs_test_nodomain names no known prospect, no metadata.domain and no domain custom field');
    expect(run.error).toContain('who@gmail.com');
    expect(await db.query("SELECT 1 FROM payments WHERE session_id = 'cs_test_nodomain'")).toHaveLength(1);
    expect(await db.query("SELECT 1 FROM generated_reports WHERE run_id = $1", [run_id])).toEqual([]);
  }, 60_000);
});
