import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, startCli } from './helpers/cli.ts';
import { eventually } from './helpers/eventually.ts';

/** `flows daemon` on the shipped pipelines, as on a fresh clone: what it asks for, what it serves. */

const shipped = resolve(import.meta.dirname, '..', 'pipelines');
const noSecrets = { STRIPE_WEBHOOK_SECRET: '', DEMO_WEBHOOK_SECRET: '' };

describe('flows daemon on a fresh clone', () => {
  it('names every missing secret in one message, with the pipeline that needs it and how to set it', async () => {
    const r = await cli(['--dir', shipped, '--db', 'memory://', 'daemon', '--port', '0'], { cwd: mkdtempSync(join(tmpdir(), 'flows-start-')), env: noSecrets });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'flows: 1 secret is not set (see "Environment variables" in the README):\n' +
        '  webhook verifier "stripe" (used by pipeline paid-report) has no secret: set the environment variable STRIPE_WEBHOOK_SECRET (it checks POST /hooks/stripe)\n',
    );
  });

  it("lists them all at once when several are missing", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flows-start-'));
    mkdirSync(join(dir, 'pipelines'));
    writeFileSync(
      join(dir, 'pipelines', 'flows.config.yaml'),
      [
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
    const r = await cli(['--db', 'memory://', 'daemon', '--port', '0'], { cwd: dir, env: { SHOP_SECRET: '', FORMS_SECRET: '' } });
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      'flows: 3 secrets are not set (see "Environment variables" in the README):',
      '  webhook verifier "shop" (used by pipeline orders) has no secret: set the environment variable SHOP_SECRET (it checks POST /hooks/orders)',
      '  webhook verifier "shop" (used by pipeline refunds) has no secret: set the environment variable SHOP_SECRET (it checks POST /hooks/refunds)',
      '  webhook verifier "forms" (used by pipeline signups) has no secret: set the environment variable FORMS_SECRET (it checks POST /hooks/signups)',
    ]);
  });

  it("serves the business pipelines only: the demo's are not scheduled and not routed", async () => {
    const daemon = startCli(['--dir', shipped, '--db', 'memory://', 'daemon', '--port', '0'], {
      cwd: mkdtempSync(join(tmpdir(), 'flows-start-')),
      env: { ...noSecrets, STRIPE_WEBHOOK_SECRET: 'whsec_test', FLOWS_LOG_LEVEL: 'info' },
    });
    try {
      let url = '';
      await eventually(() => {
        if (daemon.child.exitCode !== null) throw new Error(`the daemon exited: ${daemon.output()}`);
        url = /listening on (http:\/\/[^\s"]+)/.exec(daemon.output())?.[1] ?? '';
        return Boolean(url);
      }, 'the daemon to listen', 60_000);
      const started = daemon
        .output()
        .split('\n')
        .map((line) => (line.startsWith('{') ? (JSON.parse(line) as { msg: string; pipelines?: string[] }) : undefined))
        .find((record) => record?.msg.startsWith('flows daemon listening'));
      expect(started?.pipelines).toEqual(['paid-report (webhook)', 'weekly-enrich (schedule)']);
      const demoHook = await fetch(`${url}/hooks/demo-signup`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
      expect(demoHook.status).toBe(404);
    } finally {
      daemon.child.kill('SIGTERM');
      expect((await daemon.done).code).toBe(0);
    }
  }, 90_000);
});
