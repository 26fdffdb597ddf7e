/**
 * Recursive-descent parser for the expression language (a JS-like subset). Hand-written
 * rather than jsep so that every node carries its source offset, errors are precise, and
 * no global parser state is shared with anyone else.
 *
 * Checks done here, before anything runs: unknown functions and wrong arity, method calls,
 * and the names `__proto__`, `prototype`, `constructor` wherever they are written.
 */
import {
  ExpressionError,
  FORBIDDEN_NAMES,
  MAX_NESTING,
  forbiddenMessage,
  type Node,
} from './ast.ts';
import { FUNCTIONS, arityMessage, unknownFunctionMessage } from './functions.ts';
import { Lexer, describe, type Token } from './lexer.ts';

/** Binding power of binary operators; `??` binds looser than `||` (as in C#). */
const BINARY: ReadonlyMap<string, number> = new Map([
  ['??', 1],
  ['||', 2],
  ['&&', 3],
  ['==', 4], ['!=', 4], ['===', 4], ['!==', 4],
  ['<', 5], ['<=', 5], ['>', 5], ['>=', 5],
  ['+', 6], ['-', 6],
  ['*', 7], ['/', 7], ['%', 7],
]);

const LITERAL_NAMES: ReadonlyMap<string, boolean | null> = new Map([
  ['true', true],
  ['false', false],
  ['null', null],
]);

export class Parser {
  private readonly lexer: Lexer;
  private tok: Token;
  private depth = 0;

  constructor(source: string) {
    this.lexer = new Lexer(source);
    this.tok = this.lexer.next();
  }

  parse(): Node {
    if (this.tok.kind === 'eof') throw new ExpressionError('empty expression', this.tok.offset);
    const node = this.ternary();
    if ((this.tok.kind as Token['kind']) !== 'eof') throw this.unexpected();
    return node;
  }

  private advance(): Token {
    const t = this.tok;
    this.tok = this.lexer.next();
    return t;
  }

  private at(punct: string): boolean {
    return this.tok.kind === 'punct' && this.tok.value === punct;
  }

  private expect(punct: string): Token {
    if (!this.at(punct)) throw this.unexpected(punct);
    return this.advance();
  }

  private unexpected(expected?: string): ExpressionError {
    const want = expected === undefined ? '' : ` (expected "${expected}")`;
    return new ExpressionError(`unexpected ${describe(this.tok)}${want}`, this.tok.offset);
  }

  /** Guards recursion so a deeply nested expression cannot overflow the stack. */
  private nested<T>(offset: number, f: () => T): T {
    if (++this.depth > MAX_NESTING) {
      throw new ExpressionError(`expression is nested too deeply (max ${MAX_NESTING} levels)`, offset);
    }
    const result = f();
    this.depth--;
    return result;
  }

  private ternary(): Node {
    const test = this.binary(1);
    if (!this.at('?')) return test;
    const offset = this.advance().offset;
    return this.nested(offset, () => {
      const consequent = this.ternary();
      this.expect(':');
      const alternate = this.ternary();
      return { type: 'Conditional', offset, test, consequent, alternate };
    });
  }

  private binary(minPower: number): Node {
    let left = this.unary();
    for (;;) {
      const power = this.tok.kind === 'punct' ? BINARY.get(this.tok.value) : undefined;
      if (power === undefined || power < minPower) return left;
      const op = this.advance();
      const right = this.binary(power + 1);
      left = { type: 'Binary', offset: op.offset, op: op.value as string, left, right };
    }
  }

  private unary(): Node {
    if (this.at('!') || this.at('-')) {
      const op = this.advance();
      const argument = this.nested(op.offset, () => this.unary());
      return { type: 'Unary', offset: op.offset, op: op.value as '!' | '-', argument };
    }
    return this.postfix(this.primary());
  }

  private postfix(node: Node): Node {
    for (;;) {
      if (this.at('.')) {
        const offset = this.advance().offset;
        const name = this.advance();
        if (name.kind !== 'name') throw new ExpressionError(`unexpected ${describe(name)} after "."`, name.offset);
        if (FORBIDDEN_NAMES.has(name.value)) throw new ExpressionError(forbiddenMessage(name.value), name.offset);
        node = { type: 'Member', offset, object: node, key: name.value };
      } else if (this.at('[')) {
        const offset = this.tok.offset;
        node = this.nested(offset, () => this.computed(node));
      } else if (this.at('(')) {
        const message = node.type === 'Member'
          ? 'method calls are not allowed; call whitelisted functions by bare name, e.g. length(x)'
          : 'only whitelisted functions can be called, by bare name, e.g. length(x)';
        throw new ExpressionError(message, this.tok.offset);
      } else {
        return node;
      }
    }
  }

  /** `object[...]`; for a dynamic key the node's offset is where the key expression starts. */
  private computed(object: Node): Node {
    this.advance();
    const offset = this.tok.offset;
    const property = this.ternary();
    this.expect(']');
    if (property.type === 'Literal' && typeof property.value === 'string') {
      if (FORBIDDEN_NAMES.has(property.value)) {
        throw new ExpressionError(forbiddenMessage(property.value), property.offset);
      }
      return { type: 'Member', offset, object, key: property.value };
    }
    if (property.type === 'Literal' && typeof property.value === 'number') {
      return { type: 'Member', offset, object, key: String(property.value), numericKey: true };
    }
    return { type: 'Member', offset, object, property };
  }

  private primary(): Node {
    const t = this.tok;
    switch (t.kind) {
      case 'number':
      case 'string':
        this.advance();
        return { type: 'Literal', offset: t.offset, value: t.value };
      case 'name': {
        this.advance();
        if (LITERAL_NAMES.has(t.value)) return { type: 'Literal', offset: t.offset, value: LITERAL_NAMES.get(t.value)! };
        if (this.at('(')) return this.call(t.value, t.offset);
        if (FORBIDDEN_NAMES.has(t.value)) throw new ExpressionError(forbiddenMessage(t.value), t.offset);
        return { type: 'Identifier', offset: t.offset, name: t.value };
      }
      case 'punct':
        if (t.value === '(') {
          return this.nested(t.offset, () => {
            this.advance();
            const inner = this.ternary();
            this.expect(')');
            return inner;
          });
        }
        if (t.value === '[') return this.nested(t.offset, () => this.array());
        if (t.value === '{') return this.nested(t.offset, () => this.object());
    }
    throw this.unexpected();
  }

  /** Comma-separated items up to `close`; a trailing comma is allowed. */
  private list<T>(close: string, item: () => T): T[] {
    const items: T[] = [];
    while (!this.at(close)) {
      items.push(item());
      if (!this.at(',')) break;
      this.advance();
    }
    this.expect(close);
    return items;
  }

  private call(name: string, offset: number): Node {
    const spec = FUNCTIONS.get(name);
    if (spec === undefined) throw new ExpressionError(unknownFunctionMessage(name), offset);
    const args = this.nested(offset, () => {
      this.advance();
      return this.list(')', () => this.ternary());
    });
    if (args.length < spec.min || args.length > spec.max) {
      throw new ExpressionError(arityMessage(name, spec, args.length), offset);
    }
    return { type: 'Call', offset, name, args };
  }

  private array(): Node {
    const offset = this.advance().offset;
    return { type: 'Array', offset, elements: this.list(']', () => this.ternary()) };
  }

  private object(): Node {
    const offset = this.advance().offset;
    const entries = this.list('}', () => {
      const k = this.tok;
      if (k.kind !== 'name' && k.kind !== 'string' && k.kind !== 'number') throw this.unexpected();
      this.advance();
      const key = String(k.value);
      if (FORBIDDEN_NAMES.has(key)) throw new ExpressionError(forbiddenMessage(key), k.offset);
      if (k.kind === 'name' && (this.at(',') || this.at('}'))) {
        // Shorthand `{ item }` means `{ item: item }`.
        return { key, value: { type: 'Identifier', offset: k.offset, name: key } as Node };
      }
      this.expect(':');
      return { key, value: this.ternary() };
    });
    return { type: 'Object', offset, entries };
  }
}
