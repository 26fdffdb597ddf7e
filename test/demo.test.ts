import { mkdtempSync } from 'node:fs';
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
    }
  });
});
