import { Type } from '@sinclair/typebox';
import { NonRetriableError } from '../engine/errors.ts';
import { defineStep } from '../engine/types.ts';
import { checkColumns, checkTable, compiler, sql, toRow } from './sql-compile.ts';

const Rows = Type.Array(Type.Record(Type.String(), Type.Unknown()), { description: 'Result rows as objects.' });
const Params = Type.Optional(Type.Array(Type.Unknown(), { description: 'Values for $1, $2 ... (never spliced into the SQL).' }));

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

const WriteBase = {
  table: Type.String({ description: 'Table to write to.' }),
  rows: Type.Optional(Type.Array(Type.Record(Type.String(), Type.Unknown()), { description: 'Rows to write, as objects keyed by column.' })),
  row: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'One row (instead of rows).' })),
  returning: Type.Optional(Type.Array(Type.String(), { description: 'Columns to return from the written rows.' })),
};
const WriteOutput = Type.Object({ count: Type.Integer({ description: 'Rows written.' }), rows: Rows }, { additionalProperties: false });

function rowsOf(input: { rows?: Record<string, unknown>[]; row?: Record<string, unknown> }): Record<string, unknown>[] {
  if (!input.rows && !input.row) throw new NonRetriableError('give the rows to write: rows (a list) or row (one)');
  const rows = input.rows ?? (input.row ? [input.row] : []);
  return rows.map(toRow);
}

function planWrite(verb: string, input: { table: string; rows?: Record<string, unknown>[]; row?: Record<string, unknown> }) {
  const rows = input.rows ?? (input.row ? [input.row] : []);
  return {
    summary: `${verb} ${rows.length} row${rows.length === 1 ? '' : 's'} into ${input.table}`,
    output: { count: rows.length, rows: [] },
    artifacts: [{ name: 'rows.json', content: JSON.stringify(rows, null, 2) }],
  };
}

export const sqlInsert = defineStep({
  type: 'sql.insert',
  description: 'Inserts rows into a table, exactly once (the write commits with its idempotency record).',
  input: Type.Object(WriteBase, { additionalProperties: false }),
  output: WriteOutput,
  effect: { kind: () => 'db.write', transactional: true, plan: (_ctx, input) => planWrite('insert', input) },
  async run(ctx, input) {
    const rows = rowsOf(input);
    if (!rows.length) return { count: 0, rows: [] };
    const q = compiler.insertInto(checkTable(input.table)).values(rows);
    const q2 = input.returning?.length ? q.returning(checkColumns(input.returning)) : q;
    const compiled = q2.compile();
    const out = await ctx.db.query(compiled.sql, compiled.parameters);
    return { count: rows.length, rows: out };
  },
});

export const sqlUpsert = defineStep({
  type: 'sql.upsert',
  description: 'Inserts rows, or updates them when the conflict columns match an existing row.',
  input: Type.Object(
    {
      ...WriteBase,
      conflict: Type.Array(Type.String(), { minItems: 1, description: 'Columns of the unique constraint that decides "same row".' }),
      update: Type.Optional(Type.Array(Type.String(), { description: 'Columns to update on conflict (default: every written column but the conflict ones).' })),
    },
    { additionalProperties: false },
  ),
  output: WriteOutput,
  effect: { kind: () => 'db.write', transactional: true, plan: (_ctx, input) => planWrite('upsert', input) },
  async run(ctx, input) {
    const rows = rowsOf(input);
    if (!rows.length) return { count: 0, rows: [] };
    const conflict = checkColumns(input.conflict);
    const update = checkColumns(input.update ?? Object.keys(rows[0]!).filter((c) => !conflict.includes(c)));
    const q = compiler
      .insertInto(checkTable(input.table))
      .values(rows)
      .onConflict((oc) => {
        const target = oc.columns(conflict);
        if (!update.length) return target.doNothing();
        return target.doUpdateSet(Object.fromEntries(update.map((c) => [c, sql.ref(`excluded.${c}`)])));
      });
    const compiled = (input.returning?.length ? q.returning(checkColumns(input.returning)) : q).compile();
    const out = await ctx.db.query(compiled.sql, compiled.parameters);
    return { count: rows.length, rows: out };
  },
});
