import { Type } from '@sinclair/typebox';
import Stripe from 'stripe';
import { defineVerifier, DURATION_PATTERN, errorMessage, parseDuration } from '../../engine/sdk.ts';

/**
 * Stripe's webhook signatures, checked with the Stripe library exactly as Stripe specifies
 * (Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256 of "t.body">, within a tolerance), and
 * Stripe's own event id, so each event is processed once however often it is delivered.
 * Both work offline: no API key, no network.
 */
export const stripeVerifier = defineVerifier({
  type: 'stripe',
  description: 'The Stripe-Signature header, checked with the Stripe library (signature and timestamp tolerance); the event id is the event\'s own id.',
  options: Type.Object(
    {
      secret: Type.String({ minLength: 1, description: 'The endpoint\'s signing secret (whsec_...), through ${{ env.STRIPE_WEBHOOK_SECRET }}.' }),
      tolerance: Type.String({ pattern: DURATION_PATTERN, default: '5m', description: 'How old a signed timestamp may be, like "5m".' }),
    },
    { additionalProperties: false },
  ),
  secrets: ['secret'],
  create({ secret, tolerance }) {
    const toleranceSeconds = Math.round((parseDuration(tolerance) ?? 300_000) / 1000);
    return (req, now) => {
      const header = req.headers['stripe-signature'];
      const signature = Array.isArray(header) ? header[0] : header;
      if (!signature) return 'missing Stripe-Signature header';
      try {
        // The signature only: whether the body is JSON is the route's to say.
        Stripe.webhooks.signature!.verifyHeader(req.raw, signature, secret, toleranceSeconds, undefined, now.getTime());
        return undefined;
      } catch (err) {
        return `bad Stripe signature: ${errorMessage(err).split('\n')[0]}`;
      }
    };
  },
  eventId(body) {
    const id = (body as { id?: unknown } | null)?.id;
    return typeof id === 'string' && id ? id : undefined;
  },
});

/** The Stripe-Signature header Stripe would send with `payload` (test mode): for the demo and tests. */
export function stripeTestSignature(payload: string, secret: string, at: Date): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: Math.floor(at.getTime() / 1000) });
}
