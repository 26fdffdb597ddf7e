import { Type } from '@sinclair/typebox';
import { type DatabaseStatement, defineStep, NeedsAttentionError, NonRetriableError } from '../engine/sdk.ts';

export const transform = defineStep({
  type: 'transform',
  description: 'Reshapes data with expressions: `value` is rendered (every ${{ }} inside it evaluated) and returned.',
  input: Type.Object({ value: Type.Unknown({ description: 'Any structure; its strings may hold ${{ }} expressions.' }) }, { additionalProperties: false }),
  output: Type.Object({ value: Type.Unknown() }, { additionalProperties: false }),
  async run(_ctx, input) {
    return { value: input.value };
  },
});

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

export const needsAttention = defineStep({
  type: 'run.needs_attention',
  description: 'Stops the run as needs_attention with a reason a person can act on (use with when:); later steps do not run.',
  input: Type.Object({ reason: Type.String({ minLength: 1, description: 'What is wrong and what to do about it.' }) }, { additionalProperties: false }),
  output: Type.Object({}, { additionalProperties: false }),
  async run(_ctx, input) {
    throw new NeedsAttentionError(input.reason);
  },
});
