import type { EffectRow } from '../store/records.ts';
import type { DatabaseStatement, Queryable } from '../types.ts';

/**
 * The effect ledger: every outside effect and every gated call goes through it. An effect's
 * idempotency key is reserved before it happens, together with what the flow-control gates
 * reserve for it (a quota slot, a budget estimate), in one transaction; it is confirmed with
 * its output after, or released when the attempt failed before it happened. A key that was
 * reserved and never confirmed is "in doubt": the process stopped in the middle.
 *
 * Two implementations share one conformance suite (test/ledger.test.ts): Postgres writes a
 * database effect and its key in one statement; the embedded database commits ready writes
 * together. Every output, summary and identity is scrubbed of secrets on every path.
 */

/** Raw parameterised SQL, in a transaction or not. */
export interface Sql {
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<R[]>;
}

/** An effect as the ledger records it. */
export interface EffectRecord {
  key: string;
  runId: string;
  stepId: string;
  itemKey: string;
  kind: string;
  /** One line a person reads: "email to ana@example.com: Your report". */
  summary: string;
  /** What identifies it outside (recipient, subject, Message-ID, request id), shown while in doubt. */
  identity?: Record<string, string>;
}

/** A flow-control gate's part of a reservation (a quota slot, a budget estimate). */
export interface Gate {
  /** "quota teaser-email:d1", "budget weekly-api": for logs and lock order. */
  readonly label: string;
  /**
   * Inside the reservation transaction: decide whether the call may happen now, and if so
   * record the reservation. Gates lock what they count, in label order, so concurrent
   * reservations never pass a cap together and never deadlock.
   */
  reserve(sql: Sql, now: Date, effectKey: string | undefined): Promise<GateVerdict>;
  /**
   * Set on gates that can decide several calls in one pass: calls whose gates have the same
   * group (a quota's key, the keys a picking quota chooses from) are reserved together.
   */
  readonly group?: string;
  /**
   * The verdicts of calls through gates of this gate's group, each decided in turn exactly as
   * reserve() would one after the other, under one lock and one read; in the order given.
   */
  reserveGroup?(sql: Sql, now: Date, calls: readonly GroupedCall[]): Promise<GateVerdict[]>;
}

/** One call of a group: its own gate (its key's rules, its spacing) and effect key. */
export interface GroupedCall {
  gate: Gate;
  effectKey: string | undefined;
}

export type GateVerdict =
  | { ok: true; hold?: Hold }
  /** Not now: the item waits (scope item), or the whole run stops taking work (scope run). */
  | { ok: false; until: Date; reason: string; scope: 'item' | 'run' };

/** What a gate reserved, settled after the call. */
export interface Hold {
  /** The quota key a picking gate chose (the mailbox a rotation sends from). */
  readonly picked?: string;
  /** The call happened: settle to what it spent. */
  confirm(sql: Sql, spent: Record<string, number>): Promise<void>;
  /** The call did not happen (it failed first): give the reservation back, keeping what was spent. */
  release(sql: Sql, spent: Record<string, number>): Promise<void>;
}

export type Reservation =
  | { state: 'reserved'; holds: Hold[] }
  | { state: 'done'; row: EffectRow }
  | { state: 'in-doubt'; row: EffectRow }
  | { state: 'wait'; until: Date; reason: string; scope: 'item' | 'run' };

export type WriteOutcome =
  | { state: 'written'; output: unknown }
  | { state: 'done'; row: EffectRow }
  | { state: 'wait'; until: Date; reason: string; scope: 'item' | 'run' };

/** A database write performed exactly once with its key. */
export interface Write {
  /** The write as one statement when it is one (Postgres runs it with its key in one round trip; plain inserts merge). */
  statement?: DatabaseStatement;
  /** Otherwise the step's own code, given the transaction to write through. */
  run?(db: Queryable): Promise<unknown>;
}

export interface ConfirmOptions {
  /** Keep the output only until the item is recorded (large data stored elsewhere by a later step). */
  transient?: boolean;
  /** What the call spent, for the gates' holds (budgets settle to it). */
  spent?: Record<string, number>;
}

export interface EffectLedger {
  /**
   * One transaction: an existing key answers done or in doubt (and nothing is reserved);
   * otherwise each gate decides and reserves, then the key is reserved. Without an effect
   * (a gated read) only the gates reserve.
   */
  reserve(effect: EffectRecord | undefined, gates: readonly Gate[], now: Date): Promise<Reservation>;
  confirm(effect: EffectRecord | undefined, reservation: Extract<Reservation, { state: 'reserved' }>, output: unknown, now: Date, options?: ConfirmOptions): Promise<void>;
  release(effect: EffectRecord | undefined, reservation: Extract<Reservation, { state: 'reserved' }>, spent?: Record<string, number>): Promise<void>;
  /** A database write and its key in one transaction (with the gates' reservations), exactly once. */
  write(effect: EffectRecord, gates: readonly Gate[], write: Write, now: Date): Promise<WriteOutcome>;
  /** A person's answer for an effect in doubt: it happened (never repeat it) or it did not (free its key). */
  resolve(key: string, happened: boolean, now: Date): Promise<EffectRow>;
  find(key: string): Promise<EffectRow | undefined>;
  inDoubt(runId?: string): Promise<EffectRow[]>;
  /** Counts a repeat of an effect in doubt: it is performed again (its step allows it). */
  repeat(key: string): Promise<void>;
  /** Drops the outputs kept only until these items were recorded. */
  forget(runId: string, itemKeys: readonly string[]): Promise<void>;
}
