import { countingSpans, type CapUse, decide, type QuotaUse } from './quota-policy.ts';
import type { QuotaRules } from './quota-spec.ts';
import type { Span } from './periods.ts';

/** Where a planned effect falls under its quota: when, in which sending window, and why it waits. */
export interface Slot {
  /** When the effect would happen (the run's clock moves on by waiting, as here). */
  at: string;
  /** The sending window holding `at` (UTC, ISO). */
  window_start: string;
  window_end: string;
  /** 1-based place of the effect in its first cap's period (its day, for a day cap). */
  position: number;
  /** Local reading of the window, e.g. "Mon 30 Nov 09:00-17:00 Europe/London". */
  label: string;
  /** What it waits for first, when it cannot happen at once. */
  waits?: string;
  /** The key a picking quota chose (the mailbox). */
  key?: string;
}

/**
 * The dry run's stand-in for the quota ledger of one quota and key: it starts from what the
 * ledger holds and admits each planned effect by the same decision the run makes (decide()),
 * moving its clock as the run's would by waiting. With the run's clock and the same order of
 * effects, the run puts every effect exactly where this predicts.
 */
export class QuotaSimulator {
  private readonly times: number[];

  constructor(
    private readonly rules: QuotaRules,
    /** Effects the ledger holds under this quota and key, from lookbackStart(), in time order. */
    history: readonly Date[],
    private readonly pause: QuotaUse['pause'],
  ) {
    this.times = history.map((d) => d.getTime()).sort((a, b) => a - b);
  }

  /**
   * When the next effect could happen, tried first at `from`, by the run's decisions; what it
   * waits for first; and whether it never can without a person (an open-ended pause).
   */
  earliest(from: Date, gapMs: number, rules: QuotaRules = this.rules): { at: Date; waits?: string; blocked: boolean } {
    let at = from;
    let waits: string | undefined;
    for (let guard = 0; ; guard++) {
      if (guard > 10_000) throw new Error(`quota ${this.rules.quota}: no time with room found (is every cap 0?)`);
      const decision = decide(rules, this.useAt(at), at, gapMs);
      if (decision.ok) return { at, waits, blocked: false };
      waits ??= decision.reason;
      at = decision.until;
      // Paused until a person resumes it: the plan cannot say when.
      if (this.pause && !this.pause.until) return { at, waits: decision.reason, blocked: true };
    }
  }

  /**
   * The slot of the next effect, tried first at `from` (when the run gets to it), whose
   * spacing gap is `gapMs`; `rules` are this key's, with the window read in the effect's own
   * timezone when it has one (quota_timezone): the history counted is the same.
   */
  admit(from: Date, gapMs: number, rules: QuotaRules = this.rules): Slot {
    const { at, waits } = this.earliest(from, gapMs, rules);
    const first = countingSpans(rules, at)[0];
    const position = first ? this.count(first) + 1 : 1;
    this.times.splice(this.indexOf(at.getTime() + 1), 0, at.getTime());
    const window = rules.calendar.windowAt(at) ?? { start: at, end: at };
    return { at: at.toISOString(), window_start: window.start.toISOString(), window_end: window.end.toISOString(), position, label: rules.calendar.label(window), waits };
  }

  /** Takes back one effect admitted at `at`. */
  remove(at: Date): void {
    const i = this.indexOf(at.getTime());
    if (this.times[i] === at.getTime()) this.times.splice(i, 1);
  }

  /**
   * The quota's use as a decision at `at` sees it: each cap's count and oldest effect in its
   * span, the latest effect planned so far, and the pause (what a picking quota compares).
   */
  useAt(at: Date): QuotaUse {
    const caps: CapUse[] = countingSpans(this.rules, at).map((span) => ({ count: this.count(span), oldest: this.oldest(span) }));
    // Spacing counts from the latest effect planned so far, even one planned at a later time
    // (by an item in flight on another lane): an effect is never put in before it, where it
    // would leave less than the gap to it. The run does the same: that later effect, waiting
    // at the time, would wait its gap after this one.
    const last = this.times.length ? new Date(this.times[this.times.length - 1]!) : null;
    return { caps, last, pause: this.pauseAt(at) };
  }

  private pauseAt(at: Date): QuotaUse['pause'] {
    if (!this.pause) return undefined;
    return this.pause.until && this.pause.until <= at ? undefined : this.pause;
  }

  private count(span: Span): number {
    return this.indexOf(span.end.getTime()) - this.indexOf(span.start.getTime());
  }

  private oldest(span: Span): Date | null {
    const i = this.indexOf(span.start.getTime());
    return i < this.times.length && this.times[i]! < span.end.getTime() ? new Date(this.times[i]!) : null;
  }

  /** First index whose time is >= t. */
  private indexOf(t: number): number {
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.times[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
