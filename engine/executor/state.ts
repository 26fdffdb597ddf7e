import type { Cost } from '../cost.ts';
import type { RunStatus, StepStatus } from '../db/tables.ts';

/** Why a run stopped taking work before its end: a long quota wait (park) or a spent budget (halt). */
export interface Pause {
  until: Date;
  reason: string;
}

/**
 * What changes while a run goes, and the one place its status moves:
 *
 *   running -> completed | completed_with_errors      every step ended
 *           -> failed | needs_attention              a step failed (later steps do not run)
 *           -> interrupted                           a stop request left work undone
 *           -> waiting                               parked for a quota window, or halted
 *                                                    by a spent budget, until a time
 */
export class RunState {
  private outcome: 'completed' | 'completed_with_errors' | 'failed' | 'needs_attention' | 'interrupted' = 'completed';
  error?: string;
  readonly costByStep = new Map<string, Cost>();
  readonly notes: { step: string; text: string }[] = [];
  /** Effects in doubt after a crash that were performed again (the step allows it). */
  readonly repeated: { step: string; key: string }[] = [];
  /** The latest quota wait, as recorded on the run. */
  waiting?: Pause;
  private parked?: Pause;
  private halted?: Pause;
  private readonly parkController = new AbortController();
  private readonly haltController = new AbortController();
  /** Aborts when the run must take no new work: a stop request, a park or a halt. */
  readonly noNewWork: AbortSignal;

  constructor(private readonly stop: AbortSignal) {
    this.noNewWork = AbortSignal.any([stop, this.parkController.signal, this.haltController.signal]);
  }

  /** Whether later steps may still run. */
  get going(): boolean {
    return this.outcome === 'completed' || this.outcome === 'completed_with_errors';
  }

  /** A quota wait too long to sleep through: in-flight items finish, the run waits for `until`. */
  park(until: Date, reason: string): void {
    if (!this.parked || until < this.parked.until) this.parked = { until, reason };
    this.parkController.abort();
  }

  /** A spent budget: the run takes no more work and waits for its next period. */
  halt(until: Date, reason: string): boolean {
    const first = !this.haltController.signal.aborted;
    if (!this.halted || until < this.halted.until) this.halted = { until, reason };
    this.haltController.abort();
    return first;
  }

  /** Records how a step ended. */
  stepEnded(stepId: string, status: StepStatus | 'running', error?: string, attention?: boolean): void {
    if (status === 'running') {
      this.outcome = 'interrupted';
    } else if (attention) {
      this.outcome = 'needs_attention';
      this.error = `step ${stepId}: ${error}`;
    } else if (status === 'failed') {
      this.outcome = 'failed';
      this.error = `step ${stepId} failed: ${error}`;
    } else if (status === 'completed_with_errors' && this.outcome === 'completed') {
      this.outcome = 'completed_with_errors';
    }
  }

  /** A stop request came before the step could start. */
  interrupted(): void {
    if (this.going) this.outcome = 'interrupted';
  }

  /** The wait the run ends with, if it ends waiting: a halt wins over a park. */
  get wait(): Pause | undefined {
    if (this.outcome !== 'interrupted' || this.stop.aborted) return undefined;
    return this.halted ?? this.parked;
  }

  get status(): RunStatus {
    return this.wait ? 'waiting' : this.outcome;
  }

  /** The message the run ends with: its failure, or why it waits for a budget. */
  get message(): string | undefined {
    return this.error ?? (this.wait && this.halted ? this.halted.reason : undefined);
  }
}
