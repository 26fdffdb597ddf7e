import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { chromiumPath } from '../connectors/browser/browser.ts';
import { type ClaudeSandbox, SANDBOX_API_KEY as CLAUDE_KEY, startClaudeSandbox } from '../connectors/claude/sandbox.ts';
import { SANDBOX_KEY as SEMRUSH_KEY, type SemrushSandbox, startSemrushSandbox } from '../connectors/semrush/sandbox.ts';
import { SANDBOX_API_KEY as SPYFU_KEY, type SpyfuSandbox, startSpyfuSandbox } from '../connectors/spyfu/sandbox.ts';
import { cli } from './helpers/cli.ts';

/**
 * A report made from any sandbox's answers says so, on its page and on every page of its
 * PDF; one made from the services themselves does not. `flows report` in a project of its
 * own: once without keys (every connector on its sandbox), once with keys for services
 * that happen to be the same simulators run by the test (live, as far as flows can tell).
 */
const root = join(import.meta.dirname, '..');
const haveChromium = existsSync(chromiumPath(process.env));
const NO_KEYS = { SEMRUSH_API_KEY: '', SPYFU_API_KEY: '', SPYFU_API_ID: '', ANTHROPIC_API_KEY: '' };

function project(connectors: Record<string, Record<string, unknown>> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'flows-sample-'));
  for (const folder of ['templates', 'prompts']) cpSync(join(root, 'pipelines', folder), join(dir, 'pipelines', folder), { recursive: true });
  const config = parse(readFileSync(join(root, 'pipelines', 'flows.config.yaml'), 'utf8'));
  for (const [name, settings] of Object.entries(connectors)) config.connectors[name] = { ...config.connectors[name], ...settings };
  writeFileSync(join(dir, 'pipelines', 'flows.config.yaml'), stringify(config));
  return dir;
}

/** Each page's text of a PDF. */
function pagesOf(pdf: string): string[] {
  const pages = Number(/^Pages:\s+(\d+)/m.exec(execFileSync('pdfinfo', [pdf], { encoding: 'utf8' }))![1]);
  return Array.from({ length: pages }, (_, i) => execFileSync('pdftotext', ['-f', String(i + 1), '-l', String(i + 1), '-layout', pdf, '-'], { encoding: 'utf8' }));
}

async function report(dir: string, env: Record<string, string>): Promise<{ html: string; pages: string[] }> {
  const out = join(dir, 'report.pdf');
  const result = await cli(['--db', join(dir, 'db'), 'report', 'acme-widgets.com', '--json', '--out', out], { cwd: dir, env });
  expect(result.code, result.stderr).toBe(0);
  const { html_key } = JSON.parse(result.stdout) as { html_key: string };
  return { html: readFileSync(join(dir, '.flows', 'reports', html_key), 'utf8'), pages: pagesOf(out) };
}

describe.runIf(haveChromium)('a report made from sandbox data', () => {
  let semrush: SemrushSandbox;
  let spyfu: SpyfuSandbox;
  let claude: ClaudeSandbox;
  beforeAll(async () => {
    [semrush, spyfu, claude] = await Promise.all([startSemrushSandbox(), startSpyfuSandbox(), startClaudeSandbox()]);
  });
  afterAll(async () => {
    await Promise.all([semrush?.close(), spyfu?.close(), claude?.close()]);
  });

  it('is marked as sample data on its page and on every page of its PDF', async () => {
    const { html, pages } = await report(project(), NO_KEYS);
    expect(html).toContain('<div class="sample-banner" role="note"><strong>Sample data, not a real analysis.</strong> This report was made from the local sandbox of SEMrush, SpyFu, Claude');
    expect(pages.length).toBeGreaterThan(1);
    expect(pages.filter((text) => !text.includes('SAMPLE DATA (SEMrush, SpyFu, Claude sandbox): not a real analysis'))).toEqual([]);
    expect(pages[0]).toContain('Sample data, not a real analysis.');
  }, 120_000);

  it('names only the services that were sandboxes, and a report from live services carries no mark', async () => {
    const live = {
      semrush: { base_url: semrush.url, key: '${{ env.SEMRUSH_API_KEY }}' },
      spyfu: { base_url: spyfu.url, api_key: '${{ env.SPYFU_API_KEY }}' },
      claude: { base_url: claude.url, api_key: '${{ env.ANTHROPIC_API_KEY }}' },
    };
    const keys = { SEMRUSH_API_KEY: SEMRUSH_KEY, SPYFU_API_KEY: SPYFU_KEY, ANTHROPIC_API_KEY: CLAUDE_KEY };
    const partly = await report(project(live), { ...keys, ANTHROPIC_API_KEY: '' });
    expect(partly.html).toContain('made from the local sandbox of Claude instead');
    expect(partly.pages.every((text) => text.includes('SAMPLE DATA (Claude sandbox)'))).toBe(true);

    const real = await report(project(live), keys);
    expect(real.html).not.toMatch(/class="sample-banner"|[Ss]ample data/);
    expect(real.pages.join('\n')).not.toContain('SAMPLE DATA');
  }, 180_000);
});
