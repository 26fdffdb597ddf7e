import { Type } from '@sinclair/typebox';
import { defineStep } from '../../engine/sdk.ts';
import { Params, Rows } from './schemas.ts';

export const sqlQuery = defineStep({
  type: 'sql.query',
  description: 'Runs a parameterised read query ($1, $2 ...) and returns its rows. In a dry run the database refuses writes.',
  input: Type.Object({ sql: Type.String({ minLength: 1 }), params: Params }, { additionalProperties: false }),
  output: Type.Object({ rows: Rows, count: Type.Integer() }, { additionalProperties: false }),
  async run(ctx, input) {
    const rows = await ctx.db.query(input.sql, input.params ?? []);
    return { rows, count: rows.length };
  },
});
