import { createHash } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { Database } from '../db/connect.ts';
import { type EngineConfig, unsetVariable } from '../config.ts';
import { checkedSettings } from '../connector-settings.ts';
import { errorMessage } from '../errors.ts';
import { type Condition, renderDeep } from '../expr/index.ts';
import { InputError, resolveInputs } from '../pipeline/inputs.ts';
import type { Pipeline } from '../pipeline/types.ts';
import { type AnyVerifierType, builtinVerifiers, type Verifier, type WebhookRequest } from '../verifier.ts';
import type { RunClaims } from './claims.ts';

export type { Verifier, WebhookRequest } from '../verifier.ts';

/** The answer: status, body, and the run it started (if any). */
export interface WebhookAnswer {
  status: number;
  body: { status: 'started' | 'duplicate' | 'ignored' | 'rejected'; run_id?: string | null; error?: string; event_id?: string };
}

/**
 * One pipeline's webhook route: verify the signature on the raw body, parse it, filter by
 * event type, compute the event id and the run inputs, then, in one transaction, record
 * the event id (unique per route) and queue the run. A replayed event id answers 200 with
 * the first run and starts nothing; a bad signature answers 400 and starts nothing.
 */
export class WebhookRoute {
  readonly path: string;
  private readonly verify?: Verifier;
  private readonly verifierType?: AnyVerifierType;

  constructor(
    readonly pipeline: Pipeline,
    config: EngineConfig,
    private db: Database,
    private readonly claims: RunClaims,
    private readonly clock: Clock,
    verifierTypes: ReadonlyMap<string, AnyVerifierType> = new Map(builtinVerifiers.map((v) => [v.type, v])),
  ) {
    if (pipeline.trigger.kind !== 'webhook') throw new Error(`pipeline ${pipeline.name} is not triggered by a webhook`);
    this.path = pipeline.trigger.path;
    if (pipeline.trigger.verify) {
      const opened = openVerifier(config, pipeline, verifierTypes);
      this.verify = opened.verify;
      this.verifierType = opened.type;
    }
  }

  /** Answers from this database handle (the daemon gives webhooks a pool of their own). */
  useDatabase(db: Database): void {
    this.db = db;
  }

  async handle(req: WebhookRequest): Promise<WebhookAnswer> {
    const trigger = this.pipeline.trigger;
    if (trigger.kind !== 'webhook') throw new Error('unreachable');
    const now = this.clock.now();
    const problem = this.verify?.(req, now);
    if (problem) return reject(400, problem);

    let body: unknown;
    try {
      body = req.raw.length ? JSON.parse(req.raw.toString('utf8')) : {};
    } catch {
      return reject(400, 'the body is not JSON');
    }
    const type = typeof (body as { type?: unknown })?.type === 'string' ? (body as { type: string }).type : undefined;
    if (trigger.events && !(type && trigger.events.includes(type))) {
      return { status: 200, body: { status: 'ignored', error: `event type ${type ?? '(none)'} does not start ${this.pipeline.name}` } };
    }

    const scope = { body, headers: lowerCased(req.headers), query: req.query };
    if (trigger.when !== undefined) {
      const skip = this.whenSkips(trigger.when, scope);
      if (skip) return { status: 200, body: { status: 'ignored', error: skip } };
    }

    let eventId: string;
    let inputs: Record<string, unknown>;
    try {
      eventId = this.eventId(scope, req.raw);
      const given = trigger.inputs ? (renderDeep(trigger.inputs, scope) as Record<string, unknown>) : { event: body };
      inputs = resolveInputs(this.pipeline, given);
    } catch (err) {
      // The sender can fix this; the event is not recorded, so a corrected retry is processed.
      return reject(err instanceof InputError ? 422 : 400, errorMessage(err));
    }

    const result = await this.db.kysely.transaction().execute(async (trx) => {
      const runId = await this.claims.enqueueWebhook(trx, { pipeline: this.pipeline, inputs, trigger: 'webhook', ref: eventId, now }, this.path, eventId);
      if (runId) return { duplicate: false, runId };
      const first = await trx.selectFrom('flow_webhook_events').select('run_id').where('route', '=', this.path).where('event_id', '=', eventId).executeTakeFirst();
      return { duplicate: true, runId: first?.run_id ?? null };
    });
    return { status: 200, body: { status: result.duplicate ? 'duplicate' : 'started', run_id: result.runId, event_id: eventId } };
  }

  /** Why `when` turns this request away, or undefined when it starts a run. */
  private whenSkips(when: Condition, scope: Record<string, unknown>): string | undefined {
    try {
      // Resending would not change the answer, so an expression error ignores the request too (and says why).
      return when.holds(scope) ? undefined : `${this.pipeline.name} starts only when ${when.source}`;
    } catch (err) {
      return `trigger.webhook.when failed: ${errorMessage(err)}`;
    }
  }

  private eventId(scope: Record<string, unknown>, raw: Buffer): string {
    const trigger = this.pipeline.trigger;
    if (trigger.kind !== 'webhook') throw new Error('unreachable');
    if (trigger.eventId) {
      const id = renderDeep(trigger.eventId, scope);
      if (id === undefined || id === null || id === '') throw new Error(`the event id (${trigger.eventId}) is empty for this request`);
      return String(id);
    }
    const providerId = this.verifierType?.eventId?.(scope.body);
    if (providerId) return providerId;
    return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
  }
}

function reject(status: number, error: string): WebhookAnswer {
  return { status, body: { status: 'rejected', error } };
}

function lowerCased(headers: WebhookRequest['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** A secret a webhook verifier needs and the environment does not give. */
export interface MissingSecret {
  /** Where it goes in the config, e.g. webhooks.verifiers.stripe.secret. */
  readonly key: string;
  /** The environment variable the config takes it from, if it names one. */
  readonly variable?: string;
  readonly verifier: string;
  /** The pipeline and route that need it. */
  readonly pipeline: string;
  readonly path: string;
}

/**
 * Every secret the verifiers of these webhook pipelines need and do not have, so a daemon
 * can name them all at once rather than stop on the first.
 */
export function missingWebhookSecrets(pipelines: readonly Pipeline[], config: EngineConfig, types: ReadonlyMap<string, AnyVerifierType>): MissingSecret[] {
  const missing: MissingSecret[] = [];
  for (const p of pipelines) {
    if (p.trigger.kind !== 'webhook' || !p.trigger.verify) continue;
    const name = p.trigger.verify;
    const entry = config.webhooks?.verifiers?.[name];
    const type = entry && types.get(entry.type);
    if (!entry || !type) continue; // openVerifier says what is wrong with these
    for (const field of type.secrets) {
      const value = (entry as Record<string, unknown>)[field];
      if (value !== undefined && value !== '') continue;
      const key = ['webhooks', 'verifiers', name, field];
      missing.push({ key: key.join('.'), variable: unsetVariable(config, key), verifier: name, pipeline: p.name, path: p.trigger.path });
    }
  }
  return missing;
}

/** A missing secret as a line of the message below: what to set, and who needs it. */
export function missingSecretLine(m: MissingSecret): string {
  const how = m.variable ? `set the environment variable ${m.variable}` : `set ${m.key} in the config, through \${{ env.NAME }}`;
  return `webhook verifier "${m.verifier}" (used by pipeline ${m.pipeline}) has no ${m.key.split('.').at(-1)}: ${how} (it checks POST ${m.path})`;
}

/** Every missing secret in one message, one line each. */
export function missingSecretsMessage(lines: readonly string[]): string {
  const n = lines.length;
  return `${n} secret${n === 1 ? ' is' : 's are'} not set (see "Environment variables" in the README):\n${lines.map((l) => `  ${l}`).join('\n')}`;
}

/**
 * The verifier named `name` in the config, made from its type's options with defaults
 * filled in. Every secret the type declares must be set: a missing one stops the daemon
 * with the variable to set, rather than answering every delivery 400.
 */
function openVerifier(config: EngineConfig, pipeline: Pipeline, types: ReadonlyMap<string, AnyVerifierType>): { verify: Verifier; type: AnyVerifierType } {
  const name = pipeline.trigger.kind === 'webhook' ? pipeline.trigger.verify! : '';
  const entry = config.webhooks?.verifiers?.[name];
  if (!entry) throw new Error(`pipeline ${pipeline.name}: no verifier "${name}" in the config (webhooks.verifiers)`);
  const type = types.get(entry.type);
  if (!type) throw new Error(`webhook verifier "${name}": no verifier type "${entry.type}" in this build (types: ${[...types.keys()].join(', ')})`);
  const missing = missingWebhookSecrets([pipeline], config, types);
  if (missing.length) throw new Error(missingSecretsMessage(missing.map(missingSecretLine)));
  const { type: _type, ...written } = entry;
  const options = checkedSettings(type.options, written, `webhooks.verifiers.${name}`, type.secrets);
  return { verify: type.create(options), type };
}
