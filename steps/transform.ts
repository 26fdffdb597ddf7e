import { Type } from '@sinclair/typebox';
import { defineStep } from '../engine/sdk.ts';

export const transform = defineStep({
  type: 'transform',
  description: 'Reshapes data with expressions: `value` is rendered (every ${{ }} inside it evaluated) and returned.',
  input: Type.Object({ value: Type.Unknown({ description: 'Any structure; its strings may hold ${{ }} expressions.' }) }, { additionalProperties: false }),
  output: Type.Object({ value: Type.Unknown() }, { additionalProperties: false }),
  async run(_ctx, input) {
    return { value: input.value };
  },
});
