import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, startCli } from './helpers/cli.ts';
import { eventually } from './helpers/eventually.ts';
import { checkoutSession, signedStripeRequest, stripeEvent } from './helpers/stripe.ts';

const SECRET = 'whsec_fresh_clone';

/** `flows daemon` on the shipped pipelines, as on a fresh clone: what it asks for, what it serves. */

const shipped = resolve(import.meta.dirname, '..', 'pipelines');
const noSecrets = { STRIPE_WEBHOOK_SECRET: '', DEMO_WEBHOOK_SECRET: '' };
// No API key and no mail server: every connector that has a sandbox answers from it.
const noKeys = { SEMRUSH_API_KEY: '', SPYFU_API_KEY: '', ANTHROPIC_API_KEY: '', SMTP_HOST: '', PHANTOMBUSTER_API_KEY: '' };
const SANDBOXED = ['claude', 'phantombuster', 'semrush', 'smtp', 'spyfu'];

function startShipped(cwd: string, db: string) {
  return startCli(['--dir', shipped, '--db', db, 'daemon', '--port', '0'], { cwd, env: { ...noSecrets, ...noKeys, STRIPE_WEBHOOK_SECRET: SECRET, FLOWS_LOG_LEVEL: 'info' } });
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

/** The daemon's log records (every line of its log is JSON). */
function records(output: string): { level: string; msg: string; [field: string]: unknown }[] {
  return output
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

describe('flows daemon on a fresh clone', () => {
  it('names every missing secret in one message, with the pipeline that needs it and how to set it', async () => {
    const r = await cli(['--dir', shipped, '--db', 'memory://', 'daemon', '--port', '0'], { cwd: mkdtempSync(join(tmpdir(), 'flows-start-')), env: noSecrets });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'flows: 1 secret is not set (see "Environment variables" in the README):\n' +
        '  webhook verifier "stripe" (used by pipeline paid-report) has no secret: set the environment variable STRIPE_WEBHOOK_SECRET (it checks POST /hooks/stripe)\n',
    );
  });

  it('lists them all at once when several are missing, connector keys too under sandboxes: never', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flows-start-'));
    mkdirSync(join(dir, 'pipelines'));
    writeFileSync(
      join(dir, 'pipelines', 'flows.config.yaml'),
      [
        'sandboxes: never',
        'connectors:',
        '  semrush: { key: "${{ env.SEMRUSH_API_KEY }}" }',
        'webhooks:',
        '  verifiers:',
        '    shop: { type: hmac-sha256, secret: "${{ env.SHOP_SECRET }}", header: x-shop }',
        '    forms: { type: hmac-sha256, secret: "${{ env.FORMS_SECRET }}", header: x-forms }',
        '',
      ].join('\n'),
    );
    for (const [name, verifier] of [['orders', 'shop'], ['refunds', 'shop'], ['signups', 'forms']]) {
      writeFileSync(join(dir, 'pipelines', `${name}.yaml`), `name: ${name}\ntrigger: { webhook: { verify: ${verifier} } }\nsteps: [{ id: s, uses: log, with: { message: m } }]\n`);
    }
    const r = await cli(['--db', 'memory://', 'daemon', '--port', '0'], { cwd: dir, env: { SHOP_SECRET: '', FORMS_SECRET: '', SEMRUSH_API_KEY: '' } });
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      'flows: 4 secrets are not set (see "Environment variables" in the README):',
      '  webhook verifier "shop" (used by pipeline orders) has no secret: set the environment variable SHOP_SECRET (it checks POST /hooks/orders)',
      '  webhook verifier "shop" (used by pipeline refunds) has no secret: set the environment variable SHOP_SECRET (it checks POST /hooks/refunds)',
      '  webhook verifier "forms" (used by pipeline signups) has no secret: set the environment variable FORMS_SECRET (it checks POST /hooks/signups)',
      '  connector semrush: key not set (set the environment variable SEMRUSH_API_KEY); the config says sandboxes: never, so every run that uses it would fail',
    ]);
  });

  it("serves the business pipelines only: the demo's are not scheduled and not routed", async () => {
    const daemon = startShipped(mkdtempSync(join(tmpdir(), 'flows-start-')), 'memory://');
    try {
      const url = await listening(daemon);
      const started = records(daemon.output()).find((r) => r.msg.startsWith('flows daemon listening'));
      expect(started?.pipelines).toEqual(['click-report (event)', 'email-daily (schedule)', 'linkedin-daily (schedule)', 'paid-report (webhook)', 'weekly-enrich (schedule)']);
      const demoHook = await fetch(`${url}/hooks/demo-signup`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
      expect(demoHook.status).toBe(404);
    } finally {
      daemon.child.kill('SIGTERM');
      expect((await daemon.done).code).toBe(0);
    }
  }, 90_000);

  it('says at start which connectors answer from sandboxes, and /healthz reports them', async () => {
    const daemon = startShipped(mkdtempSync(join(tmpdir(), 'flows-start-')), 'memory://');
    try {
      const url = await listening(daemon);
      const warning = records(daemon.output()).find((r) => r.level === 'warn' && r.msg.startsWith('sandboxes answer for'));
      expect(warning?.sandboxes).toEqual(SANDBOXED);
      expect(warning?.msg).toContain('sample data');
      expect(warning?.msg).toContain('SEMRUSH_API_KEY');
      const health = (await (await fetch(`${url}/healthz`)).json()) as { status: string; sandboxes: string[] };
      expect(health).toMatchObject({ status: 'ok', sandboxes: SANDBOXED });
    } finally {
      daemon.child.kill('SIGTERM');
      expect((await daemon.done).code).toBe(0);
    }
  }, 90_000);

  it('makes no report from sandbox data for a live Stripe payment: the run needs attention and says why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flows-start-'));
    const db = join(dir, 'db');
    const daemon = startShipped(dir, db);
    let runId = '';
    try {
      const url = await listening(daemon);
      const session = checkoutSession('cs_live_1', { livemode: true, metadata: { domain: 'acme-widgets.com' } });
      const req = signedStripeRequest({ ...stripeEvent('evt_live_1', 'checkout.session.completed', session), livemode: true }, SECRET);
      const answer = await fetch(`${url}/hooks/stripe`, { method: 'POST', body: req.body, headers: req.headers });
      expect(answer.status).toBe(200);
      runId = ((await answer.json()) as { run_id: string }).run_id;
      await eventually(async () => /flows_runs\{pipeline="paid-report",status="(needs_attention|completed|failed)"\} 1/.test(await (await fetch(`${url}/metrics`)).text()), 'the run to end', 60_000);
    } finally {
      daemon.child.kill('SIGTERM');
      expect((await daemon.done).code).toBe(0);
    }
    const shown = await cli(['--dir', shipped, '--db', db, 'show', runId, '--json'], { cwd: dir });
    const run = JSON.parse(shown.stdout) as { run: { status: string; error: string }; steps: { step_id: string; status: string }[] };
    expect(run.run.status).toBe('needs_attention');
    expect(run.run.error).toMatch(/^step live_on_sandboxes: a live payment \(livemode\), but claude, phantombuster, semrush, smtp, spyfu answer from sandboxes \(sample data\): no report made/);
    expect(run.steps.map((s) => s.step_id)).not.toContain('intel');
    expect(run.steps.find((s) => s.step_id === 'payment')?.status).toBe('completed'); // the money is recorded all the same
  }, 120_000);
});
