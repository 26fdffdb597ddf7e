import { Type } from '@sinclair/typebox';
import { defineConnector } from '../../engine/sdk.ts';
import { stripeTestSignature, stripeVerifier } from './webhooks.ts';

/** What `ctx.use(stripeConnector)` gives: Stripe's webhook signatures, both ways, offline. */
export interface StripeWebhooks {
  /** The Stripe-Signature header Stripe would send with `payload` in test mode. */
  sign(payload: string, secret: string, at: Date): string;
}

/**
 * Stripe brings the engine a webhook verifier type (`type: stripe` under webhooks.verifiers);
 * payments arrive as signed events and no Stripe API is called, so there is nothing to set
 * under connectors.stripe and no key: it is always "live".
 */
export const stripeConnector = defineConnector({
  name: 'stripe',
  description: 'Stripe payments arrive as signed webhook events, checked by the `stripe` verifier type (webhooks.verifiers); nothing to set here.',
  config: Type.Object({}, { additionalProperties: false }),
  secrets: [],
  create: (): StripeWebhooks => ({ sign: stripeTestSignature }),
  verifiers: [stripeVerifier],
});
