import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type LinkedInWorldOptions } from '../../connectors/phantombuster/sandbox-linkedin.ts';
import { type PhantombusterSandbox, SANDBOX_API_KEY, startPhantombusterSandbox } from '../../connectors/phantombuster/sandbox.ts';
import { ManualClock } from '../../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../../engine/config.ts';
import type { Database } from '../../engine/db/connect.ts';
import { silentLogger } from '../../engine/log.ts';
import { loadPipeline } from '../../engine/pipeline/load.ts';
import type { Pipeline } from '../../engine/pipeline/types.ts';
import type { StepRegistry } from '../../engine/registry.ts';
import { Resources } from '../../engine/resources.ts';
import { createRegistry } from '../../steps/index.ts';

/**
 * The shipped linkedin-daily and config against the Phantombuster sandbox on loopback, on one
 * manual clock shared by the runs, the client and the simulated LinkedIn; one account
 * ("sandbox") with its agents. The LinkedIn tests share it, each with its own seed.
 */

export type AgentKind = 'connect' | 'message' | 'connections' | 'inbox' | 'withdraw';

export interface LinkedinProject {
  db: Database;
  sandbox: PhantombusterSandbox;
  clock: ManualClock;
  state: string;
  registry: StepRegistry;
  config: EngineConfig;
  pipeline: Pipeline;
  resources: Resources;
  /** The sandbox's agent ids by kind. */
  agents: Record<AgentKind, { id: string }>;
}

export function linkedinProject<T extends object = object>(
  open: () => Promise<Database>,
  options: { start: string; seed: (db: Database) => Promise<void>; world?: LinkedInWorldOptions; kinds?: readonly AgentKind[] },
): LinkedinProject & T {
  const t = {} as LinkedinProject & T;
  beforeAll(async () => {
    t.db = await open();
    t.state = mkdtempSync(join(tmpdir(), 'flows-linkedin-'));
    t.clock = new ManualClock(new Date(options.start));
    t.sandbox = await startPhantombusterSandbox({ now: () => t.clock.now(), ...(options.world ? { linkedin: options.world } : {}) });
    const kinds = options.kinds ?? (['connect', 'message', 'connections', 'inbox', 'withdraw'] as const);
    t.agents = Object.fromEntries(kinds.map((kind) => [kind, { id: t.sandbox.addAgent({ kind, account: 'sandbox' }) }])) as LinkedinProject['agents'];
    t.registry = createRegistry();
    t.config = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', {}, t.registry).config!;
    t.config.connectors = {
      ...t.config.connectors,
      phantombuster: { api_key: SANDBOX_API_KEY, base_url: t.sandbox.url, storage_url: t.sandbox.storageUrl, poll: '10s', timeout: '30m', request_timeout: '30s', accounts: { sandbox: { agents: t.agents } } },
    };
    const { pipeline, diagnostics } = loadPipeline(readFileSync('pipelines/linkedin-daily.yaml', 'utf8'), 'linkedin-daily.yaml', { registry: t.registry, config: t.config });
    if (!pipeline) throw new Error(JSON.stringify(diagnostics));
    t.pipeline = pipeline;
    t.resources = new Resources({ config: t.config, env: {}, log: silentLogger, clock: t.clock, projectDir: 'pipelines', stateDir: t.state });
    await options.seed(t.db);
  }, 60_000);
  afterAll(async () => {
    await t.resources?.close();
    await t.sandbox?.close();
    await t.db?.close();
    if (t.state) rmSync(t.state, { recursive: true, force: true });
  });
  return t;
}
