import { EventEmitter } from 'node:events';
import type { ItemStatus, RunStatus, StepStatus } from './db/tables.ts';

/** What a run tells the outside while it goes: progress bars, tests and metrics listen. */
export interface RunEventMap {
  'run:start': { runId: string; pipeline: string; dryRun: boolean; resumed: boolean };
  'step:start': { runId: string; stepId: string; total?: number };
  'item:start': { runId: string; stepId: string; itemKey: string };
  'item:done': { runId: string; stepId: string; itemKey: string; status: ItemStatus; error?: string };
  'step:finish': { runId: string; stepId: string; status: StepStatus };
  'effect:done': { runId: string; stepId: string; key: string; kind: string; repeated: boolean };
  'quota:wait': { runId: string; until: Date; reason: string };
  'run:finish': { runId: string; status: RunStatus };
}

export class RunEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  emit<K extends keyof RunEventMap>(event: K, payload: RunEventMap[K]): void {
    this.emitter.emit(event, payload);
  }

  on<K extends keyof RunEventMap>(event: K, listener: (payload: RunEventMap[K]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }

  /** Resolves on the first event that matches; tests wait on this instead of sleeping. */
  once<K extends keyof RunEventMap>(event: K, match: (payload: RunEventMap[K]) => boolean = () => true): Promise<RunEventMap[K]> {
    return new Promise((resolve) => {
      const off = this.on(event, (payload) => {
        if (!match(payload)) return;
        off();
        resolve(payload);
      });
    });
  }
}
