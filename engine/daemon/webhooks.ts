import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import Stripe from 'stripe';
import type { Clock } from '../clock.ts';
import type { Database } from '../db/connect.ts';
import { type EngineConfig, unsetVariable, type VerifierConfig } from '../config.ts';
import { parseDuration } from '../duration.ts';
import { errorMessage } from '../errors.ts';
import { type Condition, renderDeep } from '../expr/index.ts';
import { InputError, resolveInputs } from '../pipeline/inputs.ts';
import type { Pipeline } from '../pipeline/types.ts';
import type { RunClaims } from './claims.ts';

/** What a webhook request came with. */
export interface WebhookRequest {
  raw: Buffer;
  headers: Record<string, string | string[] | undefined>;
  query: Record<string, unknown>;
}

/** The answer: status, body, and the run it started (if any). */
export interface WebhookAnswer {
  status: number;
  body: { status: 'started' | 'duplicate' | 'ignored' | 'rejected'; run_id?: string | null; error?: string; event_id?: string };
}

export type Verifier = (req: WebhookRequest, now: Date) => string | undefined;

/**
 * One pipeline's webhook route: verify the signature on the raw body, parse it, filter by
 * event type, compute the event id and the run inputs, then, in one transaction, record
 * the event id (unique per route) and queue the run. A replayed event id answers 200 with
 * the first run and starts nothing; a bad signature answers 400 and starts nothing.
 */
export class WebhookRoute {
  readonly path: string;
  private readonly verify?: Verifier;
  private readonly verifierType?: VerifierConfig['type'];

  constructor(
    readonly pipeline: Pipeline,
    config: EngineConfig,
    private db: Database,
    private readonly claims: RunClaims,
    private readonly clock: Clock,
  ) {
    if (pipeline.trigger.kind !== 'webhook') throw new Error(`pipeline ${pipeline.name} is not triggered by a webhook`);
    this.path = pipeline.trigger.path;
    const name = pipeline.trigger.verify;
    if (name) {
      const spec = config.webhooks?.verifiers?.[name];
      if (!spec) throw new Error(`pipeline ${pipeline.name}: no verifier "${name}" in the config (webhooks.verifiers)`);
      if (!spec.secret) {
        const variable = unsetVariable(config, ['webhooks', 'verifiers', name, 'secret']);
        throw new Error(
          `webhook verifier "${name}" (used by pipeline ${pipeline.name}) has no secret${variable ? `: set the environment variable ${variable}` : ''}`,
        );
      }
      this.verify = verifierOf(spec);
      this.verifierType = spec.type;
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
    const bodyId = (scope.body as { id?: unknown } | null)?.id;
    if (this.verifierType === 'stripe' && typeof bodyId === 'string' && bodyId) return bodyId;
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

function header(req: WebhookRequest, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** A signature check by the config's declaration; returns a problem, or undefined when the request is genuine. */
export function verifierOf(spec: VerifierConfig): Verifier {
  if (spec.type === 'stripe') {
    const toleranceSeconds = Math.round((parseDuration(spec.tolerance ?? '5m') ?? 300_000) / 1000);
    return (req, now) => {
      const signature = header(req, 'stripe-signature');
      if (!signature) return 'missing Stripe-Signature header';
      try {
        Stripe.webhooks.constructEvent(req.raw, signature, spec.secret, toleranceSeconds, undefined, now.getTime());
        return undefined;
      } catch (err) {
        return `bad Stripe signature: ${errorMessage(err).split('\n')[0]}`;
      }
    };
  }
  const name = spec.header ?? 'x-signature';
  const prefix = spec.prefix ?? '';
  const encoding = spec.encoding ?? 'hex';
  return (req) => {
    const given = header(req, name);
    if (!given) return `missing ${name} header`;
    if (!given.startsWith(prefix)) return `${name} does not start with "${prefix}"`;
    const expected = createHmac('sha256', spec.secret).update(req.raw).digest();
    const actual = Buffer.from(given.slice(prefix.length).trim(), encoding);
    if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return `bad ${name} signature`;
    return undefined;
  };
}
