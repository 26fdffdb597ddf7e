import { Type } from '@sinclair/typebox';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { semrushConnector } from '../connectors/semrush/connector.ts';
import { systemClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import { defineConnector } from '../engine/connector.ts';
import { NonRetriableError } from '../engine/errors.ts';
import { Resources } from '../engine/resources.ts';
import { StepRegistry } from '../engine/registry.ts';
import { failureOf } from './helpers/claude.ts';

/**
 * The live-or-sandbox rule (engine/connector-open.ts), the same for every connector spec:
 * all secrets set -> live; else the sandbox with one warning naming the variable; with
 * `sandboxes: never` or no sandbox -> NonRetriableError naming it.
 */

/** A connector with a key and a sandbox that records what it was made from. */
function fakeConnector(options: { sandbox?: boolean } = {}) {
  const made: { key: string; base_url: string; retries: number }[] = [];
  const sandboxes = { started: 0, closed: 0 };
  const spec = defineConnector({
    name: 'widgets',
    description: 'A widget API (test only).',
    config: Type.Object(
      {
        key: Type.Optional(Type.String({ minLength: 1, description: 'The API key.' })),
        base_url: Type.String({ pattern: '^https?://', default: 'https://api.widgets.example', description: 'Where the API answers.' }),
        retries: Type.Integer({ minimum: 0, default: 2, description: 'How often to retry.' }),
      },
      { additionalProperties: false },
    ),
    secrets: ['key'],
    create(config) {
      made.push(config);
      return { key: config.key, base_url: config.base_url };
    },
    ...(options.sandbox === false
      ? {}
      : {
          async sandbox() {
            sandboxes.started++;
            return { config: { key: 'sandbox-key', base_url: 'http://127.0.0.1:9' }, close: async () => void sandboxes.closed++ };
          },
        }),
  });
  return { spec, made, sandboxes };
}

/** The config file as loadConfig reads it, with the fake connector registered. */
function configOf(spec: ReturnType<typeof fakeConnector>['spec'], text: string, env: Record<string, string> = {}): EngineConfig {
  const { config, diagnostics } = loadConfig(text, 'flows.config.yaml', env, new StepRegistry().connector(spec));
  expect(diagnostics).toEqual([]);
  return config!;
}

function resourcesFor(config: EngineConfig) {
  const lines: { level: number; msg: string; connector?: string }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const resources = new Resources({ config, env: {}, log, clock: systemClock, projectDir: 'pipelines', stateDir: '.flows' });
  return { resources, warnings: () => lines.filter((l) => l.level === 40) };
}

const WITH_KEY = 'connectors:\n  widgets: { key: "${{ env.WIDGETS_KEY }}" }\n';

describe('the live-or-sandbox rule', () => {
  it('every secret set: the live service, with the defaults filled in, and no warning', async () => {
    const { spec, made, sandboxes } = fakeConnector();
    const { resources, warnings } = resourcesFor(configOf(spec, WITH_KEY, { WIDGETS_KEY: 'k-live' }));
    expect(await resources.use(spec)).toEqual({ key: 'k-live', base_url: 'https://api.widgets.example' });
    expect(made).toEqual([{ key: 'k-live', base_url: 'https://api.widgets.example', retries: 2 }]);
    expect(sandboxes.started).toBe(0);
    expect(warnings()).toEqual([]);
    await resources.close();
  });

  it('a secret unset: the sandbox, once per process, with one warning naming the variable', async () => {
    const { spec, made, sandboxes } = fakeConnector();
    const { resources, warnings } = resourcesFor(configOf(spec, WITH_KEY));
    const [first, second] = await Promise.all([resources.use(spec), resources.use(spec)]);
    expect(first).toEqual({ key: 'sandbox-key', base_url: 'http://127.0.0.1:9' });
    expect(second).toBe(first);
    expect(made).toHaveLength(1);
    expect(warnings().map((w) => [w.connector, w.msg])).toEqual([
      ['widgets', 'widgets: key not set (set the environment variable WIDGETS_KEY); answers come from the local sandbox'],
    ]);
    await resources.close();
    expect(sandboxes).toEqual({ started: 1, closed: 1 });
  });

  it('a variable set to "" counts as unset', async () => {
    const { spec } = fakeConnector();
    const { resources } = resourcesFor(configOf(spec, WITH_KEY, { WIDGETS_KEY: '' }));
    expect(await resources.use(spec)).toMatchObject({ key: 'sandbox-key' });
    await resources.close();
  });

  it('with sandboxes: never, a NonRetriableError naming the variable, and no sandbox started', async () => {
    const { spec, sandboxes } = fakeConnector();
    const { resources } = resourcesFor(configOf(spec, `sandboxes: never\n${WITH_KEY}`));
    const err = await failureOf(resources.use(spec));
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toBe('widgets: key not set (set the environment variable WIDGETS_KEY); the config says sandboxes: never, so no sandbox stands in');
    expect(sandboxes.started).toBe(0);
    await resources.close();
  });

  it('a connector without a sandbox, and no key written at all: the error says what to write', async () => {
    const { spec } = fakeConnector({ sandbox: false });
    const { resources } = resourcesFor(configOf(spec, 'connectors:\n  widgets: {}\n'));
    const err = await failureOf(resources.use(spec));
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toBe('widgets: key not set (set connectors.widgets.key in the config, through ${{ env.NAME }}); widgets has no sandbox to stand in');
    await resources.close();
  });

  it('a connector with no secrets is always live', async () => {
    const spec = defineConnector({
      name: 'disk',
      description: 'Local files (test only).',
      config: Type.Object({ dir: Type.String({ default: '/tmp', description: 'Where.' }) }, { additionalProperties: false }),
      secrets: [],
      create: (config) => ({ dir: config.dir }),
    });
    const { resources, warnings } = resourcesFor({ sandboxes: 'never' });
    expect(await resources.use(spec)).toEqual({ dir: '/tmp' });
    expect(warnings()).toEqual([]);
    await resources.close();
  });

  it('a value from the environment is checked when the connector starts, never showing a secret', async () => {
    const { spec } = fakeConnector();
    const config = configOf(spec, 'connectors:\n  widgets: { key: "${{ env.WIDGETS_KEY }}", base_url: "${{ env.WIDGETS_URL }}" }\n', { WIDGETS_KEY: 'k-live', WIDGETS_URL: 'ftp://files' });
    const { resources } = resourcesFor(config);
    const err = await failureOf(resources.use(spec));
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toBe('connectors.widgets.base_url: "ftp://files" does not have the expected form (write a full URL starting with http:// or https://)');
    const secret = await failureOf(resourcesFor({ connectors: { widgets: { key: 42 } } }).resources.use(spec));
    expect(secret.message).toBe('connectors.widgets.key: expected a string (the value is not shown)');
  });

  it('a fake provided for a spec is used instead', async () => {
    const { spec, made } = fakeConnector();
    const { resources } = resourcesFor({});
    resources.provide(spec, { key: 'fake', base_url: 'fake://' });
    expect(await resources.use(spec)).toEqual({ key: 'fake', base_url: 'fake://' });
    expect(made).toEqual([]);
  });

  it('applies to the built-in connectors alike: SEMrush without a key answers from its sandbox', async () => {
    const { resources, warnings } = resourcesFor({ connectors: { semrush: { database: 'uk' } } });
    const semrush = await resources.use(semrushConnector);
    expect((await semrush.domainRank('example.com')).rows).toHaveLength(1);
    expect(warnings().map((w) => w.msg)).toEqual(['semrush: key not set (set connectors.semrush.key in the config, through ${{ env.NAME }}); answers come from the local sandbox']);
    await resources.close();
  });
});
