import { Validator } from '@cfworker/json-schema';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import { isTemplate } from '../engine/expr/index.ts';
import { EXPRESSION_PATTERN } from '../engine/pipeline/expression-schema.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { createRegistry } from '../steps/index.ts';

/**
 * The generated editor schemas (schemas/*.json, what editors read through the
 * `# yaml-language-server: $schema=` line) checked with a validator that is not the one the
 * product uses (ajv), so what an editor shows does not rest on ajv's reading of the schema:
 * every shipped file passes, and the editor says yes or no where `flows validate` does.
 */

const registry = createRegistry();
const pipelineSchema = JSON.parse(readFileSync('schemas/pipeline.schema.json', 'utf8'));
const configSchema = JSON.parse(readFileSync('schemas/config.schema.json', 'utf8'));
const pipelineValidator = new Validator(pipelineSchema, '7', false);
const configValidator = new Validator(configSchema, '7', false);

/** Keywords that only say a subschema failed; the leaves below them say what is wrong. */
const SUMMARY_KEYWORDS = new Set(['anyOf', 'allOf', 'oneOf', 'properties', 'patternProperties', 'additionalProperties', 'items', 'if', 'then', '$ref']);

function problems(validator: Validator, value: unknown): string[] {
  const result = validator.validate(value);
  if (result.valid) return [];
  const leaves = result.errors.filter((e) => !SUMMARY_KEYWORDS.has(e.keyword) || e.error.includes('does not match additional properties'));
  return (leaves.length ? leaves : result.errors).map((e) => `${e.instanceLocation}: ${e.error}`);
}

const shippedConfigText = readFileSync('pipelines/flows.config.yaml', 'utf8');
const shippedConfig = loadConfig(shippedConfigText, 'flows.config.yaml', {}, registry).config as EngineConfig;

describe('the shipped files pass the editor schemas', () => {
  const files = ['pipelines', 'examples'].flatMap((dir) =>
    readdirSync(dir)
      .filter((f) => f.endsWith('.yaml') && f !== 'flows.config.yaml')
      .map((f) => `${dir}/${f}`),
  );

  it("finds the pipelines, the demo's examples included", () => {
    expect(files).toEqual(expect.arrayContaining(['examples/demo.yaml', 'pipelines/paid-report.yaml', 'pipelines/weekly-enrich.yaml']));
  });

  it.each(files)('%s', (file) => {
    expect(problems(pipelineValidator, parse(readFileSync(file, 'utf8')))).toEqual([]);
  });

  it('pipelines/flows.config.yaml', () => {
    expect(problems(configValidator, parse(shippedConfigText))).toEqual([]);
  });
});

/** A manual pipeline with inputs the cases refer to, and a first step whose rows they may use. */
function pipelineWith(parts: { steps?: unknown[]; trigger?: unknown }): Record<string, unknown> {
  return {
    name: 'editor-case',
    trigger: parts.trigger ?? { manual: {} },
    inputs: {
      event: { type: 'object', default: {} },
      limit: { type: 'integer', default: 5 },
      method: { type: 'string', default: 'GET' },
      base: { type: 'string', default: 'https://api.example' },
      email: { type: 'string', default: 'ana@example.com' },
    },
    steps: [{ id: 'load', uses: 'sql.query', with: { sql: 'SELECT id, domain FROM prospects' } }, ...(parts.steps ?? [])],
  };
}

function validateAccepts(pipeline: unknown): boolean {
  return loadPipeline(stringify(pipeline), 'case.yaml', { registry, config: shippedConfig }).diagnostics.length === 0;
}

const pipelineCases: { what: string; accepted: boolean; steps?: unknown[]; trigger?: unknown }[] = [
  // Expressions where the step input is not a plain string.
  { what: 'an expression standing for an object', accepted: true, steps: [{ id: 'read', uses: 'stripe.checkout', with: { session: '${{ inputs.event }}' } }] },
  { what: 'an expression standing for an array', accepted: true, steps: [{ id: 'keep', uses: 'filter', with: { items: '${{ steps.load.output.rows }}', where: 'item.id > 1' } }] },
  {
    what: 'an expression standing for an array element, beside literal ones',
    accepted: true,
    steps: [{ id: 'mail', uses: 'email.send', with: { to: 'ana@example.com', sender: 'd1', subject: 'Hi', template: 'teaser', attachments: ['${{ inputs.event }}', { key: 'r/1.pdf', filename: 'report.pdf' }] } }],
  },
  { what: 'an expression standing for an integer', accepted: true, steps: [{ id: 'keep', uses: 'filter', with: { items: [], where: 'true', limit: '${{ inputs.limit }}' } }] },
  { what: 'an expression standing for an enum value', accepted: true, steps: [{ id: 'call', uses: 'http.request', with: { url: 'https://api.example/v1', method: '${{ inputs.method }}' } }] },
  { what: 'an expression standing for a boolean', accepted: true, steps: [{ id: 'call', uses: 'http.request', with: { url: 'https://api.example/v1', effect: '${{ inputs.limit > 3 }}' } }] },
  { what: 'a URL made of an expression and text', accepted: true, steps: [{ id: 'call', uses: 'http.request', with: { url: '${{ inputs.base }}/v1/overview' } }] },
  { what: 'an expression standing for an email address', accepted: true, steps: [{ id: 'mail', uses: 'email.send', with: { to: '${{ inputs.email }}', sender: 'd1', subject: 'Hi', template: 'teaser' } }] },
  {
    what: 'expressions deep inside a literal mapping',
    accepted: true,
    steps: [{ id: 'save', uses: 'prospects.save', with: { row: { key: '${{ inputs.email }}', source: 'x', domain: '${{ inputs.base }}', company_name: null, contact_name: null, email: '${{ inputs.email }}', linkedin_url: null, problem: null } } }],
  },
  { what: 'expressions in trigger inputs', accepted: true, trigger: { webhook: { inputs: { session: '${{ body.data.object }}', count: '${{ body.count }}' } } } },
  {
    what: 'expressions in foreach params',
    accepted: true,
    steps: [{ id: 'each', foreach: { query: 'SELECT id FROM prospects WHERE source = $1', params: ['${{ inputs.method }}'] }, steps: [{ id: 'note', uses: 'log', with: { message: '${{ item.id }}' } }] }],
  },
  // What must stay an error.
  { what: 'an unknown key in a step', accepted: false, steps: [{ id: 'note', uses: 'log', retries: 3, with: { message: 'hi' } }] },
  { what: 'an unknown key in a step input', accepted: false, steps: [{ id: 'note', uses: 'log', with: { message: 'hi', colour: 'red' } }] },
  {
    what: 'an unknown key in a literal mapping that could have been an expression',
    accepted: false,
    steps: [{ id: 'save', uses: 'prospects.save', with: { row: { key: 'k', source: 'x', domain: null, company_name: null, contact_name: null, email: null, linkedin_url: null, problem: null, colour: 'red' } } }],
  },
  { what: 'an unknown step type', accepted: false, steps: [{ id: 'note', uses: 'log.write', with: { message: 'hi' } }] },
  { what: 'a number where a string is expected', accepted: false, steps: [{ id: 'note', uses: 'log', with: { message: 42 } }] },
  { what: '"abc" where an integer is expected', accepted: false, steps: [{ id: 'keep', uses: 'filter', with: { items: [], where: 'true', limit: 'abc' } }] },
  { what: 'a string where an object is expected', accepted: false, steps: [{ id: 'read', uses: 'stripe.checkout', with: { session: 'cs_123' } }] },
  { what: 'a value outside the enum', accepted: false, steps: [{ id: 'call', uses: 'http.request', with: { url: 'https://api.example/v1', method: 'FETCH' } }] },
  { what: 'a URL that is not http(s)', accepted: false, steps: [{ id: 'call', uses: 'http.request', with: { url: 'ftp://files.example/x' } }] },
  { what: 'an escaped expression, which is literal text, where an integer is expected', accepted: false, steps: [{ id: 'keep', uses: 'filter', with: { items: [], where: 'true', limit: '$${{ inputs.limit }}' } }] },
  { what: 'an expression where the loader wants a number outside with', accepted: false, steps: [{ id: 'each', foreach: '${{ steps.load.output.rows }}', concurrency: '${{ inputs.limit }}', steps: [{ id: 'note', uses: 'log', with: { message: 'hi' } }] }] },
  { what: 'a missing required input', accepted: false, steps: [{ id: 'note', uses: 'log', with: { level: 'info' } }] },
];

describe('the pipeline editor schema says what flows validate says', () => {
  it.each(pipelineCases)('$what: accepted $accepted', ({ steps, trigger, accepted }) => {
    const pipeline = pipelineWith({ steps, trigger });
    const found = problems(pipelineValidator, pipeline);
    expect(found.length === 0, found.join('\n') || 'no problems').toBe(accepted);
    expect(validateAccepts(pipeline)).toBe(accepted);
  });

  it('names the unknown key and the unknown step type', () => {
    expect(problems(pipelineValidator, pipelineWith({ steps: [{ id: 'note', uses: 'log', with: { message: 'hi', colour: 'red' } }] })).join('\n')).toContain('colour');
    expect(problems(pipelineValidator, pipelineWith({ steps: [{ id: 'note', uses: 'log.write' }] })).join('\n')).toMatch(/#\/steps\/1\/uses/);
  });
});

const shippedConnectors = parse(shippedConfigText).connectors;

const configCases: { what: string; accepted: boolean; change: Record<string, unknown> }[] = [
  { what: 'secrets and a host from the environment', accepted: true, change: { connectors: { ...shippedConnectors, smtp: { host: '${{ env.SMTP_HOST }}', port: 587 } }, webhooks: { verifiers: { stripe: { type: 'stripe', secret: '${{ env.STRIPE_WEBHOOK_SECRET }}' } } } } },
  { what: 'an unknown key', accepted: false, change: { colour: 'red' } },
  { what: 'an unknown key in a quota', accepted: false, change: { quotas: { daily: { cap: 5, per: 'day', caps: 6 } } } },
  { what: 'a string where an integer is expected', accepted: false, change: { daemon: { port: '8080' } } },
  // loadConfig checks the schema before it resolves ${{ env.NAME }}: only string values may be expressions.
  { what: 'an expression where an integer is expected', accepted: false, change: { daemon: { port: '${{ env.PORT }}' } } },
];

describe('the config editor schema says what flows validate says', () => {
  it.each(configCases)('$what: accepted $accepted', ({ change, accepted }) => {
    const config = { ...parse(shippedConfigText), ...change };
    const found = problems(configValidator, config);
    expect(found.length === 0, found.join('\n') || 'no problems').toBe(accepted);
    expect(loadConfig(stringify(config), 'flows.config.yaml', {}, registry).diagnostics.length === 0).toBe(accepted);
  });

  it('keeps category reasons, templates over run-time data, as strings', () => {
    const categories = parse(shippedConfigText).categories;
    expect(JSON.stringify(categories)).toContain('${{ metrics.');
    expect(problems(configValidator, { ...parse(shippedConfigText), categories })).toEqual([]);
  });
});

describe('the expression pattern', () => {
  it('reads a string as an expression exactly when the engine does', () => {
    const samples = ['${{ x }}', 'a ${{ x }} b', '${{x}}', '$${{ x }}', '$$${{ x }}', 'a $${{ x }} ${{ y }}', 'plain', '{{ x }}', '$ {{ x }}', '${{ {a: 1} }}', 'line\n${{ x }}\nline'];
    const pattern = new RegExp(EXPRESSION_PATTERN, 'u');
    for (const text of samples) expect([text, pattern.test(text)]).toEqual([text, isTemplate(text)]);
  });
});
