import { Cron } from 'croner';
import type { Pipeline } from './pipeline/types.ts';

export interface Fire {
  /** The fire time in UTC. */
  at: Date;
  /** The same instant as a wall clock in the pipeline's timezone, e.g. "Sun 29 Nov 2026 22:00 GMT". */
  local: string;
}

/** The next `n` fire times of a scheduled pipeline after `from`, computed in its timezone (DST-correct). */
export function nextFires(pipeline: Pipeline, from: Date, n: number): Fire[] {
  if (pipeline.trigger.kind !== 'schedule') return [];
  const { cron, timezone } = pipeline.trigger;
  const job = new Cron(cron, { timezone, paused: true });
  const format = new Intl.DateTimeFormat('en-GB', {
    timeZone: timezone,
    weekday: 'short',
    day: '2-digit',
    month: 'short',
    year: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
    timeZoneName: 'short',
  });
  return job.nextRuns(n, from).map((at) => ({ at, local: format.format(at).replace(/,/g, '') }));
}
