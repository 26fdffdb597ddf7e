import { stripeTestSignature } from '../../connectors/stripe/webhooks.ts';

/** A paid Checkout Session as Stripe sends it in checkout.session.* events; `extra` wins. */
export function checkoutSession(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    object: 'checkout.session',
    amount_total: 4900,
    currency: 'usd',
    payment_status: 'paid',
    status: 'complete',
    mode: 'payment',
    customer_details: { email: 'founder@acme-widgets.com', name: 'Ada Founder' },
    metadata: {},
    custom_fields: [],
    ...extra,
  };
}

export function stripeEvent(id: string, type: string, object: Record<string, unknown>): Record<string, unknown> {
  return { id, object: 'event', type, api_version: '2025-10-29.clover', created: Math.floor(Date.now() / 1000), livemode: false, data: { object } };
}

/** The body and headers of a webhook request signed with `secret`, as Stripe signs them (test mode). */
export function signedStripeRequest(event: Record<string, unknown>, secret: string, at = new Date()): { body: string; headers: Record<string, string> } {
  const body = JSON.stringify(event);
  return { body, headers: { 'content-type': 'application/json', 'stripe-signature': stripeTestSignature(body, secret, at) } };
}
