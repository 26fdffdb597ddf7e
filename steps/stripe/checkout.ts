import { Type } from '@sinclair/typebox';
import { defineStep, NonRetriableError, type Queryable } from '../../engine/sdk.ts';
import { normalizeDomain } from '../domain.ts';

/**
 * `stripe.checkout`: the facts of a paid Checkout Session (the `data.object` of a
 * checkout.session.completed or .async_payment_succeeded event): who paid, how much, for
 * which company, and the attribution the payment link carried in its metadata.
 *
 * The company is found, in order: the prospect named by metadata.prospect_id (or
 * client_reference_id) when we know it; metadata.domain; a custom field keyed domain,
 * website or company_website. Without any, `domain` is null and `problem` says why.
 */

const text = () => Type.Union([Type.String(), Type.Null()]);

const Output = Type.Object(
  {
    session_id: Type.String({ description: 'The Checkout Session id (cs_...): one payment.' }),
    paid: Type.Boolean({ description: 'payment_status is paid.' }),
    amount: Type.Integer({ description: 'amount_total in the smallest currency unit (cents).' }),
    currency: Type.String(),
    email: text(),
    name: text(),
    domain: text(),
    company: text(),
    prospect_id: text(),
    channel: text(),
    campaign: text(),
    variant: text(),
    problem: text(),
  },
  { additionalProperties: false },
);

const DOMAIN_FIELDS = ['domain', 'website', 'company_website', 'companywebsite', 'url'];

type Session = Record<string, unknown> & { metadata?: Record<string, unknown>; custom_fields?: unknown[]; customer_details?: Record<string, unknown> };

const str = (v: unknown): string | null => (typeof v === 'string' && v.trim() !== '' ? v.trim() : null);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function customField(session: Session): string | null {
  for (const field of session.custom_fields ?? []) {
    const f = field as { key?: unknown; text?: { value?: unknown }; dropdown?: { value?: unknown } };
    if (typeof f.key === 'string' && DOMAIN_FIELDS.includes(f.key.toLowerCase())) return str(f.text?.value) ?? str(f.dropdown?.value);
  }
  return null;
}

async function prospectBy(db: Queryable, column: 'id' | 'domain', value: string): Promise<{ id: string; domain: string | null; company_name: string | null } | undefined> {
  const rows = await db.query<{ id: string; domain: string | null; company_name: string | null }>(`SELECT id, domain, company_name FROM prospects WHERE ${column} = $1`, [value]);
  return rows[0];
}

export const stripeCheckout = defineStep({
  type: 'stripe.checkout',
  description: 'Reads a Stripe Checkout Session: amount, buyer, the company (known prospect, metadata or custom field) and attribution metadata.',
  input: Type.Object(
    { session: Type.Record(Type.String(), Type.Unknown(), { description: 'The event\'s data.object, a checkout.session.' }) },
    { additionalProperties: false },
  ),
  output: Output,
  async run(ctx, input) {
    const session = input.session as Session;
    if (session.object !== 'checkout.session' || typeof session.id !== 'string') {
      throw new NonRetriableError(`expected a checkout.session object, got ${JSON.stringify(session.object ?? null)} (pass the event's data.object)`);
    }
    const meta = session.metadata ?? {};
    const reference = str(meta.prospect_id) ?? str(session.client_reference_id);
    let prospect = reference && UUID.test(reference) ? await prospectBy(ctx.db, 'id', reference) : undefined;
    const written = prospect?.domain ?? str(meta.domain) ?? customField(session);
    const domain = written ? (normalizeDomain(written) ?? null) : null;
    if (!prospect && domain) prospect = await prospectBy(ctx.db, 'domain', domain);
    const problem =
      domain ? null
      : written ? `the session's domain ${JSON.stringify(written)} is not a domain name`
      : prospect ? `prospect ${prospect.id} has no domain yet, and session ${session.id} gives none (no metadata.domain, no domain custom field)`
      : `session ${session.id} names no known prospect${reference ? ` (${reference} is unknown)` : ''}, no metadata.domain and no domain custom field`;
    const details = session.customer_details ?? {};
    return {
      session_id: session.id,
      paid: session.payment_status === 'paid',
      amount: typeof session.amount_total === 'number' ? session.amount_total : 0,
      currency: str(session.currency) ?? 'usd',
      email: str(details.email) ?? str(session.customer_email),
      name: str(details.name),
      domain,
      company: str(meta.company) ?? prospect?.company_name ?? null,
      prospect_id: prospect?.id ?? null,
      channel: str(meta.channel),
      campaign: str(meta.campaign),
      variant: str(meta.variant),
      problem,
    };
  },
});
