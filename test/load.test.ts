import { describe, expect, it } from 'vitest';
import { loadConfig } from '../engine/config.ts';
import { formatDiagnostic } from '../engine/errors.ts';
import { createRegistry } from '../steps/index.ts';
import { diagnosticsOf, pipelineFrom } from './helpers/pipeline.ts';

const ok = `name: fine
trigger:
  schedule: { cron: "0 22 * * 0", timezone: Europe/London }
inputs:
  limit: { type: integer, default: 10 }
steps:
  - id: load
    uses: sql.query
    with: { sql: "SELECT 1 AS n", params: [] }
  - id: each
    foreach: "\${{ steps.load.output.rows }}"
    concurrency: 3
    steps:
      - id: call
        uses: http.request
        with: { url: "https://api.example/\${{ item.n }}" }
      - id: keep
        uses: transform
        with: { value: "\${{ steps.call.output.body }}" }
  - id: summary
    uses: log
    with: { message: "\${{ steps.each.output.succeeded }} of \${{ inputs.limit }}" }
`;

describe('loadPipeline', () => {
  it('accepts a valid pipeline and returns its parsed form', () => {
    const p = pipelineFrom(ok);
    expect(p.name).toBe('fine');
    expect(p.trigger).toEqual({ kind: 'schedule', cron: '0 22 * * 0', timezone: 'Europe/London', catchup: 'last', overlap: 'skip' });
    expect(p.steps.map((s) => [s.id, s.uses, s.concurrency])).toEqual([
      ['load', 'sql.query', 1],
      ['each', 'group', 3],
      ['summary', 'log', 1],
    ]);
    expect(p.steps[1]!.steps!.map((s) => s.id)).toEqual(['call', 'keep']);
    expect(p.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reports a YAML syntax error at its line and column', () => {
    expect(diagnosticsOf('name: x\nsteps:\n  - id: a\n   uses: log\n')).toMatchInlineSnapshot(`
      [
        "p.yaml:4:1: Sequence item without - indicator",
      ]
    `);
  });

  it('reports every problem at once, each at file:line:col', () => {
    const bad = `name: Bad Name
trigger:
  schedule: { cron: "61 25 * * *", timezone: Europe/Londn }
colour: blue
steps:
  - id: load
    uses: sql.qery
    with: { sql: "SELECT 1" }
  - id: send
    uses: http.request
    timeout: 30 seconds
    retry: { attempts: 0 }
    quota: linkedin
    with:
      url: "https://x.example/\${{ steps.later.output.body }}"
      method: FETCH
      headers: { a: "\${{ steps.load.output.rowz }}" }
      extra: 1
  - id: later
    uses: log
    concurrency: 4
    with: { message: "\${{ item.x }} \${{ inputs.nope }} \${{ stepz.a }}" }
  - id: later
    uses: log
    with: { message: 42, level: loud }
`;
    expect(diagnosticsOf(bad)).toMatchInlineSnapshot(`
      [
        "p.yaml:1:7: name: "Bad Name" does not have the expected form (use lower-case letters, digits, "-" and "_", starting with a letter)",
        "p.yaml:3:21: trigger.schedule.cron: invalid cron "61 25 * * *": CronPattern: Invalid value for minute: 61 (write 5 fields like "0 22 * * 0")",
        "p.yaml:3:46: trigger.schedule.timezone: unknown timezone "Europe/Londn" (write an IANA name like "Europe/London")",
        "p.yaml:4:1: colour: unknown key "colour"; allowed keys: $schema, name, description, trigger, inputs, steps",
        "p.yaml:7:11: steps[0].uses: unknown step type "sql.qery" (did you mean "sql.query"?)",
        "p.yaml:11:14: steps[1].timeout: "30 seconds" is not a duration (write "30s", "5m" or "1h")",
        "p.yaml:12:24: steps[1].retry.attempts: expected a positive integer, got 0",
        "p.yaml:13:12: steps[1].quota: unknown quota "linkedin"; quotas in the config: daily",
        "p.yaml:15:35: steps[1].with.url: step "later" runs later; a step can only use outputs of the steps before it",
        "p.yaml:16:15: steps[1].with.method: expected one of "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", got "FETCH"",
        "p.yaml:18:7: steps[1].with.extra: unknown key "extra"; allowed keys: url, method, headers, query, body, effect, cost, idempotency_header",
        "p.yaml:21:5: steps[2].concurrency: concurrency applies to a foreach step (add foreach, or remove concurrency)",
        "p.yaml:22:27: steps[2].with.message: "item" exists only in a step with foreach (and not in foreach itself)",
        "p.yaml:22:41: steps[2].with.message: unknown input "nope"; the pipeline declares no inputs",
        "p.yaml:22:60: steps[2].with.message: unknown name "stepz" (did you mean "steps"?)",
        "p.yaml:23:9: steps[3].id: duplicate step id "later" (steps[2] has it already; step ids must be unique)",
        "p.yaml:25:22: steps[3].with.message: expected a string, got 42",
        "p.yaml:25:33: steps[3].with.level: expected one of "debug", "info", "warn", "error", got "loud"",
      ]
    `);
  });

  it('suggests the fix for a volume written with its unit', () => {
    const yaml = `name: x
trigger: { manual: {} }
steps:
  - id: pick
    uses: filter
    with: { items: [], where: "true", limit: "833/day" }
`;
    expect(diagnosticsOf(yaml)).toEqual(['p.yaml:6:46: steps[0].with.limit: expected an integer, got "833/day" (write limit: 833)']);
  });

  it('checks the steps of a foreach group and what may refer to them', () => {
    const yaml = `name: g
trigger: { manual: {} }
steps:
  - id: each
    foreach: "\${{ [1, 2] }}"
    uses: log
    steps:
      - id: inner
        uses: transform
        with: { value: "\${{ steps.each.output.total }}" }
  - id: after
    uses: log
    with: { message: "\${{ steps.inner.output.value }}" }
  - id: nogroup
    steps:
      - { id: x, uses: log, with: { message: hi } }
`;
    expect(diagnosticsOf(yaml)).toEqual([
      'p.yaml:6:5: steps[0].uses: a foreach group has no uses: put it on the steps inside the group',
      'p.yaml:10:29: steps[0].steps[0].with.value: a step cannot use its own output (steps.each)',
      'p.yaml:13:27: steps[1].with.message: step "inner" runs inside the foreach group "each"; outside it, use steps.each.output.results',
      'p.yaml:15:5: steps[2].steps: a step with its own steps is a foreach group: add foreach (the items to run them for)',
    ]);
  });

  it('knows the outputs each step type declares', () => {
    const yaml = `name: o
trigger: { manual: {} }
steps:
  - id: load
    uses: sql.query
    with: { sql: "SELECT 1" }
  - id: each
    foreach: "\${{ steps.load.output.rows }}"
    steps:
      - { id: call, uses: http.request, with: { url: "https://x.example" } }
  - id: use
    uses: log
    with: { message: "\${{ steps.load.output.rowz }} \${{ steps.each.output.results[0].call.status }} \${{ steps.each.output.done }} \${{ steps.load.rows }}" }
`;
    expect(diagnosticsOf(yaml)).toEqual([
      'p.yaml:13:27: steps[2].with.message: step "load" (sql.query) has no output "rowz" (did you mean "rows"?)',
      'p.yaml:13:105: steps[2].with.message: step "each" (group) has no output "done" (it has: total, succeeded, failed, skipped, results, results_truncated)',
      'p.yaml:13:135: steps[2].with.message: write steps.load.output.<field> (a step exposes its output as "output")',
    ]);
  });

  it('checks that each input is a valid JSON Schema', () => {
    const yaml = 'name: i\ntrigger: { manual: {} }\ninputs:\n  n: { type: integr }\nsteps:\n  - { id: a, uses: log, with: { message: m } }\n';
    expect(diagnosticsOf(yaml)).toEqual([
      'p.yaml:4:6: inputs.n: not a valid JSON Schema: type must be one of array, boolean, integer, null, number, object, string (write e.g. { type: string, default: "x" })',
    ]);
    const defaults = 'name: i\ntrigger: { manual: {} }\ninputs:\n  who: { type: string, default: 42 }\n  n: { type: integer, minimum: 1, default: 0 }\n  ok: { type: integer, default: 3 }\nsteps:\n  - { id: a, uses: log, with: { message: m } }\n';
    expect(diagnosticsOf(defaults)).toEqual([
      'p.yaml:4:33: inputs.who.default: expected a string, got 42 (the default must be a valid value of the input)',
      'p.yaml:5:44: inputs.n.default: expected a positive integer, got 0 (the default must be a valid value of the input)',
    ]);
  });

  it('places expression syntax errors inside the string', () => {
    const yaml = `name: e
trigger: { manual: {} }
steps:
  - id: a
    uses: log
    with: { message: "total: \${{ 1 + }}" }
`;
    const [d] = diagnosticsOf(yaml);
    expect(d).toMatch(/^p\.yaml:6:\d+: steps\[0\]\.with\.message: invalid expression: /);
  });

  it('rejects a pipeline that is not a mapping, or has no steps', () => {
    expect(diagnosticsOf('- a\n- b\n')).toEqual(['p.yaml:1:1: a pipeline is a mapping with name, trigger and steps']);
    expect(diagnosticsOf('name: x\ntrigger: { manual: {} }\nsteps: []\n')).toEqual(['p.yaml:3:8: steps: expected at least 1 entry']);
    expect(diagnosticsOf('name: x\ntrigger: {}\nsteps:\n  - { id: a, uses: log, with: { message: m } }\n')).toEqual([
      'p.yaml:2:10: trigger: expected at least 1 key (write exactly one of schedule, webhook, event or manual)',
    ]);
  });
});

describe('loadConfig', () => {
  it('checks the names a user gives quotas, rate limits, budgets, sources and verifiers', () => {
    const text = `business: { name: B, timezone: Europe/London }
quotas:
  Big-Name: { caps: { day: 5 } }
rate_limits:
  API: { per_second: 2 }
budgets:
  "weekly api": { per: day, limits: { usd: 5 } }
prospect_sources:
  Leads: { type: csv, path: x.csv }
`;
    const { diagnostics } = loadConfig(text, 'flows.config.yaml', {}, createRegistry());
    const rule = 'cannot be used: use lower-case letters, digits, "-" and "_", starting with a letter';
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      `flows.config.yaml:3:3: quotas.Big-Name: the name "Big-Name" ${rule}`,
      `flows.config.yaml:5:3: rate_limits.API: the name "API" ${rule}`,
      `flows.config.yaml:7:3: budgets["weekly api"]: the name "weekly api" ${rule}`,
      `flows.config.yaml:9:3: prospect_sources.Leads: the name "Leads" ${rule}`,
    ]);
  });

  it('checks quotas, windows, timezones, ramps and secret references', () => {
    const text = `business: { name: B, timezone: Europe/London }
quotas:
  a: { caps: { day: -1 } }
  b: { caps: { fortnight: 5 }, window: "9-5" }
  c: { caps: { day: 5 }, window: "17:00-09:00", timezone: Mars/Base, spacing: "soon" }
  d: { caps: { day: 50 }, ramp: { start: 10, step: 5 }, keys: { ana@one.example: { ramp_from: "2026-12-01" }, bob@one.example: } }
connectors:
  semrush: { key: "\${{ env.SEMRUSH_KEY }}", other: "\${{ inputs.x }}" }
`;
    const { diagnostics } = loadConfig(text, 'flows.config.yaml', {}, createRegistry());
    expect(diagnostics.map(formatDiagnostic)).toMatchInlineSnapshot(`
      [
        "flows.config.yaml:3:21: quotas.a.caps.day: expected an integer >= 0, got -1",
        "flows.config.yaml:4:16: quotas.b.caps.fortnight: unknown key "fortnight"; allowed keys: hour, day, rolling_24h, rolling_7d, calendar_week",
        "flows.config.yaml:4:40: quotas.b.window: "9-5" does not have the expected form (a window is HH:MM-HH:MM, e.g. "09:00-17:00")",
        "flows.config.yaml:5:34: quotas.c.window: window "17:00-09:00" ends before it starts",
        "flows.config.yaml:5:59: quotas.c.timezone: unknown timezone "Mars/Base" (write an IANA name like "Europe/London")",
        "flows.config.yaml:5:79: quotas.c.spacing: "soon" is not a spacing (write "60s" or "600s..900s")",
        "flows.config.yaml:6:33: quotas.d.ramp: a ramp starts on a date: write ramp.from: "2026-12-01", or ramp_from on each key (missing on bob@one.example)",
        "flows.config.yaml:8:45: connectors.semrush.other: unknown key "other"; allowed keys: base_url, key, database, display_limit, timeout, units_per_line",
        "flows.config.yaml:8:52: connectors.semrush.other: config values may only use \${{ env.NAME }} (a whole value from the environment)",
      ]
    `);
  });

  it('says in words what every pattern of the config, pipeline and step schemas asks for', async () => {
    const { configSchemaWith } = await import('../engine/config.ts');
    const { PipelineSchema } = await import('../engine/pipeline/schema.ts');
    const { patternHasWords } = await import('../engine/schema-check.ts');
    const registry = createRegistry();
    const unexplained: string[] = [];
    const walk = (node: unknown, where: string): void => {
      if (!node || typeof node !== 'object') return;
      const schema = node as Record<string, unknown>;
      if (typeof schema.pattern === 'string' && !schema['x-hint'] && !patternHasWords(schema.pattern)) unexplained.push(`${where}: ${schema.pattern}`);
      for (const [key, child] of Object.entries(schema)) walk(child, `${where}/${key}`);
    };
    walk(configSchemaWith(registry), 'config');
    walk(PipelineSchema, 'pipeline');
    for (const type of registry.types()) walk(registry.get(type)!.input, type);
    expect(unexplained).toEqual([]);
    // A value of the wrong form gets those words, never the expression.
    const [window] = loadConfig('quotas:\n  a: { caps: { day: 5 }, window: "9-5", timezone: UTC }\n', 'c.yaml', {}, registry).diagnostics.map(formatDiagnostic);
    expect(window).toBe('c.yaml:2:34: quotas.a.window: "9-5" does not have the expected form (a window is HH:MM-HH:MM, e.g. "09:00-17:00")');
  });

  it('checks that each mailbox is on the domain it is listed under', () => {
    const text = `email:
  link_secret: s
  domains:
    one.example:
      mailboxes:
        ana@one.example: { name: Ana }
        ben@two.example: { name: Ben }
        cat@mail.one.example: { name: Cat }
`;
    const { config, diagnostics } = loadConfig(text, 'flows.config.yaml', {}, createRegistry());
    expect(config).toBeUndefined();
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      'flows.config.yaml:7:9: email.domains["one.example"].mailboxes["ben@two.example"]: ben@two.example is not on one.example: write an address @one.example, or list it under a domain two.example of its own',
      'flows.config.yaml:8:9: email.domains["one.example"].mailboxes["cat@mail.one.example"]: cat@mail.one.example is not on one.example: write an address @one.example, or list it under a domain mail.one.example of its own',
    ]);
  });

  it('resolves secrets from the environment', () => {
    const { config } = loadConfig('connectors:\n  semrush: { key: "${{ env.SEMRUSH_KEY }}" }\n', 'c.yaml', { SEMRUSH_KEY: 'k-123' }, createRegistry());
    expect(config!.connectors!.semrush!.key).toBe('k-123');
  });
});

describe('connector settings', () => {
  const registry = createRegistry();
  const check = (text: string, env: Record<string, string> = {}) => loadConfig(text, 'flows.config.yaml', env, registry).diagnostics.map(formatDiagnostic);

  it('are checked against each connector spec, at file:line:col', () => {
    expect(
      check(`connectors:
  spyfu: { api_kye: x }
  semrush: { timeout: "thirty seconds" }
  claude: { model: 42 }
`),
    ).toMatchInlineSnapshot(`
      [
        "flows.config.yaml:2:12: connectors.spyfu.api_kye: unknown key "api_kye" (did you mean "api_key"?)",
        "flows.config.yaml:3:23: connectors.semrush.timeout: "thirty seconds" is not a duration (write timeout: "30s")",
        "flows.config.yaml:4:20: connectors.claude.model: expected a string, got 42",
      ]
    `);
  });

  it('name a registered connector', () => {
    expect(check('connectors:\n  semrsh: {}\n')).toMatchInlineSnapshot(`
      [
        "flows.config.yaml:2:3: connectors.semrsh: unknown key "semrsh" (did you mean "semrush"?)",
      ]
    `);
  });

  it('webhook verifiers are checked against the options of their type', () => {
    expect(
      check(`webhooks:
  verifiers:
    stripe: { type: strpe, secret: s }
    paid: { type: stripe, secret: s, header: x-sig, tolerance: soon }
    partner: { type: hmac-sha256, secret: s, encoding: hex64 }
`),
    ).toMatchInlineSnapshot(`
      [
        "flows.config.yaml:3:21: webhooks.verifiers.stripe.type: expected one of "hmac-sha256", "stripe", got "strpe" (did you mean "stripe"?)",
        "flows.config.yaml:4:38: webhooks.verifiers.paid.header: unknown key "header"; allowed keys: type, secret, tolerance",
        "flows.config.yaml:4:64: webhooks.verifiers.paid.tolerance: "soon" is not a duration (write tolerance: "5m")",
        "flows.config.yaml:5:56: webhooks.verifiers.partner.encoding: expected one of "hex", "base64", got "hex64"",
      ]
    `);
  });

  it('may come from the environment; a value that is not a string is checked when the connector starts', () => {
    expect(check('connectors:\n  semrush: { key: "${{ env.SEMRUSH_API_KEY }}", base_url: "${{ env.SEMRUSH_URL }}" }\n')).toEqual([]);
  });
});

describe('schedule timezones', () => {
  const yaml = (tz = '') => `
name: weekly
trigger:
  schedule: { cron: "0 22 * * 0"${tz} }
steps:
  - { id: hello, uses: log, with: { message: hi } }
`;
  it('default to business.timezone, and are required without it', () => {
    const pipeline = pipelineFrom(yaml());
    expect(pipeline.trigger).toMatchObject({ kind: 'schedule', timezone: 'Europe/London' });
    expect(pipelineFrom(yaml(', timezone: America/New_York')).trigger).toMatchObject({ timezone: 'America/New_York' });
    expect(diagnosticsOf(yaml(), undefined, {})).toEqual([
      'p.yaml:4:13: trigger.schedule: a schedule needs a timezone: write timezone: "Europe/London" here, or set business.timezone in the config',
    ]);
  });
});

describe('the README', () => {
  it('shows an engine config that is valid, connectors and verifiers included', async () => {
    const { readFileSync } = await import('node:fs');
    const readme = readFileSync('README.md', 'utf8');
    const start = readme.indexOf('```yaml', readme.indexOf('## The engine config')) + '```yaml\n'.length;
    const example = readme.slice(start, readme.indexOf('```', start));
    expect(example).toContain('connectors:');
    expect(loadConfig(example, 'README.md', {}, createRegistry()).diagnostics.map(formatDiagnostic)).toEqual([]);
  });


  it('shows a pipeline that is valid against the shipped config', async () => {
    const { readFileSync } = await import('node:fs');
    const { createRegistry } = await import('../steps/index.ts');
    const { loadPipeline } = await import('../engine/pipeline/load.ts');
    const readme = readFileSync('README.md', 'utf8');
    const start = readme.indexOf('```yaml', readme.indexOf('## Pipeline files')) + '```yaml\n'.length;
    const example = readme.slice(start, readme.indexOf('```', start));
    const registry = createRegistry();
    const { config } = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', {}, registry);
    const { diagnostics } = loadPipeline(example, 'README.md', { registry, config: config! });
    expect(diagnostics.map(formatDiagnostic)).toEqual([]);
  });

  it('walks through a first pipeline that is valid', async () => {
    const { readFileSync } = await import('node:fs');
    const { createRegistry } = await import('../steps/index.ts');
    const { loadPipeline } = await import('../engine/pipeline/load.ts');
    const readme = readFileSync('README.md', 'utf8');
    const start = readme.indexOf('```yaml', readme.indexOf('## Your first pipeline')) + '```yaml\n'.length;
    const example = readme.slice(start, readme.indexOf('```', start));
    expect(example).toContain('name: hello');
    const registry = createRegistry();
    const { config } = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', {}, registry);
    expect(loadPipeline(example, 'README.md', { registry, config: config! }).diagnostics.map(formatDiagnostic)).toEqual([]);
  });
});
