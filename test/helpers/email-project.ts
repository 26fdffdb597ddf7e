import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SmtpSandbox, startSmtpSandbox } from '../../connectors/smtp/sandbox.ts';
import type { Clock } from '../../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../../engine/config.ts';
import { silentLogger } from '../../engine/log.ts';
import { loadPipeline } from '../../engine/pipeline/load.ts';
import type { Pipeline } from '../../engine/pipeline/types.ts';
import type { StepRegistry } from '../../engine/registry.ts';
import { Resources } from '../../engine/resources.ts';
import { createRegistry } from '../../steps/index.ts';

/** The shipped config and pipelines sending to an SMTP sandbox on loopback, with a state folder of their own. */
export interface EmailProject {
  /** Where the DKIM keys are generated (dkim/<domain>.pem and .txt), and what else a run keeps. */
  state: string;
  smtp: SmtpSandbox;
  env: Record<string, string>;
  registry: StepRegistry;
  config: EngineConfig;
  resources: Resources;
  /** pipelines/<file> as shipped, after `edit`, checked against `config` (the project's unless given). */
  pipeline(file: string, options?: { edit?: (yaml: string) => string; config?: EngineConfig }): Pipeline;
  /** A DNS resolver answering the DKIM records of the keys generated under the state folder. */
  dkimResolver(name: string, type: string): Promise<string[][]>;
  close(): Promise<void>;
}

/**
 * The shipped config (pipelines/flows.config.yaml) with `connectors.smtp` on a fresh SMTP
 * sandbox, changed by `config` (given the state folder), and resources on `clock`.
 */
export async function emailProject(options: { secret: string; clock: Clock; config?: (shipped: EngineConfig, state: string) => EngineConfig }): Promise<EmailProject> {
  const state = mkdtempSync(join(tmpdir(), 'flows-email-'));
  const smtp = await startSmtpSandbox({});
  const env = { FLOWS_LINK_SECRET: options.secret };
  const registry = createRegistry();
  const loaded = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', env, registry);
  if (!loaded.config) throw new Error(`the shipped config: ${JSON.stringify(loaded.diagnostics)}`);
  const shipped = { ...loaded.config, connectors: { ...loaded.config.connectors, smtp: { host: smtp.host, port: smtp.port } } };
  const config = options.config ? options.config(shipped, state) : shipped;
  const resources = new Resources({ config, env, log: silentLogger, clock: options.clock, projectDir: 'pipelines', stateDir: state });
  return {
    state,
    smtp,
    env,
    registry,
    config,
    resources,
    pipeline(file, { edit = (y: string) => y, config: withConfig = config } = {}) {
      const { pipeline, diagnostics } = loadPipeline(edit(readFileSync(join('pipelines', file), 'utf8')), file, { registry, config: withConfig });
      if (!pipeline) throw new Error(`${file}: ${JSON.stringify(diagnostics)}`);
      return pipeline;
    },
    async dkimResolver(name, type) {
      const match = /^s1\._domainkey\.(.+)$/.exec(name);
      if (type !== 'TXT' || !match) throw Object.assign(new Error(`no ${type} record for ${name}`), { code: 'ENOTFOUND' });
      const text = readFileSync(join(state, 'dkim', `${match[1]}.txt`), 'utf8');
      return [[/"(.*)"/.exec(text)![1]!]];
    },
    async close() {
      await resources.close();
      await smtp.close();
      rmSync(state, { recursive: true, force: true });
    },
  };
}
