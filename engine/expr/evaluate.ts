/**
 * Tree-walking evaluator. No eval, no Function, no vm: the only operations are the ones
 * written out below, property reads go through access.ts, and every node visited (plus
 * whatever functions build) is charged against a work budget.
 */
import { ExpressionError, MAX_WORK, type Expression, type Node } from './ast.ts';
import { getMember, inert, setOwn, toKey, typeName } from './access.ts';
import { FUNCTIONS, type FunctionContext } from './functions.ts';
import { astOf } from './parse.ts';

export interface EvalOptions {
  /** Clock for now(); defaults to the system clock. */
  now?: () => Date;
}

const systemNow = () => new Date();

class Evaluation implements FunctionContext {
  private work = 0;

  constructor(
    private readonly scope: Record<string, unknown>,
    readonly now: () => Date,
  ) {}

  charge(units: number): void {
    this.work += units;
    if (this.work > MAX_WORK) {
      throw new ExpressionError(`expression exceeded its work budget (${MAX_WORK} units)`);
    }
  }

  run(node: Node): unknown {
    if (++this.work > MAX_WORK) this.charge(0);
    switch (node.type) {
      case 'Literal':
        return node.value;
      case 'Identifier':
        return this.root(node.name, node.offset);
      case 'Member': {
        const object = this.run(node.object);
        if (node.key !== undefined) return getMember(object, node.key, node.offset);
        const key = toKey(this.run(node.property!), node.offset);
        return key === undefined ? undefined : getMember(object, key, node.offset);
      }
      case 'Array':
        return node.elements.map((e) => this.run(e));
      case 'Object': {
        const out: Record<string, unknown> = {};
        for (const { key, value } of node.entries) setOwn(out, key, this.run(value));
        return out;
      }
      case 'Unary': {
        const v = this.run(node.argument);
        if (node.op === '!') return !v;
        if (typeof v !== 'number') throw operandError('-', node.offset, v);
        return -v;
      }
      case 'Binary':
        return this.binary(node.op, node.offset, node.left, node.right);
      case 'Conditional':
        return this.run(node.test) ? this.run(node.consequent) : this.run(node.alternate);
      case 'Call':
        return this.call(node.name, node.offset, node.args);
    }
  }

  private root(name: string, offset: number): unknown {
    if (Object.hasOwn(this.scope, name)) return inert(this.scope[name]);
    const roots = Object.keys(this.scope);
    const available = roots.length === 0 ? 'no roots are available' : `available roots: ${roots.join(', ')}`;
    throw new ExpressionError(`unknown identifier "${name}" (${available})`, offset);
  }

  private binary(op: string, offset: number, leftNode: Node, rightNode: Node): unknown {
    const left = this.run(leftNode);
    switch (op) {
      case '&&': return left ? this.run(rightNode) : left;
      case '||': return left ? left : this.run(rightNode);
      case '??': return left === null || left === undefined ? this.run(rightNode) : left;
    }
    const right = this.run(rightNode);
    switch (op) {
      case '==':
      case '===':
        return left === right;
      case '!=':
      case '!==':
        return left !== right;
      case '+':
        if (typeof left === 'number' && typeof right === 'number') return left + right;
        if ((typeof left === 'string' || typeof left === 'number') &&
            (typeof right === 'string' || typeof right === 'number')) {
          return String(left) + String(right);
        }
        throw new ExpressionError(`operator + cannot combine ${typeName(left)} and ${typeName(right)}`, offset);
      case '<': case '<=': case '>': case '>=': {
        const comparable = (typeof left === 'number' && typeof right === 'number') ||
          (typeof left === 'string' && typeof right === 'string');
        if (!comparable) {
          throw new ExpressionError(`operator ${op} cannot compare ${typeName(left)} and ${typeName(right)}`, offset);
        }
        const [l, r] = [left as number, right as number];
        return op === '<' ? l < r : op === '<=' ? l <= r : op === '>' ? l > r : l >= r;
      }
    }
    if (typeof left !== 'number') throw operandError(op, offset, left);
    if (typeof right !== 'number') throw operandError(op, offset, right);
    switch (op) {
      case '-': return left - right;
      case '*': return left * right;
      case '/': return left / right;
      case '%': return left % right;
    }
    throw new ExpressionError(`unknown operator ${op}`, offset);
  }

  private call(name: string, offset: number, argNodes: Node[]): unknown {
    const spec = FUNCTIONS.get(name);
    if (spec === undefined) throw new ExpressionError(`unknown function "${name}"`, offset);
    const args = argNodes.map((a) => this.run(a));
    try {
      return inert(spec.call(args, this));
    } catch (err) {
      if (err instanceof ExpressionError) {
        if (err.offset !== undefined) throw err;
        throw new ExpressionError(err.message, offset, { cause: err.cause });
      }
      throw new ExpressionError(`${name}(): ${(err as Error)?.message ?? String(err)}`, offset, { cause: err });
    }
  }
}

function operandError(op: string, offset: number, v: unknown): ExpressionError {
  return new ExpressionError(`operator ${op} expects numbers, got ${typeName(v)}`, offset);
}

/** Evaluates a parsed expression against `scope` (whose own keys are the root names). */
export function evaluate(expr: Expression, scope: Record<string, unknown>, options?: EvalOptions): unknown {
  const ast = astOf(expr);
  if (scope === null || typeof scope !== 'object') throw new ExpressionError('scope must be an object');
  try {
    return inert(new Evaluation(scope, options?.now ?? systemNow).run(ast));
  } catch (err) {
    if (err instanceof ExpressionError) throw err;
    // e.g. a RangeError from a string grown past V8's limit.
    throw new ExpressionError(`evaluation failed: ${(err as Error)?.message ?? String(err)}`, undefined, { cause: err });
  }
}
