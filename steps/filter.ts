import { Type } from '@sinclair/typebox';
import { defineStep, NonRetriableError } from '../engine/sdk.ts';

export const filter = defineStep({
  type: 'filter',
  description: 'Keeps the items of a list for which `where` (an expression over `item`, without ${{ }}) is true.',
  input: Type.Object(
    {
      items: Type.Array(Type.Unknown(), { description: 'The list to filter.' }),
      where: Type.String({ minLength: 1, description: 'Bare expression over item, e.g. "item.score >= 50 && item.email != null".' }),
      limit: Type.Optional(Type.Integer({ minimum: 0, description: 'Keep at most this many.' })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({ items: Type.Array(Type.Unknown()), count: Type.Integer() }, { additionalProperties: false }),
  async run(ctx, input) {
    const kept: unknown[] = [];
    for (const item of input.items) {
      let verdict: unknown;
      try {
        verdict = ctx.evaluate(input.where, { item });
      } catch (err) {
        throw new NonRetriableError(`filter "where": ${(err as Error).message}`);
      }
      if (verdict === true) kept.push(item);
      if (input.limit !== undefined && kept.length >= input.limit) break;
    }
    return { items: kept, count: kept.length };
  },
});
