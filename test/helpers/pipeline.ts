import { Type } from '@sinclair/typebox';
import type { EngineConfig } from '../../engine/config.ts';
import { DeferredError, formatDiagnostic, NonRetriableError, RetryAfterError } from '../../engine/errors.ts';
import { loadPipeline } from '../../engine/pipeline/load.ts';
import type { Pipeline } from '../../engine/pipeline/types.ts';
import type { StepRegistry } from '../../engine/registry.ts';
import { defineStep } from '../../engine/types.ts';
import { createRegistry } from '../../steps/index.ts';

export const testConfig: EngineConfig = {
  business: { name: 'Test Co', timezone: 'Europe/London' },
  quotas: { daily: { caps: { day: 2 }, days: ['mon', 'tue', 'wed', 'thu', 'fri'], window: '09:00-17:00' } },
  prices: { widget_unit: 0.5 },
};

export function pipelineFrom(yaml: string, registry: StepRegistry = testRegistry(), config: EngineConfig = testConfig): Pipeline {
  const { pipeline, diagnostics } = loadPipeline(yaml, 'test.yaml', { registry, config });
  if (!pipeline) throw new Error(diagnostics.map(formatDiagnostic).join('\n'));
  return pipeline;
}

export function diagnosticsOf(yaml: string, registry: StepRegistry = testRegistry(), config: EngineConfig = testConfig): string[] {
  return loadPipeline(yaml, 'p.yaml', { registry, config }).diagnostics.map(formatDiagnostic);
}

/** What the test step types did, shared with the tests that read it. */
export const calls = {
  performed: [] as string[],
  planned: [] as string[],
  /** The quota key each performed send ran with (the one a picking quota chose). */
  sent: [] as { to: string; quotaKey?: string }[],
  flaky: new Map<string, number>(),
  reset() {
    this.performed.length = 0;
    this.planned.length = 0;
    this.sent.length = 0;
    this.flaky.clear();
  },
};

/** An outside effect that tests can watch: run() records what was "sent". */
export const sendStep = defineStep({
  type: 'test.send',
  description: 'Records a send (test only).',
  input: Type.Object({ to: Type.String(), units: Type.Optional(Type.Number()), spent: Type.Optional(Type.Number()), defer_first: Type.Optional(Type.String()) }),
  output: Type.Object({ sent: Type.String() }),
  effect: {
    kind: () => 'message',
    cost: (input) => ({ widget_units: input.units ?? 1 }),
    describe: (input) => ({ summary: `message to ${input.to}`, identity: { to: input.to } }),
    plan: (_ctx, input) => {
      calls.planned.push(input.to);
      return { summary: `message to ${input.to}`, output: { sent: 'planned' }, artifacts: [{ name: 'message.txt', content: `Hello ${input.to}` }], cost: { widget_units: input.units ?? 1 } };
    },
  },
  async run(ctx, input) {
    calls.performed.push(input.to);
    // The first attempt for this recipient did not happen: come back after the given duration (a soft bounce).
    if (input.defer_first && calls.performed.filter((t) => t === input.to).length === 1) {
      throw new DeferredError(`soft bounce for ${input.to}`, new Date(ctx.clock.now().getTime() + Number(input.defer_first)));
    }
    calls.sent.push({ to: input.to, quotaKey: ctx.quotaKey });
    if (input.spent !== undefined) ctx.spend({ widget_units: input.spent });
    return { sent: input.to };
  },
});

/** Fails `failures` times for each key, then succeeds; `mode` picks the error type. */
export const flakyStep = defineStep({
  type: 'test.flaky',
  description: 'Fails a number of times, then succeeds (test only).',
  input: Type.Object({ key: Type.String(), failures: Type.Integer(), mode: Type.Optional(Type.String()) }),
  output: Type.Object({ attempts: Type.Integer() }),
  async run(_ctx, input) {
    const n = (calls.flaky.get(input.key) ?? 0) + 1;
    calls.flaky.set(input.key, n);
    if (n <= input.failures) {
      if (input.mode === 'fatal') throw new NonRetriableError(`bad input for ${input.key}`);
      if (input.mode === 'after') throw new RetryAfterError('slow down', 7000);
      throw new Error(`transient failure ${n} for ${input.key}`);
    }
    return { attempts: n };
  },
});

/** Waits for its signal: exercises timeouts and hard stops. */
export const hangStep = defineStep({
  type: 'test.hang',
  description: 'Never finishes on its own (test only).',
  input: Type.Object({ honour_signal: Type.Optional(Type.Boolean()) }),
  output: Type.Object({}),
  run: (ctx, input) =>
    new Promise((_, reject) => {
      if (input.honour_signal !== false) ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
    }),
});

export function testRegistry(): StepRegistry {
  return createRegistry().register(sendStep).register(flakyStep).register(hangStep);
}
