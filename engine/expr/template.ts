/**
 * Templates: strings holding `${{ expression }}` parts, GitHub Actions style.
 *
 * - A string that is exactly one `${{ ... }}` (nothing around it, not even spaces)
 *   renders to the expression's raw value: array, number, object, null...
 * - Otherwise it renders to a string: null/undefined become '', objects/arrays JSON.
 * - Escape: `$${{` stands for a literal `${{` (so `$${{ x }}` renders as `${{ x }}`).
 *   Scanning is left to right, so `$$${{` is `$` followed by a literal `${{`.
 *
 * The closing `}}` is found with the expression tokenizer, so `}}` inside a string
 * literal or an object literal (`${{ {a: {b: 1}} }}`) does not end the expression.
 */
import { ExpressionError, type Expression } from './ast.ts';
import { toText } from './access.ts';
import { evaluate, type EvalOptions } from './evaluate.ts';
import { Lexer } from './lexer.ts';
import { parseExpression } from './parse.ts';

export interface Template {
  readonly source: string;
}

type Part = string | { expr: Expression; offset: number };

interface ParsedTemplate extends Template {
  readonly parts: readonly Part[];
  /** Set when the whole text is one expression: rendering returns its raw value. */
  readonly whole: boolean;
}

const OPEN = '${{';
const CACHE_LIMIT = 5_000;
const cache = new Map<string, ParsedTemplate>();
const parsed = new WeakSet<Template>();

/** Offset of the next unescaped `${{` at or after `from`, or -1. */
function nextOpen(text: string, from: number): number {
  for (let j = text.indexOf(OPEN, from); j >= 0; j = text.indexOf(OPEN, j + OPEN.length)) {
    if (!(j > from && text[j - 1] === '$')) return j;
    from = j + OPEN.length;
  }
  return -1;
}

/** True when `text` contains an unescaped `${{`. */
export function isTemplate(text: string): boolean {
  return typeof text === 'string' && nextOpen(text, 0) >= 0;
}

/** Literal text between expressions, with `$${{` unescaped. */
function unescape(text: string): string {
  return text.includes('$' + OPEN) ? text.split('$' + OPEN).join(OPEN) : text;
}

/** Offset of the `}}` closing the expression that starts at `start`. */
function closeOf(text: string, open: number, start: number): number {
  const lexer = new Lexer(text, start);
  let depth = 0;
  for (;;) {
    const tok = lexer.next();
    if (tok.kind === 'eof') throw new ExpressionError('unclosed "${{" (missing "}}")', open);
    if (tok.kind !== 'punct') continue;
    if (tok.value === '(' || tok.value === '[' || tok.value === '{') depth++;
    else if (tok.value === ')' || tok.value === ']') depth = Math.max(0, depth - 1);
    else if (tok.value === '}' && depth > 0) depth--;
    else if (tok.value === '}') {
      if (text[tok.offset + 1] === '}') return tok.offset;
      throw new ExpressionError('unexpected "}"', tok.offset);
    }
  }
}

/** Parses (and caches) a template. Error offsets are relative to `text`. */
export function parseTemplate(text: string): Template {
  const hit = cache.get(text);
  if (hit !== undefined) return hit;
  const parts: Part[] = [];
  let i = 0;
  for (let open = nextOpen(text, 0); open >= 0; open = nextOpen(text, i)) {
    if (open > i) parts.push(unescape(text.slice(i, open)));
    const start = open + OPEN.length;
    const end = closeOf(text, open, start);
    try {
      parts.push({ expr: parseExpression(text.slice(start, end)), offset: start });
    } catch (err) {
      throw err instanceof ExpressionError ? err.shifted(start) : err;
    }
    i = end + 2;
  }
  if (i < text.length) parts.push(unescape(text.slice(i)));
  const whole = parts.length === 1 && typeof parts[0] !== 'string';
  const template: ParsedTemplate = Object.freeze({ source: text, parts: Object.freeze(parts), whole });
  parsed.add(template);
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(text, template);
  return template;
}

function partsOf(t: Template): ParsedTemplate {
  return (parsed.has(t) ? t : parseTemplate(t.source)) as ParsedTemplate;
}

/** True when the whole text is one expression (nothing around it): rendering gives its raw value. */
export function isWholeTemplate(t: Template): boolean {
  return partsOf(t).whole;
}

/** Each expression of the template, with the offset of its source inside the text. */
export function templateExpressions(t: Template): { expr: Expression; offset: number }[] {
  return partsOf(t).parts.filter((p) => typeof p !== 'string');
}

function run(part: { expr: Expression; offset: number }, scope: Record<string, unknown>, options?: EvalOptions) {
  try {
    return evaluate(part.expr, scope, options);
  } catch (err) {
    throw err instanceof ExpressionError ? err.shifted(part.offset) : err;
  }
}

/** Renders a template: the raw value for a whole-string expression, else a string. */
export function renderTemplate(t: Template, scope: Record<string, unknown>, options?: EvalOptions): unknown {
  const { parts, whole } = partsOf(t);
  if (whole) return run(parts[0] as Exclude<Part, string>, scope, options);
  let out = '';
  for (const part of parts) {
    if (typeof part === 'string') {
      out += part;
      continue;
    }
    try {
      out += toText(run(part, scope, options));
    } catch (err) {
      throw err instanceof ExpressionError && err.offset === undefined ? err.shifted(part.offset) : err;
    }
  }
  return out;
}
