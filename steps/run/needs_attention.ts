import { Type } from '@sinclair/typebox';
import { defineStep, NeedsAttentionError } from '../../engine/sdk.ts';

export const needsAttention = defineStep({
  type: 'run.needs_attention',
  description: 'Stops the run as needs_attention with a reason a person can act on (use with when:); later steps do not run.',
  input: Type.Object({ reason: Type.String({ minLength: 1, description: 'What is wrong and what to do about it.' }) }, { additionalProperties: false }),
  output: Type.Object({}, { additionalProperties: false }),
  async run(_ctx, input) {
    throw new NeedsAttentionError(input.reason);
  },
});
