import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from './helpers/cli.ts';

describe('flows demo', () => {
  it('runs end to end on a fresh embedded database, twice', async () => {
    const data = join(mkdtempSync(join(tmpdir(), 'flows-demo-')), 'db');
    const root = resolve(import.meta.dirname, '..');
    for (const round of [1, 2]) {
      const r = await cli(['demo', '--data', data], { cwd: root });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/1\. Validated examples\/demo\.yaml and pipelines\/flows\.config\.yaml/); // the demo's own folder
      expect(r.stdout).toMatch(/3\. The run:/);
      expect(r.stdout).toMatch(/notify effects performed this time: 0/);
      expect(r.stdout).toMatch(/POST \/hooks\/demo-signup \(signed\):\s+200 started, run r-\S+/);
      expect(r.stdout).toMatch(/the same event again \(a replay\):\s+200 duplicate/);
      expect(r.stdout).toMatch(/a forged signature:\s+400 bad x-demo-signature signature/);
      expect(r.stdout).toMatch(/the event started demo-welcome:\s+run r-\S+: completed/);
      expect(r.stdout).toMatch(/demo-welcome runs for it: 1 \(dedupe/);
      expect(r.stdout).toMatch(/demo-nightly run r-\S+: completed/);
      expect(r.stdout).toMatch(/flows_webhook_responses_total\{route="\/hooks\/demo-signup",status="400"\} 1/);
      expect(r.stdout, `round ${round}`).toMatch(/flows_queue_depth 0/);
      if (existsSync(process.env.CHROMIUM_PATH || '/usr/bin/chromium')) {
        expect(r.stdout).toMatch(/8\. A Stripe payment by new-signup-\S+/);
        expect(r.stdout).toMatch(/run r-\S+: completed in [\d.]+s: SEMrush and SpyFu data/);
        expect(r.stdout).toMatch(/\/reports\/[A-Za-z0-9_-]{32} \(200, HTML\) and \.pdf \(200, \d+ KiB\); an unknown token: 404/);
        expect(r.stdout).toMatch(/payments row: \$49\.00, channel email, campaign demo-week, variant B/);
        expect(r.stdout).toMatch(/another event for the same session: duplicate/);
        expect(r.stdout).toMatch(/a payment naming no prospect and no domain: Stripe got 200; run r-\S+: needs_attention/);
        expect(r.stdout).toMatch(/9\. The weekly run \(weekly-enrich, Sundays 22:00 Europe\/London\)/);
        expect(r.stdout).toMatch(/read: 25 records from weekly-list, linkedin-search: 18 prospects, 3 duplicates merged, 4 invalid/);
        expect(r.stdout).toMatch(round === 1 ? /census: \d+ new, 0 stale \(to enrich\), 0 fresh/ : /census: 1 new, 0 stale \(to enrich\), \d+ fresh/); // the new signup of round 2
        expect(r.stdout).toMatch(/LinkedIn \d{4}-W\d\d: 14 prospects chosen, 14 reports ready/);
      }
    }
  }, 300_000);
});
