/**
 * INSERT statements built from identifiers, as text with $n placeholders. Shared by the
 * steps that write rows and by the engine, which may send several inserts of the same
 * shape as one multi-row insert (see executor/write-batch.ts).
 */
import { NonRetriableError } from './errors.ts';

const IDENT = /^[a-z_][a-z0-9_]*$/;

export interface InsertShape {
  /** table or schema.table */
  table: string;
  columns: string[];
  /** Columns to return; without them each row returns `1 AS written`, so rows can be counted. */
  returning?: string[];
  /** For an upsert: the unique columns, and the columns to update (none: DO NOTHING). */
  conflict?: string[];
  update?: string[];
}

export function checkIdentifier(name: string, what: string): string {
  if (!IDENT.test(name)) throw new NonRetriableError(`"${name}" is not a ${what} name (lower-case letters, digits and _)`);
  return name;
}

const quote = (name: string) => `"${name}"`;
const cache = new Map<string, string>();

/** The statement for `rowCount` rows of this shape; cached, since a foreach repeats shapes. */
const byShape = new WeakMap<InsertShape, Map<number, string>>();

export function insertSql(shape: InsertShape, rowCount: number): string {
  // A step that keeps its shape object (sql.insert does) finds its text without building a key.
  const known = byShape.get(shape)?.get(rowCount);
  if (known) return known;
  const text = insertSqlByKey(shape, rowCount);
  let counts = byShape.get(shape);
  if (!counts) byShape.set(shape, (counts = new Map()));
  counts.set(rowCount, text);
  return text;
}

function insertSqlByKey(shape: InsertShape, rowCount: number): string {
  const cacheKey = `${shapeKey(shape)}#${rowCount}`;
  let text = cache.get(cacheKey);
  if (text) return text;
  const table = shape.table.split('.').map((p) => quote(checkIdentifier(p, 'table'))).join('.');
  const columns = shape.columns.map((c) => quote(checkIdentifier(c, 'column')));
  if (!columns.length) throw new NonRetriableError('a row to write has no columns');
  let n = 0;
  const values = Array.from({ length: rowCount }, () => `(${columns.map(() => `$${++n}`).join(', ')})`).join(', ');
  text = `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${values}`;
  if (shape.conflict) {
    const conflict = shape.conflict.map((c) => checkIdentifier(c, 'column'));
    const update = (shape.update ?? shape.columns.filter((c) => !conflict.includes(c))).map((c) => quote(checkIdentifier(c, 'column')));
    text += ` ON CONFLICT (${conflict.map(quote).join(', ')}) ${update.length ? `DO UPDATE SET ${update.map((c) => `${c} = excluded.${c}`).join(', ')}` : 'DO NOTHING'}`;
  }
  text += ` RETURNING ${shape.returning?.length ? shape.returning.map((c) => quote(checkIdentifier(c, 'column'))).join(', ') : '1 AS written'}`;
  if (cache.size > 2000) cache.clear();
  cache.set(cacheKey, text);
  return text;
}

export function shapeKey(shape: InsertShape): string {
  return JSON.stringify([shape.table, shape.columns, shape.returning ?? null, shape.conflict ?? null, shape.update ?? null]);
}
