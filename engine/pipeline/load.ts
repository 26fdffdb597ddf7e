import { createHash } from 'node:crypto';
import { checkCron, ConfigSchema, type DeclaredConfig, isValidTimezone } from '../config.ts';
import { parseDuration } from '../duration.ts';
import type { Diagnostic } from '../errors.ts';
import { type CompiledValue, type Condition, ConditionError, compileCondition, compileValue, ExpressionError, findTemplates, isTemplate, parseTemplate, references, templateExpressions } from '../expr/index.ts';
import type { StepRegistry } from '../registry.ts';
import type { AnyStepType } from '../types.ts';
import { checkSchema, schemaProblems } from '../schema-check.ts';
import { didYouMean } from '../suggest.ts';
import { formatPath, type Path, parseYamlSource, type SourceDoc } from '../yaml.ts';
import { Type } from '@sinclair/typebox';
import { PipelineSchema } from './schema.ts';
import {
  DEFAULT_PAGE_SIZE,
  DEFAULT_RETRY,
  type ForeachSource,
  foreachOutputSchema,
  type Pipeline,
  type PipelineStep,
  type Trigger,
} from './types.ts';
import { checkReferences, type ReferenceScope } from './references.ts';

export interface LoadOptions {
  registry: StepRegistry;
  /** What the config declares; undefined when it cannot be read, and then names are not checked against it. */
  config: DeclaredConfig | undefined;
}

export interface LoadedPipeline {
  pipeline?: Pipeline;
  diagnostics: Diagnostic[];
}

type RawStep = Record<string, unknown> & { id: string; uses: string; with?: Record<string, unknown>; steps?: unknown[] };
type RawPipeline = {
  name: string;
  description?: string;
  trigger: Record<string, any>;
  inputs?: Record<string, Record<string, unknown>>;
  steps: RawStep[];
};

/**
 * Parses a pipeline file and checks everything that can be checked before a run: shape,
 * step types and their inputs, expressions and what they refer to, durations, quota names,
 * cron and timezone. Pure: no I/O. Returns every problem, each placed at file:line:col.
 */
export function loadPipeline(text: string, file: string, options: LoadOptions): LoadedPipeline {
  const doc = parseYamlSource(text, file);
  if (doc.diagnostics.length) return { diagnostics: doc.diagnostics };
  if (doc.value === null || typeof doc.value !== 'object' || Array.isArray(doc.value)) {
    return { diagnostics: [doc.at([], 'a pipeline is a mapping with name, trigger and steps')] };
  }
  const diagnostics = checkSchema(PipelineSchema, doc.value, doc, []);
  const raw = doc.value as RawPipeline;
  if (!Array.isArray(raw.steps)) return { diagnostics };

  const trigger = checkTrigger(raw.trigger, raw.name, doc, options.config, diagnostics);
  for (const [name, schema] of Object.entries(raw.inputs ?? {})) {
    if (!schema || typeof schema !== 'object') continue;
    const problems = schemaProblems(schema);
    for (const problem of problems) diagnostics.push(doc.at(['inputs', name], `not a valid JSON Schema: ${problem} (write e.g. { type: string, default: "x" })`));
    if (!problems.length && 'default' in schema) {
      const wrong = checkSchema(schema, schema.default, doc, ['inputs', name, 'default']);
      diagnostics.push(...wrong.map((d) => ({ ...d, message: `${d.message} (the default must be a valid value of the input)` })));
    }
  }
  const ids = new Map<string, string>();
  const steps: PipelineStep[] = [];
  const all: PipelineStep[] = [];
  // Steps with errors of their own still exist for what refers to them: no cascade of "unknown step".
  const placeholders: PipelineStep[] = [];
  const placed: { raw: RawStep; base: Path; step?: PipelineStep; inForeach: boolean }[] = [];
  let order = 0;
  raw.steps.forEach((rawStep, position) => {
    if (!rawStep || typeof rawStep !== 'object') return;
    const base: Path = ['steps', position];
    const groupOrder = order++;
    const subs: PipelineStep[] = [];
    const subPlaced: typeof placed = [];
    if (Array.isArray(rawStep.steps)) {
      rawStep.steps.forEach((rawSub, j) => {
        if (!rawSub || typeof rawSub !== 'object') return;
        const subBase: Path = [...base, 'steps', j];
        const sub = checkStep(rawSub as RawStep, { position, order: order++, group: rawStep.id, base: subBase }, doc, options, ids, diagnostics);
        if (sub) subs.push(sub);
        else if (typeof (rawSub as RawStep).id === 'string') placeholders.push(placeholder(rawSub as RawStep, order - 1, rawStep.id));
        subPlaced.push({ raw: rawSub as RawStep, base: subBase, step: sub, inForeach: true });
      });
    }
    const step = checkStep(rawStep, { position, order: groupOrder, base, subs }, doc, options, ids, diagnostics);
    placed.push({ raw: rawStep, base, step, inForeach: rawStep.foreach !== undefined }, ...subPlaced);
    if (step) {
      steps.push(step);
      all.push(step, ...subs);
    } else if (typeof rawStep.id === 'string') placeholders.push(placeholder(rawStep, groupOrder), ...subs);
  });

  const scope: ReferenceScope = {
    inputs: new Set(Object.keys(raw.inputs ?? {})),
    steps: new Map([...placeholders, ...all].map((s) => [s.id, s])),
    configKeys: new Set([...Object.keys(ConfigSchema.properties), ...options.registry.configSections.keys()]),
  };
  for (const { raw: rawStep, base, step, inForeach } of placed) {
    if (step) checkStepExpressions(rawStep, base, step, doc, scope, inForeach, diagnostics);
  }

  diagnostics.sort((a, b) => a.line - b.line || a.col - b.col);
  if (diagnostics.length || !trigger) return { diagnostics };
  const pipeline = {
    name: raw.name,
    description: raw.description,
    trigger,
    inputs: raw.inputs ?? {},
    steps,
    file,
    hash: createHash('sha256').update(text).digest('hex'),
  } as unknown as Pipeline;
  return { pipeline, diagnostics };
}

function checkTrigger(
  raw: Record<string, any> | undefined,
  name: unknown,
  doc: SourceDoc,
  config: DeclaredConfig | undefined,
  out: Diagnostic[],
): Trigger | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const kinds = Object.keys(raw);
  if (kinds.length !== 1) return undefined; // the schema already said so
  const kind = kinds[0]!;
  const body = raw[kind] ?? {};
  switch (kind) {
    case 'schedule': {
      const { cron } = body;
      const timezone = body.timezone ?? config?.business?.timezone;
      if (timezone === undefined && config) {
        out.push(doc.at(['trigger', 'schedule'], 'a schedule needs a timezone: write timezone: "Europe/London" here, or set business.timezone in the config'));
      } else if (typeof body.timezone === 'string' && !isValidTimezone(timezone)) {
        out.push(doc.at(['trigger', 'schedule', 'timezone'], `unknown timezone "${timezone}" (write an IANA name like "Europe/London")`));
      }
      if (typeof cron === 'string') {
        const problem = checkCron(cron, typeof timezone === 'string' && isValidTimezone(timezone) ? timezone : 'UTC');
        if (problem) out.push(doc.at(['trigger', 'schedule', 'cron'], `invalid cron "${cron}": ${problem} (write 5 fields like "0 22 * * 0")`));
      }
      return { kind: 'schedule', cron, timezone, catchup: body.catchup ?? 'last', overlap: body.overlap ?? 'skip' };
    }
    case 'webhook': {
      const verifiers = config?.webhooks?.verifiers ?? {};
      if (config && typeof body.verify === 'string' && !verifiers[body.verify]) {
        const names = Object.keys(verifiers);
        out.push(
          doc.at(
            ['trigger', 'webhook', 'verify'],
            `unknown verifier "${body.verify}"${didYouMean(body.verify, names) || (names.length ? `; verifiers in the config: ${names.join(', ')}` : '; declare it under webhooks.verifiers in the config')}`,
          ),
        );
      }
      checkTriggerTemplates(doc, ['trigger', 'webhook'], body, out);
      return {
        kind: 'webhook',
        path: body.path ?? `/hooks/${typeof name === 'string' ? name : 'pipeline'}`,
        verify: body.verify,
        events: body.events,
        when: conditionAt(body.when, ['trigger', 'webhook', 'when'], doc, out),
        eventId: body.event_id,
        inputs: body.inputs,
      };
    }
    case 'event': {
      const windowMs = body.dedupe ? parseDuration(String(body.dedupe.window)) : undefined;
      if (body.dedupe && windowMs === undefined) {
        out.push(doc.at(['trigger', 'event', 'dedupe', 'window'], `"${body.dedupe.window}" is not a duration (write "30d" or "12h")`));
      }
      checkTriggerTemplates(doc, ['trigger', 'event'], body, out);
      return {
        kind: 'event',
        name: body.name,
        when: conditionAt(body.when, ['trigger', 'event', 'when'], doc, out),
        dedupe: body.dedupe && windowMs !== undefined ? { key: body.dedupe.key, windowMs } : undefined,
        inputs: body.inputs,
      };
    }
    case 'manual':
      return { kind: 'manual' };
    default:
      return undefined;
  }
}

/** Expressions in a trigger (event ids, dedupe keys, inputs) must at least parse. */
function checkTriggerTemplates(doc: SourceDoc, base: Path, body: Record<string, unknown>, out: Diagnostic[]): void {
  for (const t of findTemplates(body)) {
    try {
      parseTemplate(t.text);
    } catch (err) {
      if (err instanceof ExpressionError) out.push(doc.at([...base, ...t.path], err.message));
      else throw err;
    }
  }
}

function placeholder(raw: RawStep, order: number, group?: string): PipelineStep {
  return { id: raw.id, order, group, position: -1, uses: String(raw.uses), with: {}, input: compileValue({}), concurrency: 1, retry: DEFAULT_RETRY, outputSchema: Type.Any() };
}

interface Placement {
  position: number;
  order: number;
  base: Path;
  /** Set for a sub-step: the id of its foreach group. */
  group?: string;
  /** Set for a group: its checked sub-steps. */
  subs?: PipelineStep[];
}

function checkStep(
  raw: RawStep,
  place: Placement,
  doc: SourceDoc,
  { registry, config }: LoadOptions,
  ids: Map<string, string>,
  out: Diagnostic[],
): PipelineStep | undefined {
  const at = (path: Path, message: string, key = false) => out.push(doc.at([...place.base, ...path], message, { key }));
  const here = formatPath(place.base);
  if (typeof raw.id === 'string') {
    if (ids.has(raw.id)) at(['id'], `duplicate step id "${raw.id}" (${ids.get(raw.id)} has it already; step ids must be unique)`);
    else ids.set(raw.id, here);
  }
  const isGroup = Array.isArray(raw.steps);
  if (isGroup) {
    if (raw.foreach === undefined) at(['steps'], 'a step with its own steps is a foreach group: add foreach (the items to run them for)', true);
    for (const field of ['uses', 'with', 'key', 'quota', 'quota_key', 'quota_timezone', 'rate_limit', 'budget', 'retry', 'timeout'] as const) {
      if (raw[field] !== undefined) at([field], `a foreach group has no ${field}: put it on the steps inside the group`, true);
    }
  } else if (raw.uses === undefined && raw.id !== undefined) {
    at([], 'missing required key "uses" (the step type), or "steps" for a foreach group');
  }
  const type = !isGroup && typeof raw.uses === 'string' ? registry.get(raw.uses) : undefined;
  if (!isGroup && typeof raw.uses === 'string' && !type) {
    at(['uses'], `unknown step type "${raw.uses}"${didYouMean(raw.uses, registry.types()) || `; known types: ${registry.types().join(', ')}`}`);
  }
  const withValue = raw.with ?? {};
  if (type && withValue && typeof withValue === 'object' && !Array.isArray(withValue)) {
    const dynamic = (path: Path) => isDynamic(withValue, path);
    out.push(...checkSchema(type.input, withValue, doc, [...place.base, 'with'], dynamic));
  }

  if (typeof raw.timeout === 'string' && parseDuration(raw.timeout) === undefined) at(['timeout'], `"${raw.timeout}" is not a duration (write "30s", "5m" or "1h")`);
  const retry = raw.retry as { attempts?: number; backoff?: string; max_backoff?: string } | undefined;
  for (const field of ['backoff', 'max_backoff'] as const) {
    const v = retry?.[field];
    if (typeof v === 'string' && parseDuration(v) === undefined) at(['retry', field], `"${v}" is not a duration (write "1s" or "30s")`);
  }
  if (config) checkNames(raw, config, at);
  const quota = typeof raw.quota === 'string' ? config?.quotas?.[raw.quota] : undefined;
  const perKey = quota && (quota.per_key !== undefined || quota.keys !== undefined || quota.keys_from !== undefined);
  if (perKey && raw.quota_key === undefined && quota!.pick === undefined) {
    const what = quota!.per_key ?? 'key';
    at(['quota'], `quota "${raw.quota}" counts per ${what}: add quota_key (an expression giving the ${what})`);
  }
  if (quota && !perKey && raw.quota_key !== undefined) at(['quota_key'], `quota "${raw.quota}" has no per_key or keys: remove quota_key, or give the quota keys`, true);
  if (type) checkGates(raw, type, withValue, at);
  if (raw.quota_key !== undefined && raw.quota === undefined) at(['quota_key'], 'quota_key goes with quota', true);
  if (raw.quota_timezone !== undefined && raw.quota === undefined) at(['quota_timezone'], 'quota_timezone goes with quota (it says in which timezone its window is read)', true);
  if (raw.concurrency !== undefined && raw.foreach === undefined) at(['concurrency'], 'concurrency applies to a foreach step (add foreach, or remove concurrency)', true);
  if (raw.item_key !== undefined && raw.foreach === undefined) at(['item_key'], 'item_key applies to a foreach step', true);
  if (raw.keep_results !== undefined && raw.foreach === undefined) at(['keep_results'], 'keep_results applies to a foreach step', true);

  let foreach: ForeachSource | undefined;
  if (typeof raw.foreach === 'string') {
    if (!isTemplate(raw.foreach)) at(['foreach'], 'foreach takes an expression giving a list, like "${{ steps.load.output.rows }}", or a query');
    foreach = { kind: 'expression', list: compiled(raw.foreach) };
  } else if (raw.foreach && typeof raw.foreach === 'object' && !Array.isArray(raw.foreach)) {
    const q = raw.foreach as { query?: string; params?: unknown[]; key?: string; page_size?: number };
    if (typeof q.query === 'string' && !/^\s*(select|with)\b/i.test(q.query)) at(['foreach', 'query'], 'a foreach query must be a SELECT (or WITH ... SELECT)');
    if (typeof q.query === 'string' && /;\s*$/.test(q.query)) at(['foreach', 'query'], 'remove the trailing ";" (the query is paged inside another one)');
    foreach = { kind: 'query', query: q.query ?? '', params: compiled(q.params ?? []), key: q.key ?? 'id', pageSize: q.page_size ?? DEFAULT_PAGE_SIZE };
  } else if (raw.foreach !== undefined) {
    at(['foreach'], 'foreach takes an expression giving a list, like "${{ steps.load.output.rows }}", or { query: "SELECT ..." }');
  }

  const when = conditionAt(raw.when, [...place.base, 'when'], doc, out);
  if (typeof raw.id !== 'string' || (!type && !isGroup)) return undefined;
  const subs = place.subs ?? [];
  const itemOutput = isGroup ? Type.Object(Object.fromEntries(subs.map((s) => [s.id, s.outputSchema])), { additionalProperties: false }) : type!.output;
  return {
    id: raw.id,
    name: raw.name as string | undefined,
    position: place.position,
    order: place.order,
    group: place.group,
    uses: isGroup ? 'group' : raw.uses,
    type,
    steps: isGroup ? subs : undefined,
    with: withValue,
    input: compiled(withValue),
    foreach,
    itemKey: compiledOr(raw.item_key),
    keepResults: typeof raw.keep_results === 'number' ? raw.keep_results : undefined,
    concurrency: (raw.concurrency as number | undefined) ?? 1,
    when,
    retry: {
      attempts: retry?.attempts ?? DEFAULT_RETRY.attempts,
      backoffMs: parseDuration(retry?.backoff ?? '') ?? DEFAULT_RETRY.backoffMs,
      maxBackoffMs: parseDuration(retry?.max_backoff ?? '') ?? DEFAULT_RETRY.maxBackoffMs,
    },
    timeoutMs: typeof raw.timeout === 'string' ? parseDuration(raw.timeout) : undefined,
    quota: raw.quota as string | undefined,
    quotaKey: compiledOr(raw.quota_key),
    quotaTimezone: compiledOr(raw.quota_timezone),
    rateLimit: raw.rate_limit as string | undefined,
    budget: raw.budget as string | undefined,
    key: compiledOr(raw.key),
    inDoubt: raw.in_doubt as 'stop' | 'repeat' | undefined,
    outputSchema: foreach ? foreachOutputSchema(itemOutput) : itemOutput,
  };
}

/** The quota, rate limit and budget a step names must be declared in the config. */
function checkNames(raw: RawStep, config: DeclaredConfig, at: (path: Path, message: string) => void): void {
  if (typeof raw.quota === 'string' && !config.quotas?.[raw.quota]) {
    const names = Object.keys(config.quotas ?? {});
    at(['quota'], `unknown quota "${raw.quota}"${didYouMean(raw.quota, names) || (names.length ? `; quotas in the config: ${names.join(', ')}` : '; the config declares no quotas')}`);
  }
  if (typeof raw.rate_limit === 'string' && !config.rate_limits?.[raw.rate_limit]) {
    const names = Object.keys(config.rate_limits ?? {});
    at(['rate_limit'], `unknown rate limit "${raw.rate_limit}"${didYouMean(raw.rate_limit, names) || (names.length ? `; rate limits in the config: ${names.join(', ')}` : '; the config declares no rate_limits')}`);
  }
  if (typeof raw.budget === 'string' && !config.budgets?.[raw.budget]) {
    const names = Object.keys(config.budgets ?? {});
    at(['budget'], `unknown budget "${raw.budget}"${didYouMean(raw.budget, names) || (names.length ? `; budgets in the config: ${names.join(', ')}` : '; the config declares no budgets')}`);
  }
}

/**
 * Flow control a step names must be flow control its type can take: a quota or a rate limit
 * counts calls out (a step type with no outside call has nothing to count), a budget reserves
 * what a call costs (the type must say what that is).
 */
function checkGates(raw: RawStep, type: AnyStepType, withValue: Record<string, unknown>, at: (path: Path, message: string, key?: boolean) => void): void {
  const effect = type.effect;
  const none = `${type.type} makes no outside call`;
  if (!effect) {
    if (raw.quota !== undefined) at(['quota'], `${none}, so quota "${raw.quota}" has nothing to count (a quota goes on a step that sends, writes or calls out)`, true);
    if (raw.rate_limit !== undefined) at(['rate_limit'], `${none}, so rate limit "${raw.rate_limit}" has nothing to pace`, true);
    if (raw.in_doubt !== undefined) at(['in_doubt'], `${none}, so nothing of it can be in doubt`, true);
  }
  if (raw.budget === undefined) return;
  if (!effect?.cost) {
    at(['budget'], `${type.type} reports no cost, so budget "${raw.budget}" cannot meter it (a budget goes on a paid call, such as intel.collect)`, true);
    return;
  }
  const unknown = withValue && typeof withValue === 'object' ? effect.costUnknown?.(withValue) : undefined;
  if (unknown) at(['budget'], unknown, true);
}

/**
 * A value compiled for the executor. A syntax error in it is reported with its place by
 * checkStepExpressions (the pipeline is then not returned), so here it only needs a stand-in.
 */
function compiled(value: unknown): CompiledValue {
  try {
    return compileValue(value);
  } catch (err) {
    if (!(err instanceof ExpressionError)) throw err;
    return {
      dynamic: true,
      render: () => {
        throw err;
      },
    };
  }
}
const compiledOr = (value: unknown) => (value === undefined ? undefined : compiled(value));

/** A `when` checked and compiled, or a diagnostic at its place (see compileCondition). */
function conditionAt(raw: unknown, path: Path, doc: SourceDoc, out: Diagnostic[]): Condition | undefined {
  if (raw === undefined || (typeof raw !== 'string' && typeof raw !== 'boolean')) return undefined;
  try {
    return compileCondition(raw);
  } catch (err) {
    if (err instanceof ConditionError) out.push(doc.at(path, err.message, { offset: err.offset }));
    else if (!(err instanceof ExpressionError)) throw err; // a syntax error is reported with the references
    return undefined;
  }
}

/** True when the value at `path` (or a parent of it) is a ${{ }} expression. */
function isDynamic(root: unknown, path: Path): boolean {
  let v = root;
  for (let i = 0; i <= path.length; i++) {
    if (typeof v === 'string') return isTemplate(v);
    if (i === path.length || v == null || typeof v !== 'object') return false;
    v = (v as Record<string | number, unknown>)[path[i]!];
  }
  return false;
}

/** Every expression of a step: syntax, then what it refers to. */
function checkStepExpressions(
  raw: RawStep,
  base: Path,
  step: PipelineStep,
  doc: SourceDoc,
  scope: ReferenceScope,
  inForeach: boolean,
  out: Diagnostic[],
): void {
  const fields: { path: Path; value: unknown; item: boolean; from: PipelineStep | { order: number; group?: string; id: string } }[] = [
    { path: ['with'], value: raw.with, item: inForeach, from: step },
    { path: ['when'], value: raw.when, item: inForeach, from: step },
    { path: ['key'], value: raw.key, item: inForeach, from: step },
    { path: ['quota_key'], value: raw.quota_key, item: inForeach, from: step },
    { path: ['quota_timezone'], value: raw.quota_timezone, item: inForeach, from: step },
    { path: ['item_key'], value: raw.item_key, item: true, from: outside(step) },
    { path: ['foreach'], value: raw.foreach, item: false, from: outside(step) },
  ];
  for (const field of fields) {
    for (const found of findTemplates(field.value)) {
      const path = [...base, ...field.path, ...found.path];
      let parsedExpressions;
      try {
        parsedExpressions = templateExpressions(parseTemplate(found.text));
      } catch (err) {
        const offset = err instanceof ExpressionError ? err.offset : undefined;
        out.push(doc.at(path, `invalid expression: ${(err as Error).message}`, { offset }));
        continue;
      }
      for (const { expr, offset } of parsedExpressions) {
        for (const problem of checkReferences(references(expr), { ...scope, from: field.from, itemAllowed: field.item })) {
          out.push(doc.at(path, problem.message, { offset: offset + problem.offset }));
        }
      }
    }
  }
}

/** `foreach` and `item_key` of a group are evaluated before its steps, outside the group. */
function outside(step: PipelineStep): { order: number; id: string; group?: string } {
  return { order: step.order, id: step.id, group: step.group };
}

/**
 * What only shows across files: two pipelines with one name, or one webhook path. The
 * daemon routes runs by name and requests by path, so each must be unique.
 */
export function checkPipelineSet(pipelines: readonly Pipeline[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const names = new Map<string, Pipeline>();
  const paths = new Map<string, Pipeline>();
  for (const p of pipelines) {
    const sameName = names.get(p.name);
    if (sameName) out.push({ file: p.file, line: 1, col: 1, path: 'name', message: `pipeline name "${p.name}" is also used by ${sameName.file} (give each pipeline its own name)` });
    else names.set(p.name, p);
    if (p.trigger.kind !== 'webhook') continue;
    const samePath = paths.get(p.trigger.path);
    if (samePath) out.push({ file: p.file, line: 1, col: 1, path: 'trigger.webhook.path', message: `webhook path ${p.trigger.path} is also used by ${samePath.file} (give each webhook its own path)` });
    else paths.set(p.trigger.path, p);
  }
  return out;
}
