/**
 * The sandboxed expression language of pipeline files: `${{ ... }}` templates holding a
 * JS-like expression subset, evaluated without eval/Function/vm against plain data.
 *
 * - parse.ts / parser.ts / lexer.ts: source -> AST (with offsets), bounded cache, references()
 * - evaluate.ts: AST -> value, with a work budget
 * - functions.ts: the whitelisted functions
 * - access.ts: the only property reads and writes (own data only, no prototypes)
 * - template.ts / deep.ts: `${{ }}` strings, and structures that hold them
 */
export { ExpressionError, type Expression } from './ast.ts';
export { parseExpression, references, type Reference } from './parse.ts';
export { evaluate, type EvalOptions } from './evaluate.ts';
export {
  isTemplate,
  isWholeTemplate,
  parseTemplate,
  renderTemplate,
  templateExpressions,
  type Template,
} from './template.ts';
export { findTemplates, renderDeep } from './deep.ts';
export { type CompiledValue, type Condition, ConditionError, compileCondition, compileValue } from './compile.ts';
