import { Type } from '@sinclair/typebox';
import { defineStep } from '../engine/sdk.ts';

export const log = defineStep({
  type: 'log',
  description: 'Writes a log line with the run, step and item ids (and optional data).',
  input: Type.Object(
    {
      message: Type.String(),
      level: Type.Optional(Type.Unsafe<'debug' | 'info' | 'warn' | 'error'>({ type: 'string', enum: ['debug', 'info', 'warn', 'error'], default: 'info' })),
      data: Type.Optional(Type.Unknown()),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({ message: Type.String() }, { additionalProperties: false }),
  async run(ctx, input) {
    ctx.log[input.level ?? 'info'](input.data === undefined ? {} : { data: input.data }, input.message);
    return { message: input.message };
  },
});
