import { Type } from '@sinclair/typebox';
import { type DatabaseStatement, type InsertShape, insertSql, NonRetriableError } from '../../engine/sdk.ts';
import { checkTable, toRow } from './names.ts';
import { Rows } from './schemas.ts';

/** What sql.insert and sql.upsert share: their input and output, the one statement, the dry-run plan. */

export const WriteBase = {
  table: Type.String({ description: 'Table to write to.' }),
  rows: Type.Optional(Type.Array(Type.Record(Type.String(), Type.Unknown()), { description: 'Rows to write, as objects keyed by column.' })),
  row: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'One row (instead of rows).' })),
  returning: Type.Optional(Type.Array(Type.String(), { description: 'Columns to return from the written rows.' })),
};
export const WriteOutput = Type.Object({ count: Type.Integer({ description: 'Rows written.' }), rows: Rows }, { additionalProperties: false });

function rowsOf(input: { rows?: Record<string, unknown>[]; row?: Record<string, unknown> }): Record<string, unknown>[] {
  if (!input.rows && !input.row) throw new NonRetriableError('give the rows to write: rows (a list) or row (one)');
  const rows = input.rows ?? (input.row ? [input.row] : []);
  return rows.map(toRow);
}

export function planWrite(verb: string, input: { table: string; rows?: Record<string, unknown>[]; row?: Record<string, unknown> }) {
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
export function writeStatement(
  input: { table: string; rows?: Record<string, unknown>[]; row?: Record<string, unknown>; returning?: string[]; conflict?: string[]; update?: string[] },
  upsert: boolean,
): DatabaseStatement {
  const rows = rowsOf(input);
  const shape = shapeOf(input, rows, upsert);
  const params = rows.flatMap((r) => shape.columns.map((c) => (c in r ? r[c] : null)));
  return {
    sql: insertSql(shape, rows.length),
    params,
    output: (out) => ({ count: out.length, rows: shape.returning ? out : [] }),
    insert: upsert ? undefined : { shape, rowCount: rows.length },
  };
}

/** The statement's shape: the same for every item of a step (its columns come from the file), so made once. */
const shapes = new Map<string, InsertShape>();
function shapeOf(
  input: { table: string; returning?: string[]; conflict?: string[]; update?: string[] },
  rows: Record<string, unknown>[],
  upsert: boolean,
): InsertShape {
  const columns = rows.length === 1 ? Object.keys(rows[0]!) : [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const id = JSON.stringify([input.table, columns, input.returning ?? null, upsert ? (input.conflict ?? []) : null, upsert ? (input.update ?? null) : null]);
  let shape = shapes.get(id);
  if (!shape) {
    checkTable(input.table);
    shape = {
      table: input.table,
      columns,
      returning: input.returning?.length ? input.returning : undefined,
      ...(upsert ? { conflict: input.conflict ?? [], update: input.update } : {}),
    };
    if (shapes.size > 1000) shapes.clear();
    shapes.set(id, shape);
  }
  return shape;
}

export async function runStatement(db: { query(text: string, params: readonly unknown[]): Promise<Record<string, unknown>[]> }, statement: DatabaseStatement) {
  return statement.output(await db.query(statement.sql, statement.params));
}
