import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { cli, startCli } from './helpers/cli.ts';
import { createPostgresDatabase } from './helpers/db.ts';
import { eventually } from './helpers/eventually.ts';
import { checkoutSession, signedStripeRequest, stripeEvent } from './helpers/stripe.ts';

/**
 * Report links as a buyer gets them: with no public_url in the config, they name the
 * daemon's own address (its real --port), and `flows report` says where its files are and
 * whether a daemon serves the link.
 */

const hasChromium = existsSync(process.env.CHROMIUM_PATH || '/usr/bin/chromium');
const SECRET = 'whsec_report_links';
// Every connector on its sandbox, the mail in the sandbox outbox.
const env = { STRIPE_WEBHOOK_SECRET: SECRET, SEMRUSH_API_KEY: '', SPYFU_API_KEY: '', ANTHROPIC_API_KEY: '', SMTP_HOST: '', PUBLIC_URL: '' };

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => done(port));
    });
  });
}

/** The shipped pipelines in a fresh folder, the config's daemon port set to `configPort`. */
function project(configPort: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'flows-links-'));
  cpSync(resolve(import.meta.dirname, '..', 'pipelines'), join(dir, 'pipelines'), { recursive: true });
  const file = join(dir, 'pipelines', 'flows.config.yaml');
  const config = readFileSync(file, 'utf8');
  expect(config).not.toMatch(/^public_url:/m); // the shipped config leaves it to the daemon
  writeFileSync(file, config.replace(/^(\s+port:) 8080/m, `$1 ${configPort}`));
  return dir;
}

async function listening(daemon: ReturnType<typeof startCli>): Promise<string> {
  let url = '';
  await eventually(() => {
    if (daemon.child.exitCode !== null) throw new Error(`the daemon exited: ${daemon.output()}`);
    url = /listening on (http:\/\/[^\s"]+)/.exec(daemon.output())?.[1] ?? '';
    return Boolean(url);
  }, 'the daemon to listen', 60_000);
  return url;
}

describe.runIf(hasChromium)('report links', () => {
  it("the emailed link of a paid report names the daemon's real port, not the config's", async () => {
    const configPort = await freePort();
    const dir = project(configPort);
    const port = await freePort();
    const daemon = startCli(['--db', join(dir, 'db'), 'daemon', '--port', String(port)], { cwd: dir, env: { ...env, FLOWS_LOG_LEVEL: 'info' } });
    try {
      const url = await listening(daemon);
      const session = checkoutSession('cs_links_1', { metadata: { domain: 'acme-widgets.com' } });
      const req = signedStripeRequest(stripeEvent('evt_links_1', 'checkout.session.completed', session), SECRET);
      const answer = await fetch(`${url}/hooks/stripe`, { method: 'POST', body: req.body, headers: req.headers });
      expect(answer.status).toBe(200);
      const outbox = join(dir, '.flows', 'outbox');
      await eventually(() => existsSync(outbox) && readdirSync(outbox).some((f) => f.endsWith('.eml')), 'the email', 120_000);
      const [file] = readdirSync(outbox).filter((f) => f.endsWith('.eml'));
      const mail = await simpleParser(readFileSync(join(outbox, file!)));
      const link = /http:\/\/127\.0\.0\.1:(\d+)\/reports\/[A-Za-z0-9_-]{32}/.exec(mail.text ?? '');
      expect(link?.[1]).toBe(String(port));
      for (const served of [link![0], `${link![0]}.pdf`]) {
        const res = await fetch(served); // the daemon serves it there, as the type it says
        expect(res.status).toBe(200);
        expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      }
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.done;
    }
  }, 180_000);

  it('flows report prints the local files and says that no daemon serves the link', async () => {
    const configPort = await freePort();
    const dir = project(configPort);
    const r = await cli(['--db', join(dir, 'db'), 'report', 'acme-widgets.com'], { cwd: dir, env });
    expect(r.code).toBe(0);
    const html = /^ {2}html file: (\S+)$/m.exec(r.stdout)?.[1];
    const pdf = /^ {2}pdf file: +(\S+)$/m.exec(r.stdout)?.[1];
    expect(html).toMatch(/^\.flows\/reports\/.+\.html$/);
    expect(pdf).toMatch(/^\.flows\/reports\/.+\.pdf$/);
    expect(readFileSync(join(dir, html!), 'utf8')).toContain('acme-widgets.com');
    expect(readFileSync(join(dir, pdf!)).subarray(0, 5).toString()).toBe('%PDF-');
    expect(r.stdout).toContain(`  page: http://127.0.0.1:${configPort}/reports/`);
    expect(r.stdout).toContain(`no daemon answers at http://127.0.0.1:${configPort} now: the links work while flows daemon runs there`);
  }, 180_000);

  it.runIf(process.env.TEST_DATABASE_URL)('flows report says when a daemon serves the link', async () => {
    const configPort = await freePort();
    const dir = project(configPort);
    const { url, drop } = await createPostgresDatabase(process.env.TEST_DATABASE_URL!);
    const daemon = startCli(['--db', url, 'daemon'], { cwd: dir, env: { ...env, FLOWS_LOG_LEVEL: 'info' } });
    try {
      await listening(daemon);
      const r = await cli(['--db', url, 'report', 'acme-widgets.com', '--json'], { cwd: dir, env });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ served: true, url: expect.stringContaining(`http://127.0.0.1:${configPort}/reports/`) });
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.done;
      await drop();
    }
  }, 180_000);
});
