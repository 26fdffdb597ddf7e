import { NonRetriableError } from '../errors.ts';
import type { RunContext } from './context.ts';

/** Thrown out of a wait for a gate when the run stops taking work: the item stays pending for a resume. */
export class StoppedWaitingError extends NonRetriableError {
  constructor(
    readonly until: Date,
    reason: string,
  ) {
    super(`stopped while waiting (${reason}; goes on ${until.toISOString()})`);
  }
}

/** Whether `err`, or an error it wraps, is a StoppedWaitingError. */
export function stoppedWaiting(err: unknown): boolean {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) if (e instanceof StoppedWaitingError) return true;
  return false;
}

/**
 * Waits as a gate said. A spent budget (scope run) stops the run at once: it ends waiting
 * for the budget's next period. A quota (scope item) makes the item wait: it sleeps until
 * the time, saying so on the run, unless the wait is longer than the daemon's park_after
 * (the run is then parked and queued again for the time) or the run is asked to stop.
 */
export async function waitForGate(rc: RunContext, wait: { until: Date; reason: string; scope: 'item' | 'run' }): Promise<void> {
  const { until, reason } = wait;
  if (wait.scope === 'run') {
    if (rc.state.halt(until, reason)) rc.log.warn({ until: until.toISOString() }, reason);
    throw new StoppedWaitingError(until, reason);
  }
  if (until <= rc.clock.now()) return;
  if (rc.state.waiting?.until.getTime() !== until.getTime()) {
    rc.state.waiting = { until, reason };
    await rc.store.runs.setWaiting(rc.runId, until, reason);
    rc.log.info({ until: until.toISOString(), reason }, 'waiting for a quota');
  }
  rc.events.emit('quota:wait', { runId: rc.runId, until, reason });
  if (rc.parkAfterMs !== undefined && until.getTime() - rc.clock.now().getTime() > rc.parkAfterMs) {
    rc.state.park(until, reason);
    throw new StoppedWaitingError(until, reason);
  }
  try {
    await rc.clock.sleepUntil(until, AbortSignal.any([rc.stop, rc.abort]));
  } catch {
    throw new StoppedWaitingError(until, reason);
  }
}
