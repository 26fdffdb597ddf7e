import { Type } from '@sinclair/typebox';
import { type DatabaseStatement, defineStep, type InsertShape, insertSql, NonRetriableError } from '../engine/sdk.ts';
import { checkTable, toRow } from './sql-names.ts';

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

/**
 * An insert or upsert as one statement, returning the requested columns (or a marker per
 * row, so rows can be counted). A plain insert is marked mergeable: the engine may send
 * several of the same shape as one multi-row insert.
 */
function writeStatement(
  input: { table: string; rows?: Record<string, unknown>[]; row?: Record<string, unknown>; returning?: string[]; conflict?: string[]; update?: string[] },
  upsert: boolean,
): DatabaseStatement {
  const rows = rowsOf(input);
  checkTable(input.table);
  const shape: InsertShape = {
    table: input.table,
    columns: [...new Set(rows.flatMap((r) => Object.keys(r)))],
    returning: input.returning?.length ? input.returning : undefined,
    ...(upsert ? { conflict: input.conflict ?? [], update: input.update } : {}),
  };
  const params = rows.flatMap((r) => shape.columns.map((c) => (c in r ? r[c] : null)));
  return {
    sql: insertSql(shape, rows.length),
    params,
    output: (out) => ({ count: out.length, rows: shape.returning ? out : [] }),
    insert: upsert ? undefined : { shape, rowCount: rows.length },
  };
}

async function runStatement(db: { query(text: string, params: readonly unknown[]): Promise<Record<string, unknown>[]> }, statement: DatabaseStatement) {
  return statement.output(await db.query(statement.sql, statement.params));
}

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
