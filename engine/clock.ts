/**
 * Time is injected: the engine never reads the wall clock or sleeps on a real timer
 * except through a Clock, so tests can run schedules, backoffs and quota windows
 * without waiting.
 */
export interface Clock {
  now(): Date;
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Resolves at `time` (at once if it has passed), or rejects when the signal aborts first. */
  sleepUntil(time: Date, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => new Date(),
  sleepUntil: (time, signal) => systemClock.sleep(Math.max(0, time.getTime() - Date.now()), signal),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/**
 * A clock for tests: time moves only when slept through or advanced. A sleep moves time to
 * the moment it ends (never back): sleepers that start together wake at the same moment,
 * as they would on a real clock, without anyone waiting.
 */
export class ManualClock implements Clock {
  readonly sleeps: number[] = [];
  constructor(private current: Date = new Date('2026-11-23T09:00:00Z')) {}
  now(): Date {
    return new Date(this.current);
  }
  advance(ms: number): void {
    this.current = new Date(this.current.getTime() + ms);
  }
  async sleepUntil(time: Date, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw signal.reason;
    this.sleeps.push(Math.max(0, time.getTime() - this.current.getTime()));
    await Promise.resolve();
    if (time > this.current) this.current = new Date(time);
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw signal.reason;
    this.sleeps.push(ms);
    const end = this.current.getTime() + ms;
    await Promise.resolve();
    if (end > this.current.getTime()) this.current = new Date(end);
  }
}
