import { Type } from '@sinclair/typebox';
import { defineStep, DURATION_PATTERN, parseDuration } from '../../engine/sdk.ts';

/**
 * A rule in a pipeline that pauses a quota, or one key of it: with `when:`, e.g. pause a
 * mailbox whose bounce rate passed a line, or a LinkedIn account the provider says is rate
 * limited. Calls under the quota wait until the pause ends (`for:`) or a person resumes it
 * (`flows quotas resume`); `flows quotas` shows why.
 */
export const quotaPause = defineStep({
  type: 'quota.pause',
  description: 'Pauses a quota (or one key of it) with a reason, for a time or until `flows quotas resume`: calls under it wait meanwhile.',
  input: Type.Object(
    {
      quota: Type.String({ minLength: 1, description: 'A quota of the config.' }),
      key: Type.Optional(Type.String({ minLength: 1, description: 'One key of a per-key quota (a mailbox, an account); without it, the whole quota.' })),
      reason: Type.String({ minLength: 1, description: 'Why: shown by flows quotas, in the runs that wait and in the logs.' }),
      for: Type.Optional(Type.String({ pattern: DURATION_PATTERN, description: 'Resume by itself after this long, e.g. "4h" (default: until a person resumes it).' })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({ quota: Type.String(), key: Type.String(), until: Type.Union([Type.String(), Type.Null()]) }, { additionalProperties: false }),
  effect: {
    kind: () => 'quota.pause',
    describe: (input) => ({ summary: `pause quota ${input.key ? `${input.quota}:${input.key}` : input.quota}: ${input.reason}` }),
    plan: (ctx, input) => ({
      summary: `pause quota ${input.key ? `${input.quota}:${input.key}` : input.quota}${input.for ? ` for ${input.for}` : ''}: ${input.reason}`,
      output: { quota: input.quota, key: input.key ?? '', until: null },
    }),
    // Pausing twice is pausing once.
    providerIdempotent: () => true,
  },
  async run(ctx, input) {
    const forMs = input.for === undefined ? undefined : parseDuration(input.for);
    await ctx.pauseQuota({ quota: input.quota, key: input.key, reason: input.reason, forMs });
    return { quota: input.quota, key: input.key ?? '', until: forMs === undefined ? null : new Date(ctx.clock.now().getTime() + forMs).toISOString() };
  },
});
