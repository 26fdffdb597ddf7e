import { Type } from '@sinclair/typebox';
import { type DatabaseStatement, defineStep } from '../../engine/sdk.ts';

export const eventEmit = defineStep({
  type: 'event.emit',
  description: 'Records a tracking event (send, click, payment ...) in the events table, exactly once.',
  input: Type.Object(
    {
      type: Type.String({ pattern: '^[a-z][a-z0-9_.-]*$', description: 'Event type, e.g. email.sent.' }),
      key: Type.Optional(Type.String({ description: 'What the event is about (a prospect id, a domain).' })),
      payload: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({ id: Type.String(), type: Type.String() }, { additionalProperties: false }),
  effect: {
    kind: () => 'event',
    transactional: true,
    statement: (input, ctx) => eventStatement(input, ctx.run.id, ctx.clock.now()),
    plan: (_ctx, input) => ({
      summary: `event ${input.type}${input.key ? ` for ${input.key}` : ''}`,
      output: { id: '(dry run)', type: input.type },
      artifacts: [{ name: 'event.json', content: JSON.stringify(input, null, 2) }],
    }),
  },
  async run(ctx, input) {
    const statement = eventStatement(input, ctx.run.id, ctx.clock.now());
    return statement.output(await ctx.db.query(statement.sql, statement.params)) as { id: string; type: string };
  },
});

/** The insert of one tracking event (runId null: recorded outside a run, like a report view). */
export function eventStatement(input: { type: string; key?: string; payload?: Record<string, unknown> }, runId: string | null, now: Date): DatabaseStatement {
  return {
    sql: 'INSERT INTO flow_events (type, key, payload, run_id, occurred_at) VALUES ($1, $2, $3, $4, $5) RETURNING id',
    params: [input.type, input.key ?? null, JSON.stringify(input.payload ?? {}), runId, now],
    output: (rows) => ({ id: String(rows[0]?.id ?? ''), type: input.type }),
  };
}
