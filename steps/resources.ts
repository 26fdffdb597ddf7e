import { join, resolve } from 'node:path';
import { PdfRenderer, type BrowserConfig } from '../connectors/browser/browser.ts';
import { type ClaudeAnalyst, type ClaudeConfig, createClaudeAnalyst } from '../connectors/claude/client.ts';
import { type ClaudeBatches, createClaudeBatches } from '../connectors/claude/batch.ts';
import { SANDBOX_API_KEY, startClaudeSandbox } from '../connectors/claude/sandbox.ts';
import { createSemrushClient, parseSemrushConfig, type SemrushClient } from '../connectors/semrush/client.ts';
import { SANDBOX_KEY as SEMRUSH_SANDBOX_KEY, startSemrushSandbox } from '../connectors/semrush/sandbox.ts';
import { type EmailSender, parseSmtpConfig, SmtpMailer } from '../connectors/smtp/client.ts';
import { type SmtpSandbox, startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { createSpyfuClient, type SpyfuApi, type SpyfuConfig } from '../connectors/spyfu/client.ts';
import { startSpyfuSandbox } from '../connectors/spyfu/sandbox.ts';
import type { ReportStorage } from '../connectors/storage/index.ts';
import { LocalStorage } from '../connectors/storage/local.ts';
import { defineResource, type EngineConfig, NonRetriableError, parseDuration, type ResourceEnv, unsetVariable } from '../engine/sdk.ts';
import { createReportRenderer, type ReportRenderer } from './report/render.ts';

/**
 * The connectors as resources: each made once per process from `connectors.<name>` in the
 * config. A connector whose key is not set runs against its local sandbox (same wire
 * protocol, data derived from the domain) unless the config says `sandboxes: never`, as
 * production should: then a missing key is an error naming the variable to set.
 */

/** `connectors.<name>` as written, or an empty object. */
function section(env: ResourceEnv, name: string): Record<string, unknown> {
  return (env.config.connectors?.[name] ?? {}) as Record<string, unknown>;
}

/**
 * Whether the connector talks to the real service: its secret (`field`) is set. When it is
 * not, the sandbox stands in, or (with `sandboxes: never`) the error says what to set.
 */
function isLive(env: ResourceEnv, name: string, field: string, label: string): boolean {
  const value = section(env, name)[field];
  if (typeof value === 'string' && value !== '') return true;
  const variable = unsetVariable(env.config, ['connectors', name, field]);
  const how = variable ? `set ${variable}` : `set connectors.${name}.${field} in the config (through \${{ env.NAME }})`;
  if (env.config.sandboxes === 'never') throw new NonRetriableError(`${label}: no key, and the config says sandboxes: never (${how})`);
  env.log.warn({ connector: name }, `${label}: no key (${how}); answers come from the local sandbox`);
  return false;
}

/** Sandboxes started for a resource, closed with it. */
const sandboxes = new WeakMap<object, { close(): Promise<void> }>();
async function closeSandbox(value: object): Promise<void> {
  await sandboxes.get(value)?.close();
}

export const semrushResource = defineResource<SemrushClient>({
  name: 'semrush',
  async create(env) {
    const raw = section(env, 'semrush');
    if (isLive(env, 'semrush', 'key', 'SEMrush')) return createSemrushClient(parseSemrushConfig(raw), { parseDuration, now: () => env.clock.now().getTime() });
    const sandbox = await startSemrushSandbox();
    const client = createSemrushClient(parseSemrushConfig({ ...raw, key: SEMRUSH_SANDBOX_KEY, base_url: sandbox.url }), { parseDuration });
    sandboxes.set(client, sandbox);
    return client;
  },
  close: closeSandbox,
});

export const spyfuResource = defineResource<SpyfuApi>({
  name: 'spyfu',
  async create(env) {
    const raw = section(env, 'spyfu') as Partial<SpyfuConfig>;
    const clock = env.clock;
    if (isLive(env, 'spyfu', 'api_key', 'SpyFu')) return createSpyfuClient(raw as SpyfuConfig, { clock });
    const sandbox = await startSpyfuSandbox({ apiKey: 'sandbox-key' });
    const client = createSpyfuClient({ ...raw, api_key: 'sandbox-key', api_id: undefined, base_url: sandbox.url }, { clock });
    sandboxes.set(client, sandbox);
    return client;
  },
  close: closeSandbox,
});

/** The analyst, and the model settings steps need to price and label their work. */
export interface ClaudeResource {
  analyst: ClaudeAnalyst;
  /** Message Batches at half price, for reports made ahead of time. */
  batches: ClaudeBatches;
  model: string;
  maxTokens: number;
}

/** The model and output budget from `connectors.claude`, with their defaults. */
export function claudeSettings(config: EngineConfig): { model: string; maxTokens: number } {
  const raw = (config.connectors?.claude ?? {}) as Partial<ClaudeConfig>;
  return { model: raw.model ?? 'claude-sonnet-5', maxTokens: raw.max_tokens ?? 4096 };
}

export const claudeResource = defineResource<ClaudeResource>({
  name: 'claude',
  async create(env) {
    const raw = section(env, 'claude') as Partial<ClaudeConfig>;
    const prices = env.config.prices ?? {};
    const { model, maxTokens } = claudeSettings(env.config);
    const config: ClaudeConfig = {
      ...raw,
      api_key: raw.api_key ?? '',
      model,
      max_tokens: maxTokens,
      price_per_input_token: raw.price_per_input_token ?? prices.claude_input_token,
      price_per_output_token: raw.price_per_output_token ?? prices.claude_output_token,
    };
    const now = () => env.clock.now().getTime();
    if (isLive(env, 'claude', 'api_key', 'Claude')) return { analyst: createClaudeAnalyst(config, { now }), batches: createClaudeBatches(config, { now }), model, maxTokens };
    const sandbox = await startClaudeSandbox();
    const local = { ...config, api_key: SANDBOX_API_KEY, base_url: sandbox.url };
    const value = { analyst: createClaudeAnalyst(local), batches: createClaudeBatches(local), model, maxTokens };
    sandboxes.set(value, sandbox);
    return value;
  },
  close: closeSandbox,
});

/** The mail sender, and the sandbox server when there is no SMTP host (tests read it). */
export interface MailResource {
  sender: EmailSender;
  sandbox?: SmtpSandbox;
}

export const mailResource = defineResource<MailResource>({
  name: 'smtp',
  async create(env) {
    const raw = { ...section(env, 'smtp') };
    // auth whose user comes from an unset variable: a relay that takes mail without signing in.
    if (!(raw.auth as { user?: string } | undefined)?.user) delete raw.auth;
    if (isLive(env, 'smtp', 'host', 'SMTP')) return { sender: new SmtpMailer(parseSmtpConfig(raw, 'connectors.smtp')) };
    const sandbox = await startSmtpSandbox({ outDir: join(env.stateDir, 'outbox') });
    return { sender: new SmtpMailer(parseSmtpConfig({ host: sandbox.host, port: sandbox.port }, 'smtp sandbox')), sandbox };
  },
  async close(value) {
    await value.sender.close();
    await value.sandbox?.close();
  },
});

export const browserResource = defineResource<PdfRenderer>({
  name: 'browser',
  create: (env) => new PdfRenderer(section(env, 'browser') as BrowserConfig, env.env),
  close: (renderer) => renderer.close(),
});

/** Report files: `connectors.storage.dir` (default .flows/reports). */
export const storageResource = defineResource<ReportStorage>({
  name: 'storage',
  create: (env) => {
    const dir = section(env, 'storage').dir;
    return new LocalStorage(typeof dir === 'string' ? resolve(dir) : join(env.stateDir, 'reports'));
  },
});

/** Report and email templates from the project's templates folder. */
export const templatesResource = defineResource<ReportRenderer>({
  name: 'templates',
  create: (env) => createReportRenderer({ templateDir: join(env.projectDir, 'templates') }),
});

/** Where the project's files are (source files named in the config are relative to it). */
export const projectResource = defineResource<{ projectDir: string; stateDir: string }>({
  name: 'project',
  create: (env) => ({ projectDir: env.projectDir, stateDir: env.stateDir }),
});
