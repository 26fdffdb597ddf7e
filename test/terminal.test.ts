import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { RunEvents } from '../engine/events.ts';
import { showProgress, statusOf } from '../engine/cli/progress.ts';
import { Terminal } from '../engine/cli/terminal.ts';
import { createLogger } from '../engine/log.ts';
import { FLOWS_BIN } from './helpers/cli.ts';
import { renderScreen } from './helpers/screen.ts';

/** A stream that says it is a terminal 100 columns wide, and keeps what is written to it. */
function fakeTty(): { stream: NodeJS.WriteStream; written: () => string } {
  const stream = new PassThrough() as unknown as NodeJS.WriteStream & { isTTY: boolean; columns: number };
  let written = '';
  stream.isTTY = true;
  stream.columns = 100;
  (stream as unknown as PassThrough).on('data', (d) => (written += d));
  return { stream, written: () => written };
}

const hasScript = spawnSync('script', ['--version']).status === 0;

describe('the terminal', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('prints log records as short lines with their context, the message never cut', () => {
    const { stream } = fakeTty();
    const terminal = new Terminal(stream, false);
    const line = terminal.formatRecord(
      JSON.stringify({ level: 'warn', time: '2026-12-01T09:03:04.120Z', msg: 'SEMrush: no key (set SEMRUSH_API_KEY to use the live API)', run: 'r_1', step: 'collect', item: 'x'.repeat(200) }),
    );
    expect(line.startsWith('09:03:04 WARN  SEMrush: no key (set SEMRUSH_API_KEY to use the live API)  step=collect item=xxx')).toBe(true);
    expect(line.length).toBeLessThanOrEqual(100);
    expect(line.endsWith('…')).toBe(true);
    const failed = terminal.formatRecord(JSON.stringify({ level: 'error', time: '2026-12-01T09:03:05.000Z', msg: 'item failed', err: 'HTTP 503' }));
    expect(failed).toBe('09:03:05 ERROR item failed: HTTP 503');
    expect(new Terminal(stream, true).formatRecord(JSON.stringify({ level: 'info', time: '2026-12-01T09:03:05.000Z', msg: 'm' }))).toContain('\x1b[36mINFO \x1b[0m');
  });

  it('keeps log lines whole above the bars while they redraw', () => {
    vi.useFakeTimers();
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { stream, written } = fakeTty();
    const terminal = new Terminal(stream, false);
    const log = createLogger({ scrub: (a) => a, destination: terminal.logDestination() });
    const events = new RunEvents();
    const stop = showProgress(events, log, terminal);
    events.emit('step:start', { runId: 'r', stepId: 'collect', total: 6 });
    for (let i = 0; i < 6; i++) {
      events.emit('item:start', { runId: 'r', stepId: 'collect', itemKey: `d${i}` });
      log.warn({ step: 'collect', item: `d${i}` }, `SEMrush: no key for d${i} (set SEMRUSH_API_KEY)`);
      vi.advanceTimersByTime(120); // the bars redraw ten times a second, on their own timer
      events.emit('item:done', { runId: 'r', stepId: 'collect', itemKey: `d${i}`, status: 'succeeded' });
    }
    const long = `a message longer than the terminal: ${'word '.repeat(30)}end`;
    log.error(long);
    vi.advanceTimersByTime(120);
    events.emit('step:finish', { runId: 'r', stepId: 'collect', status: 'completed' });
    stop();
    const screen = renderScreen(written(), 100).filter(Boolean);
    const logs = screen.filter((row) => row.includes('SEMrush'));
    expect(logs).toHaveLength(6);
    logs.forEach((row, i) => expect(row).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d WARN  SEMrush: no key for d${i} \\(set SEMRUSH_API_KEY\\)  step=collect item=d${i}$`)));
    expect(screen.at(-1)).toMatch(/^ collect\s+\|█+\| 6\/6 items \| [\d.]+\/s \| ETA 0s \| \d+s$/);
    expect(screen.indexOf(logs.at(-1)!)).toBeLessThan(screen.length - 1);
    // Wrapped over rows, not cut at the edge.
    expect(screen.join('')).toContain(`ERROR ${long}`);
  });

  it('says what a step is doing before its first item ends', () => {
    const now = Date.parse('2026-12-01T09:00:00Z');
    expect(statusOf({ started: now, begun: 0, done: 0, failed: 0, total: 85 }, now)).toBe('starting, 0s');
    expect(statusOf({ started: now, begun: 4, done: 0, failed: 0, total: 85 }, now + 3_400)).toBe('4 under way, 3.0s');
    expect(statusOf({ started: now, begun: 12, done: 10, failed: 1, total: 85 }, now + 5_000)).toBe('2.0/s | ETA 38s | 5.0s | 1 failed');
  });

  it.skipIf(!hasScript)('shows a real run on a terminal as readable lines above its bar', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flows-tty-'));
    dirs.push(dir);
    mkdirSync(join(dir, 'pipelines'));
    writeFileSync(join(dir, 'pipelines', 'flows.config.yaml'), 'rate_limits:\n  slow: { per_second: 10, concurrency: 1 }\n');
    writeFileSync(
      join(dir, 'pipelines', 'slow.yaml'),
      `name: slow
trigger: { manual: {} }
steps:
  - id: items
    uses: transform
    with: { value: "\${{ range(0, 12) }}" }
  - id: each
    foreach: "\${{ steps.items.output.value }}"
    steps:
      - id: note
        uses: event.emit
        rate_limit: slow
        with: { type: noted, key: "n-\${{ item }}" }
      - id: say
        uses: log
        with: { level: warn, message: "SEMrush: no key for item \${{ item }} (set SEMRUSH_API_KEY to use the live API)" }
`,
    );
    const command = `stty cols 100 rows 60; exec ${process.execPath} ${FLOWS_BIN} --db ${join(dir, 'db')} run slow`;
    const r = spawnSync('script', ['-qefc', command, '/dev/null'], { cwd: dir, encoding: 'utf8', env: { ...process.env, FLOWS_LOG_LEVEL: 'warn', DATABASE_URL: '', NO_COLOR: '1' }, timeout: 60_000 });
    expect(r.status).toBe(0);
    const screen = renderScreen(r.stdout, 100);
    expect(screen.join('\n')).not.toContain('{"level"');
    const logs = screen.filter((row) => row.includes('SEMrush'));
    expect(logs).toHaveLength(12);
    for (const row of logs) expect(row).toMatch(/^\d\d:\d\d:\d\d WARN  SEMrush: no key for item \d+ \(set SEMRUSH_API_KEY to use the live API\)  step=say/);
    expect(screen.some((row) => /^ each\s+\|█+\| 12\/12 items/.test(row))).toBe(true);
  });
});
