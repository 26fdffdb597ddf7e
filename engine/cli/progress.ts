import cliProgress from 'cli-progress';
import { formatDuration } from '../duration.ts';
import type { RunEvents } from '../events.ts';
import type { Logger } from '../log.ts';

/**
 * Shows foreach progress: a bar per step on a terminal (done/total, rate, ETA); elsewhere a
 * progress log record every few seconds, so log collectors see it in the same stream.
 * Returns a function that stops it.
 */
export function showProgress(events: RunEvents, log: Logger, stream: NodeJS.WriteStream = process.stderr, intervalMs = 5000): () => void {
  const tty = Boolean(stream.isTTY);
  const multi = tty
    ? new cliProgress.MultiBar(
        {
          stream,
          format: ' {step} |{bar}| {value}/{total} items | {rate}/s | ETA {eta_formatted}',
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 200,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let lastWait = '';
  const steps = new Map<string, { bar?: cliProgress.SingleBar; done: number; total?: number; started: number; lastLine: number }>();
  const offs = [
    events.on('step:start', ({ stepId, total }) => {
      if (total === undefined) return;
      const bar = multi?.create(total, 0, { step: stepId.padEnd(12), rate: '0' });
      steps.set(stepId, { bar, done: 0, total, started: Date.now(), lastLine: Date.now() });
    }),
    events.on('item:done', ({ stepId }) => {
      const s = steps.get(stepId);
      if (!s) return;
      s.done += 1;
      const elapsed = (Date.now() - s.started) / 1000;
      const rate = elapsed > 0 ? s.done / elapsed : 0;
      if (s.bar) s.bar.update(s.done, { rate: rate.toFixed(0) });
      else if (Date.now() - s.lastLine >= intervalMs || s.done === s.total) {
        s.lastLine = Date.now();
        const eta = rate > 0 && s.total ? formatDuration(((s.total - s.done) / rate) * 1000) : '?';
        log.info({ step: stepId, done: s.done, total: s.total, per_second: Math.round(rate) }, `${stepId}: ${s.done}/${s.total ?? '?'} items (${rate.toFixed(0)}/s, ETA ${eta})`);
      }
    }),
    events.on('step:finish', ({ stepId }) => steps.get(stepId)?.bar?.stop()),
    // A wait for a quota window can be long: say so above the bars (off a terminal the log says it).
    events.on('quota:wait', ({ until, reason }) => {
      const line = `waiting until ${until.toISOString()}: ${reason} (Ctrl-C to stop)\n`;
      if (multi && line !== lastWait) multi.log(line);
      lastWait = line;
    }),
  ];
  return () => {
    for (const off of offs) off();
    multi?.stop();
  };
}
