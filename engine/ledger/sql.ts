import { CompiledQuery, type Transaction } from 'kysely';
import type { Database } from '../db/connect.ts';
import type { Tables } from '../db/tables.ts';
import type { Queryable } from '../types.ts';
import type { Sql } from './types.ts';

/** Raw SQL on a kysely transaction. */
export function sqlOf(trx: Transaction<Tables>): Sql & Queryable {
  return {
    writable: true,
    query: async <R>(text: string, params: readonly unknown[] = []) => (await trx.executeQuery<R>(CompiledQuery.raw(text, [...params]))).rows as R[],
  };
}

/** Runs `fn` in one transaction of `db`, with raw SQL. */
export function inTransaction<T>(db: Database, fn: (sql: Sql & Queryable) => Promise<T>): Promise<T> {
  return db.kysely.transaction().execute((trx) => fn(sqlOf(trx)));
}
