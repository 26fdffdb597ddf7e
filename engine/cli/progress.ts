import cliProgress from 'cli-progress';
import { formatDuration } from '../duration.ts';
import type { RunEvents } from '../events.ts';
import type { Logger } from '../log.ts';
import { stderrTerminal, type Terminal } from './terminal.ts';

interface StepProgress {
  bar?: cliProgress.SingleBar;
  started: number;
  begun: number;
  done: number;
  failed: number;
  total?: number;
  lastLine: number;
}

/**
 * Shows foreach progress: a bar per step on a terminal (done/total, then rate and ETA once
 * items finish; before that, how many are under way and for how long); elsewhere a progress
 * log record every few seconds, so log collectors see it in the same stream. Log lines are
 * printed above the bars (see Terminal), never across them. Returns a function that stops it.
 */
export function showProgress(events: RunEvents, log: Logger, terminal: Terminal = stderrTerminal, intervalMs = 5000): () => void {
  const multi = terminal.isTTY
    ? new cliProgress.MultiBar(
        {
          stream: terminal.stream,
          format: ' {step} |{bar}| {value}/{total} items | {status}',
          hideCursor: true,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let lastWait = '';
  const steps = new Map<string, StepProgress>();
  const redraw = (s: StepProgress) => s.bar?.update(s.done, { status: statusOf(s) });
  // The elapsed time moves while no item finishes: the bars say so every second.
  const ticker = multi ? setInterval(() => steps.forEach(redraw), 1000) : undefined;
  ticker?.unref();

  const offs = [
    events.on('step:start', ({ stepId, total }) => {
      if (total === undefined) return;
      const now = Date.now();
      const s: StepProgress = { started: now, begun: 0, done: 0, failed: 0, total, lastLine: now };
      if (multi) {
        terminal.drawBars(multi);
        s.bar = multi.create(total, 0, { step: stepId.padEnd(12), status: statusOf(s) });
      }
      steps.set(stepId, s);
    }),
    events.on('item:start', ({ stepId }) => {
      const s = steps.get(stepId);
      if (!s) return;
      s.begun += 1;
      if (s.done === 0) redraw(s);
    }),
    events.on('item:done', ({ stepId, status }) => {
      const s = steps.get(stepId);
      if (!s) return;
      s.done += 1;
      if (status === 'failed') s.failed += 1;
      if (s.bar) return redraw(s);
      if (Date.now() - s.lastLine >= intervalMs || s.done === s.total) {
        s.lastLine = Date.now();
        const rate = ratePerSecond(s);
        const eta = rate > 0 && s.total ? formatDuration(((s.total - s.done) / rate) * 1000) : '?';
        log.info({ step: stepId, done: s.done, total: s.total, per_second: Math.round(rate) }, `${stepId}: ${s.done}/${s.total ?? '?'} items (${rate.toFixed(0)}/s, ETA ${eta})`);
      }
    }),
    events.on('step:finish', ({ stepId }) => {
      const s = steps.get(stepId);
      if (!s?.bar) return;
      redraw(s);
      s.bar.stop();
      steps.delete(stepId);
    }),
    // A wait for a quota window can be long: say so above the bars (off a terminal the log says it).
    events.on('quota:wait', ({ until, reason }) => {
      const line = `waiting until ${until.toISOString()}: ${reason} (Ctrl-C to stop)`;
      if (multi && line !== lastWait) terminal.print(line);
      lastWait = line;
    }),
  ];
  return () => {
    for (const off of offs) off();
    if (ticker) clearInterval(ticker);
    if (!multi) return;
    // Lines printed since the last redraw are still in the bars' buffer: draw them, then stop.
    multi.update();
    multi.stop();
    terminal.drawBars(undefined);
  };
}

function ratePerSecond(s: Pick<StepProgress, 'started' | 'done'>, now = Date.now()): number {
  const elapsed = (now - s.started) / 1000;
  return elapsed > 0 ? s.done / elapsed : 0;
}

/** Whole seconds: a bar's clock that ticks once a second. */
function elapsedText(ms: number): string {
  return ms < 1000 ? '0s' : formatDuration(Math.floor(ms / 1000) * 1000);
}

/** What the bar says after its count: under way before the first item ends, then rate and ETA. */
export function statusOf(s: Pick<StepProgress, 'started' | 'begun' | 'done' | 'failed' | 'total'>, now = Date.now()): string {
  const elapsed = elapsedText(now - s.started);
  const failed = s.failed ? ` | ${s.failed} failed` : '';
  if (s.done === 0) return s.begun ? `${s.begun} under way, ${elapsed}` : `starting, ${elapsed}`;
  const rate = ratePerSecond(s, now);
  const left = s.total !== undefined && rate > 0 ? formatDuration(((s.total - s.done) / rate) * 1000) : '?';
  const perSecond = rate >= 10 ? rate.toFixed(0) : rate.toFixed(1);
  return `${perSecond}/s | ETA ${s.done === s.total ? '0s' : left} | ${elapsed}${failed}`;
}
