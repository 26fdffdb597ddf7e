import { checkIdentifier, NonRetriableError } from '../../engine/sdk.ts';

const IDENT = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

/** Table names are identifiers, never SQL; the engine's own tables are off limits. */
export function checkTable(table: string): string {
  if (!IDENT.test(table)) throw new NonRetriableError(`"${table}" is not a table name (lower-case letters, digits and _, optionally schema.table)`);
  if (/^(flow_|kysely_)/.test(table.split('.').at(-1)!)) throw new NonRetriableError(`table "${table}" belongs to the engine; pipelines cannot write to it`);
  return table;
}

/** Objects and lists go to json/jsonb columns as JSON (node-postgres would make lists Postgres arrays). */
export function toRow(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    checkIdentifier(k, 'column');
    out[k] = v !== null && typeof v === 'object' && !(v instanceof Date) ? JSON.stringify(v) : v;
  }
  return out;
}
