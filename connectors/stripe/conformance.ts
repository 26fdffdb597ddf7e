import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import { type StripeWebhooks, stripeConnector } from './connector.ts';
import { stripeVerifier } from './webhooks.ts';

const SECRET = 'whsec_conformance_5e0b';
const EVENT = JSON.stringify({ id: 'evt_conformance', object: 'event', type: 'checkout.session.completed', data: { object: {} } });

/** Stripe in the connector suite: an event signed as Stripe signs it passes its verifier. Offline: no sandbox, no faults. */
export const stripeConformance: ConformanceAdapter<StripeWebhooks> = {
  spec: stripeConnector,
  async call(stripe) {
    const now = new Date();
    const signature = stripe.sign(EVENT, SECRET, now);
    const problem = stripeVerifier.create({ secret: SECRET, tolerance: '5m' })({ raw: Buffer.from(EVENT), headers: { 'stripe-signature': signature }, query: {} }, now);
    return { signature, problem, eventId: stripeVerifier.eventId?.(JSON.parse(EVENT)) };
  },
  check(result) {
    const { signature, problem, eventId } = result as { signature: string; problem?: string; eventId?: string };
    wellFormed(/^t=\d+,v1=[0-9a-f]{64}/.test(signature), 'a Stripe-Signature header');
    wellFormed(problem === undefined, `the verifier accepts it (${problem})`);
    wellFormed(eventId === 'evt_conformance', "the event id is the event's own");
  },
  faults: [],
  abortable: false,
};
