/**
 * Tokenizer for expressions. Works on any string from any starting position, so the
 * template scanner can use it to find the `}}` closing a `${{` (braces inside string
 * literals and object literals do not close it).
 */
import { ExpressionError } from './ast.ts';

export type Token =
  | { kind: 'number'; value: number; offset: number; end: number }
  | { kind: 'string'; value: string; offset: number; end: number }
  | { kind: 'name'; value: string; offset: number; end: number }
  | { kind: 'punct'; value: string; offset: number; end: number }
  | { kind: 'eof'; value: ''; offset: number; end: number };

/** Longest first, so `===` wins over `==` and `=`. */
const PUNCTUATORS = [
  '===', '!==',
  '==', '!=', '<=', '>=', '&&', '||', '??',
  '+', '-', '*', '/', '%', '<', '>', '!', '?', ':', '.', ',', '(', ')', '[', ']', '{', '}',
];

const ESCAPES: Record<string, string> = {
  n: '\n', r: '\r', t: '\t', b: '\b', f: '\f', v: '\v', '0': '\0',
};

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
const isNameStart = (c: string | undefined) =>
  c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c === '$');
const isNamePart = (c: string | undefined) => isNameStart(c) || isDigit(c);
const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r';

export class Lexer {
  pos: number;

  constructor(
    readonly src: string,
    start = 0,
  ) {
    this.pos = start;
  }

  next(): Token {
    const { src } = this;
    while (this.pos < this.src.length && isSpace(src[this.pos])) this.pos++;
    const start = this.pos;
    if (start >= this.src.length) return { kind: 'eof', value: '', offset: start, end: start };
    const c = src[start];
    if (isDigit(c)) return this.number(start);
    if (c === '"' || c === "'") return this.string(start, c);
    if (isNameStart(c)) {
      let end = start + 1;
      while (end < this.src.length && isNamePart(src[end])) end++;
      this.pos = end;
      return { kind: 'name', value: src.slice(start, end), offset: start, end };
    }
    for (const p of PUNCTUATORS) {
      if (src.startsWith(p, start)) {
        this.pos = start + p.length;
        return { kind: 'punct', value: p, offset: start, end: this.pos };
      }
    }
    const shown = c === '`' ? 'template literals are not supported' : `unexpected character "${c}"`;
    throw new ExpressionError(shown, start);
  }

  private number(start: number): Token {
    const { src } = this;
    let end = start;
    while (isDigit(src[end])) end++;
    if (src[end] === '.') {
      end++;
      if (!isDigit(src[end])) throw new ExpressionError('invalid number', start);
      while (isDigit(src[end])) end++;
    }
    if (src[end] === 'e' || src[end] === 'E') {
      end++;
      if (src[end] === '+' || src[end] === '-') end++;
      if (!isDigit(src[end])) throw new ExpressionError('invalid number', start);
      while (isDigit(src[end])) end++;
    }
    if (isNamePart(src[end])) throw new ExpressionError('invalid number', start);
    this.pos = end;
    return { kind: 'number', value: Number(src.slice(start, end)), offset: start, end };
  }

  private string(start: number, quote: string): Token {
    const { src } = this;
    let out = '';
    let i = start + 1;
    while (i < this.src.length) {
      const c = src[i]!;
      if (c === quote) {
        this.pos = i + 1;
        return { kind: 'string', value: out, offset: start, end: this.pos };
      }
      if (c !== '\\') {
        out += c;
        i++;
        continue;
      }
      const e = src[i + 1];
      if (e === undefined) break;
      if (e === 'u') {
        const hex = src.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new ExpressionError('invalid \\u escape', i);
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else {
        out += ESCAPES[e] ?? e;
        i += 2;
      }
    }
    throw new ExpressionError('unterminated string literal', start);
  }
}

/** A token as error messages show it. */
export function describe(t: Token): string {
  switch (t.kind) {
    case 'eof': return 'end of expression';
    case 'punct': return `"${t.value}"`;
    case 'name': return `identifier "${t.value}"`;
    case 'number': return `number ${t.value}`;
    case 'string': return `string ${JSON.stringify(t.value)}`;
  }
}
