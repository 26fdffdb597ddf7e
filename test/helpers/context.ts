import { systemClock } from '../../engine/clock.ts';
import type { EngineConfig } from '../../engine/config.ts';
import { silentLogger } from '../../engine/log.ts';
import type { Resources } from '../../engine/resources.ts';
import type { Queryable, StepContext } from '../../engine/types.ts';

/**
 * A step context for calling a step type directly: its database, config and resources, and
 * quiet defaults for the rest (no rate limits, usage and notes dropped). `overrides` wins.
 */
export function stepContext(db: Queryable, config: EngineConfig, resources?: Resources, overrides: Partial<StepContext> = {}): StepContext {
  return {
    run: { id: 'r-test', pipeline: 'test', dryRun: false },
    step: { id: 's' },
    attempt: 1,
    signal: new AbortController().signal,
    log: silentLogger,
    db,
    clock: systemClock,
    config,
    evaluate: () => undefined,
    use: (r) => (resources ? resources.use(r) : Promise.reject(new Error(`no resources given for ${r.name}`))),
    limit: (_name, call) => call(),
    spend: () => {},
    note: () => {},
    pauseQuota: async () => {},
    quotaRoom: async () => [],
    ...overrides,
  };
}
