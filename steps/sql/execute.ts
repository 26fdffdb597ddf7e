import { Type } from '@sinclair/typebox';
import { defineStep } from '../../engine/sdk.ts';
import { Params, Rows } from './schemas.ts';

export const sqlExecute = defineStep({
  type: 'sql.execute',
  description: 'Runs a parameterised write statement (UPDATE, DELETE ...) exactly once; planned, not run, in a dry run.',
  input: Type.Object({ sql: Type.String({ minLength: 1 }), params: Params }, { additionalProperties: false }),
  output: Type.Object({ rows: Rows, count: Type.Integer() }, { additionalProperties: false }),
  effect: {
    kind: () => 'db.write',
    transactional: true,
    plan: (_ctx, input) => ({
      summary: `execute ${input.sql.replace(/\s+/g, ' ').slice(0, 80)}`,
      output: { rows: [], count: 0 },
      artifacts: [{ name: 'statement.json', content: JSON.stringify(input, null, 2) }],
    }),
  },
  async run(ctx, input) {
    const rows = await ctx.db.query(input.sql, input.params ?? []);
    return { rows, count: rows.length };
  },
});
