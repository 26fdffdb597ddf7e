import { createHmac, timingSafeEqual } from 'node:crypto';
import { type Static, type TObject, Type } from '@sinclair/typebox';
import { asWritten } from './connector-settings.ts';

/** What a webhook request came with. */
export interface WebhookRequest {
  raw: Buffer;
  headers: Record<string, string | string[] | undefined>;
  query: Record<string, unknown>;
}

/** A signature check: a problem to answer 400 with, or undefined when the request is genuine. */
export type Verifier = (req: WebhookRequest, now: Date) => string | undefined;

/**
 * A kind of webhook signature, named by `type:` in the config's `webhooks.verifiers`. The
 * engine has the generic hmac-sha256; connectors contribute their provider's (Stripe's).
 */
export interface VerifierType<O extends TObject = TObject> {
  /** The `type:` a verifier in the config names, like "stripe". */
  readonly type: string;
  /** One line for the config schema. */
  readonly description: string;
  /** The verifier's other keys (a secret, a header ...), each with a description; defaults for all but the secret. */
  readonly options: O;
  /** Fields that must be set (written in the file, from a set variable): the daemon refuses to serve the route without them, naming the variable. */
  readonly secrets: readonly (keyof Static<O> & string)[];
  create(options: Static<O>): Verifier;
  /**
   * The provider's own id of the event in a verified body, when it has one (Stripe: `id`):
   * each event is then processed once however often it is delivered. Without it, a hash
   * of the body stands in (the trigger's `event_id` wins over both).
   */
  eventId?(body: unknown): string | undefined;
}

/** Any verifier type, for registries. */
export type AnyVerifierType = VerifierType<any>;

export function defineVerifier<O extends TObject>(type: VerifierType<O>): VerifierType<O> {
  return type;
}

function header(req: WebhookRequest, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** An HMAC-SHA256 of the raw body in a header, compared in constant time. */
export const hmacSha256Verifier = defineVerifier({
  type: 'hmac-sha256',
  description: 'An HMAC-SHA256 of the raw body, in a header, compared in constant time.',
  options: Type.Object(
    {
      secret: Type.String({ minLength: 1, description: 'The signing secret, through ${{ env.NAME }}.' }),
      header: Type.String({ default: 'x-signature', description: 'The header holding the signature.' }),
      prefix: Type.String({ default: '', description: 'Text before the digest in the header, e.g. "sha256=".' }),
      encoding: Type.Unsafe<'hex' | 'base64'>({ type: 'string', enum: ['hex', 'base64'], default: 'hex', description: 'How the digest is written.' }),
    },
    { additionalProperties: false },
  ),
  secrets: ['secret'],
  create({ secret, header: name, prefix, encoding }) {
    return (req) => {
      const given = header(req, name);
      if (!given) return `missing ${name} header`;
      if (!given.startsWith(prefix)) return `${name} does not start with "${prefix}"`;
      const expected = createHmac('sha256', secret).update(req.raw).digest();
      const actual = Buffer.from(given.slice(prefix.length).trim(), encoding);
      if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return `bad ${name} signature`;
      return undefined;
    };
  },
});

/** The verifier types the engine has without any connector. */
export const builtinVerifiers: readonly AnyVerifierType[] = [hmacSha256Verifier];

/**
 * One entry of `webhooks.verifiers`: `type` names a registered type, and the entry is then
 * checked against that type's options (unknown keys rejected, as everywhere in the config).
 */
export function verifierEntrySchema(types: ReadonlyMap<string, AnyVerifierType>): Record<string, unknown> {
  const sorted = [...types.values()].sort((a, b) => a.type.localeCompare(b.type));
  return {
    type: 'object',
    required: ['type'],
    properties: {
      type: { type: 'string', enum: sorted.map((t) => t.type), description: sorted.map((t) => `${t.type}: ${t.description}`).join(' ') },
    },
    allOf: sorted.map((t) => ({
      if: { properties: { type: { const: t.type } }, required: ['type'] },
      then: asWritten(Type.Object({ type: Type.Literal(t.type, { description: t.description }), ...t.options.properties }, { additionalProperties: false })),
    })),
  };
}
