import { Type } from '@sinclair/typebox';
import { defineStep } from '../../engine/sdk.ts';
import { planWrite, runStatement, WriteBase, WriteOutput, writeStatement } from './write.ts';

export const sqlInsert = defineStep({
  type: 'sql.insert',
  description: 'Inserts rows into a table, exactly once (the write and its idempotency record are one statement).',
  input: Type.Object(WriteBase, { additionalProperties: false }),
  output: WriteOutput,
  effect: {
    kind: () => 'db.write',
    transactional: true,
    statement: (input) => writeStatement(input, false),
    plan: (_ctx, input) => planWrite('insert', input),
  },
  run: (ctx, input) => runStatement(ctx.db, writeStatement(input, false)) as Promise<{ count: number; rows: Record<string, unknown>[] }>,
});
