import type { AnyConnector } from '../engine/sdk.ts';
import { browserConnector } from './browser/connector.ts';
import { claudeConnector } from './claude/connector.ts';
import { demoApiConnector } from './demo-api/connector.ts';
import { phantombusterConnector } from './phantombuster/connector.ts';
import { semrushConnector } from './semrush/connector.ts';
import { smtpConnector } from './smtp/connector.ts';
import { spyfuConnector } from './spyfu/connector.ts';
import { storageConnector } from './storage/connector.ts';
import { stripeConnector } from './stripe/connector.ts';

/** Every built-in connector. A new one is a folder here plus one line below. */
export const builtinConnectors: readonly AnyConnector[] = [
  semrushConnector,
  spyfuConnector,
  claudeConnector,
  smtpConnector,
  browserConnector,
  storageConnector,
  demoApiConnector,
  stripeConnector,
  phantombusterConnector,
];
