/**
 * Parsing entry point (with a bounded cache: the executor evaluates the same few
 * expressions for every item) and static analysis of what an expression reads.
 */
import {
  ExpressionError,
  MAX_SOURCE_LENGTH,
  type Expression,
  type Node,
  type ParsedExpression,
} from './ast.ts';
import { Parser } from './parser.ts';

const CACHE_LIMIT = 5_000;
const cache = new Map<string, ParsedExpression>();
/** Expressions this module built, so evaluate() can trust their AST. */
const parsed = new WeakSet<Expression>();

/** Parses (and caches) an expression. Throws ExpressionError with an offset into `source`. */
export function parseExpression(source: string): Expression {
  return parseCached(source);
}

function parseCached(source: string): ParsedExpression {
  const hit = cache.get(source);
  if (hit !== undefined) return hit;
  if (typeof source !== 'string') throw new ExpressionError('expression source must be a string');
  if (source.length > MAX_SOURCE_LENGTH) {
    throw new ExpressionError(
      `expression is too long (${source.length} characters, max ${MAX_SOURCE_LENGTH})`,
      0,
    );
  }
  const expr: ParsedExpression = Object.freeze({ source, ast: new Parser(source).parse() });
  parsed.add(expr);
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(source, expr);
  return expr;
}

/** The AST of an expression; one not made by parseExpression is parsed from its source. */
export function astOf(expr: Expression): Node {
  return parsed.has(expr) ? (expr as ParsedExpression).ast : parseCached(expr.source).ast;
}

export interface Reference {
  path: string[];
  offset: number;
}

/** The static key path of `a.b['c']`, or undefined when it is not entirely static. */
function staticPath(node: Node): string[] | undefined {
  if (node.type === 'Identifier') return [node.name];
  if (node.type !== 'Member' || node.key === undefined || node.numericKey) return undefined;
  const base = staticPath(node.object);
  return base === undefined ? undefined : [...base, node.key];
}

function rootOffset(node: Node): number {
  return node.type === 'Member' ? rootOffset(node.object) : node.offset;
}

/**
 * Every member path that starts at a root identifier, as far as it is static: the path
 * stops at the first computed segment, except that a string literal (`a['x']`) continues
 * it. Array indexes stop it too: `rows[0].name` yields `rows`. Offsets are where the root
 * identifier starts in the expression source.
 */
export function references(expr: Expression): Reference[] {
  const out: Reference[] = [];
  const visit = (node: Node): void => {
    switch (node.type) {
      case 'Identifier':
      case 'Member': {
        const path = staticPath(node);
        if (path !== undefined) {
          out.push({ path, offset: rootOffset(node) });
        } else if (node.type === 'Member') {
          visit(node.object);
          if (node.property !== undefined) visit(node.property);
        }
        return;
      }
      case 'Literal':
        return;
      case 'Array':
        return node.elements.forEach(visit);
      case 'Object':
        return node.entries.forEach((e) => visit(e.value));
      case 'Unary':
        return visit(node.argument);
      case 'Binary':
        return [node.left, node.right].forEach(visit);
      case 'Conditional':
        return [node.test, node.consequent, node.alternate].forEach(visit);
      case 'Call':
        return node.args.forEach(visit);
    }
  };
  visit(astOf(expr));
  return out;
}
