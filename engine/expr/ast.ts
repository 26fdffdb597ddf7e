/**
 * Shared vocabulary of the expression language: the error type, the limits that keep a
 * hostile expression from hanging or exhausting the process, and the AST the parser
 * produces (opaque outside engine/expr).
 */

/** Longest expression source accepted (the text between `${{` and `}}`). */
export const MAX_SOURCE_LENGTH = 4_000;
/** Deepest nesting of parentheses, brackets, unary operators and ternaries. */
export const MAX_NESTING = 100;
/** Work units one evaluation may spend: one per AST node, plus what functions charge. */
export const MAX_WORK = 10_000_000;
/** Largest array `range()` may build. */
export const MAX_RANGE = 1_000_000;

/** A syntax or evaluation error. `offset` points into the expression or template text. */
export class ExpressionError extends Error {
  override readonly name = 'ExpressionError';
  /** Offset within the source string where the problem is, when known. */
  readonly offset?: number;
  /** Where the failing string sits inside a structure (set by renderDeep). */
  readonly path?: (string | number)[];

  constructor(
    message: string,
    offset?: number,
    options?: { cause?: unknown; path?: (string | number)[] },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    if (offset !== undefined) this.offset = offset;
    if (options?.path !== undefined) this.path = options.path;
  }

  /**
   * The same error located inside a larger text: the offset moves by `delta` (an error
   * with no offset of its own points at `delta`, the start of the expression).
   */
  shifted(delta: number): ExpressionError {
    return new ExpressionError(this.message, (this.offset ?? 0) + delta, {
      cause: this.cause,
      path: this.path,
    });
  }

  /** The same error, recording where in a structure the failing string was. */
  withPath(path: (string | number)[]): ExpressionError {
    return new ExpressionError(this.message, this.offset, { cause: this.cause, path });
  }
}

export type LiteralValue = string | number | boolean | null;

/** AST nodes. `offset` is where the node (or its operator) starts in the source. */
export type Node =
  | { type: 'Literal'; offset: number; value: LiteralValue }
  | { type: 'Identifier'; offset: number; name: string }
  /**
   * `a.b`, `a['b']`, `a[0]`: `key` is the statically known key (`static` tells whether it
   * came from `.name` or a string literal, as opposed to a number literal); `a[expr]`:
   * `property` holds the expression. `offset` is the `.`, or where the text inside `[]` starts.
   */
  | {
      type: 'Member';
      offset: number;
      object: Node;
      key?: string;
      numericKey?: boolean;
      property?: Node;
    }
  | { type: 'Array'; offset: number; elements: Node[] }
  | { type: 'Object'; offset: number; entries: { key: string; value: Node }[] }
  | { type: 'Unary'; offset: number; op: '!' | '-'; argument: Node }
  | { type: 'Binary'; offset: number; op: string; left: Node; right: Node }
  | { type: 'Conditional'; offset: number; test: Node; consequent: Node; alternate: Node }
  | { type: 'Call'; offset: number; name: string; args: Node[] };

/** A parsed expression. Only `source` is public; the AST is an implementation detail. */
export interface Expression {
  readonly source: string;
}

/** What parseExpression really returns. */
export interface ParsedExpression extends Expression {
  readonly ast: Node;
}

/** Names that would reach prototypes: rejected wherever they appear as a key or name. */
export const FORBIDDEN_NAMES: ReadonlySet<string> = new Set([
  '__proto__',
  'prototype',
  'constructor',
]);

export function forbiddenMessage(name: string): string {
  return `access to "${name}" is not allowed`;
}
