import { Type } from '@sinclair/typebox';
import { defineStep } from '../../engine/sdk.ts';
import { planWrite, runStatement, WriteBase, WriteOutput, writeStatement } from './write.ts';

const UpsertInput = Type.Object(
  {
    ...WriteBase,
    conflict: Type.Array(Type.String(), { minItems: 1, description: 'Columns of the unique constraint that decides "same row".' }),
    update: Type.Optional(Type.Array(Type.String(), { description: 'Columns to update on conflict (default: every written column but the conflict ones).' })),
  },
  { additionalProperties: false },
);

export const sqlUpsert = defineStep({
  type: 'sql.upsert',
  description: 'Inserts rows, or updates them when the conflict columns match an existing row; exactly once.',
  input: UpsertInput,
  output: WriteOutput,
  effect: {
    kind: () => 'db.write',
    transactional: true,
    statement: (input) => writeStatement(input, true),
    plan: (_ctx, input) => planWrite('upsert', input),
  },
  run: (ctx, input) => runStatement(ctx.db, writeStatement(input, true)) as Promise<{ count: number; rows: Record<string, unknown>[] }>,
});
