import type { TSchema } from '@sinclair/typebox';
import type { Reference } from '../expr/index.ts';
import { didYouMean } from '../suggest.ts';
import type { PipelineStep } from './types.ts';

/** The roots an expression in a pipeline may start from. */
export const EXPRESSION_ROOTS = ['inputs', 'steps', 'item', 'config', 'env', 'run'] as const;
export const RUN_FIELDS = ['id', 'pipeline', 'dry_run', 'started_at', 'sandboxes'];

export interface ReferenceScope {
  inputs: Set<string>;
  steps: Map<string, PipelineStep>;
  configKeys: Set<string>;
}

interface Problem {
  offset: number;
  message: string;
}

/** Checks what expressions refer to against what exists at that point of the pipeline. */
export function checkReferences(
  refs: Reference[],
  scope: ReferenceScope & { from: { id: string; order: number; group?: string }; itemAllowed: boolean },
): Problem[] {
  const problems: Problem[] = [];
  for (const { path, offset } of refs) {
    const [root, first, second, ...rest] = path;
    const problem = (message: string) => problems.push({ offset, message });
    switch (root) {
      case 'inputs':
        if (first !== undefined && !scope.inputs.has(first)) {
          problem(`unknown input "${first}"${didYouMean(first, scope.inputs) || (scope.inputs.size ? `; inputs: ${[...scope.inputs].join(', ')}` : '; the pipeline declares no inputs')}`);
        }
        break;
      case 'item':
        if (!scope.itemAllowed) problem('"item" exists only in a step with foreach (and not in foreach itself)');
        break;
      case 'config':
        if (first !== undefined && !scope.configKeys.has(first)) problem(`unknown config section "${first}"${didYouMean(first, scope.configKeys)}`);
        break;
      case 'run':
        if (first !== undefined && !RUN_FIELDS.includes(first)) problem(`unknown run field "${first}"; run has ${RUN_FIELDS.join(', ')}`);
        break;
      case 'env':
        break;
      case 'steps': {
        if (first === undefined) break;
        const target = scope.steps.get(first);
        if (!target) {
          problem(`unknown step "${first}"${didYouMean(first, scope.steps.keys())}`);
          break;
        }
        const from = scope.from;
        if (target.id === from.id || target.id === from.group) {
          problem(`a step cannot use its own output (steps.${first})`);
          break;
        }
        if (target.order > from.order) {
          problem(`step "${first}" runs later; a step can only use outputs of the steps before it`);
          break;
        }
        if (target.group && target.group !== from.group) {
          problem(`step "${first}" runs inside the foreach group "${target.group}"; outside it, use steps.${target.group}.output.results`);
          break;
        }
        if (second === undefined) break;
        if (second !== 'output') {
          problem(`write steps.${first}.output.<field> (a step exposes its output as "output")`);
          break;
        }
        const missing = missingField(target.outputSchema, rest);
        if (missing) {
          const known = missing.known.length ? ` (it has: ${missing.known.join(', ')})` : '';
          problem(`step "${first}" (${target.uses}) has no output "${[...missing.prefix].join('.')}"${didYouMean(missing.prefix.at(-1)!, missing.known) || known}`);
        }
        break;
      }
      default:
        if (root !== undefined) problem(`unknown name "${root}"${didYouMean(root, EXPRESSION_ROOTS) || `; expressions start from ${EXPRESSION_ROOTS.join(', ')}`}`);
    }
  }
  return problems;
}

/** Follows `path` through declared object properties; reports the first segment that is not declared. */
function missingField(schema: TSchema, path: string[]): { prefix: string[]; known: string[] } | undefined {
  let current: any = schema;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i]!;
    if (!current || typeof current !== 'object') return undefined;
    if (current.type === 'array' && /^\d+$/.test(segment)) {
      current = current.items;
      continue;
    }
    if (current.type === 'string' && segment === 'length') return undefined;
    const props = current.properties as Record<string, unknown> | undefined;
    const open = !props || current.additionalProperties || current.patternProperties;
    if (props && segment in props) {
      current = props[segment];
      continue;
    }
    if (open) return undefined;
    return { prefix: path.slice(0, i + 1), known: Object.keys(props) };
  }
  return undefined;
}
