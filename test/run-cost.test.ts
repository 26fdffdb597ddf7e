import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './helpers/cli.ts';

const repo = resolve(import.meta.dirname, '..');

/** Every amount of money a text prints: "$1.63", "$1,390.94", "<$0.01". */
const amounts = (text: string) => [...text.matchAll(/<?\$[\d,]+(?:\.\d+)?/g)].map((m) => m[0]);

describe('the cost of a run, as the CLI prints it', () => {
  let dir: string;
  const flows = (...args: string[]) => cli(['--db', join(dir, 'db'), ...args], { cwd: dir });
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'flows-cost-'));
    cpSync(join(repo, 'pipelines'), join(dir, 'pipelines'), { recursive: true });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a dry run of weekly-enrich estimates the Claude batch of its reports; runs and show print the cost in cents', async () => {
    const dry = await flows('run', 'weekly-enrich', '--dry-run', '--json');
    expect(dry.code, dry.stderr).toBe(0);
    const result = JSON.parse(dry.stdout) as { run_id: string; cost: { units: Record<string, number>; usd: number } };
    expect(result.cost.units.claude_batch_input_tokens).toBeGreaterThan(0);
    expect(result.cost.units.claude_batch_output_tokens).toBeGreaterThan(0);
    expect(String(result.cost.usd)).toMatch(/^\d+(\.\d{1,6})?$/);

    const listed = await flows('runs');
    expect(listed.code).toBe(0);
    const header = listed.stdout.split('\n')[0]!;
    expect(header).toMatch(/\bcost$/);
    const row = listed.stdout.split('\n').find((l) => l.startsWith(result.run_id))!;
    expect(row.slice(header.indexOf('cost')).trim()).toBe(`$${result.cost.usd.toFixed(2)}`);

    const shown = await flows('show', result.run_id);
    expect(shown.code).toBe(0);
    const line = shown.stdout.split('\n').find((l) => l.startsWith('cost'))!;
    expect(line).toContain(`${result.cost.units.claude_batch_input_tokens} claude_batch_input_tokens`);
    expect(line).toMatch(/\(\$\d+\.\d{2}\) \(estimated\)$/);

    const stored = JSON.parse((await flows('runs', '--json')).stdout) as { id: string; cost: unknown }[];
    expect(stored.find((r) => r.id === result.run_id)!.cost).toEqual(result.cost);

    const text = await flows('run', 'weekly-enrich', '--dry-run');
    for (const printed of [text.stdout, listed.stdout, shown.stdout]) {
      expect(amounts(printed).length).toBeGreaterThan(0);
      for (const amount of amounts(printed)) expect(amount).toMatch(/^(<\$0\.01|\$[\d,]+\.\d{2})$/);
    }
  }, 120_000);
});
