import { browserConformance } from './browser/conformance.ts';
import { claudeConformance } from './claude/conformance.ts';
import { demoApiConformance } from './demo-api/conformance.ts';
import { phantombusterConformance } from './phantombuster/conformance.ts';
import type { ConformanceAdapter } from './sandbox/conformance.ts';
import { semrushConformance } from './semrush/conformance.ts';
import { smtpConformance } from './smtp/conformance.ts';
import { spyfuConformance } from './spyfu/conformance.ts';
import { storageConformance } from './storage/conformance.ts';
import { stripeConformance } from './stripe/conformance.ts';

/** Every connector's adapter for the one connector suite (test/connectors.test.ts). */
export const conformanceAdapters: readonly ConformanceAdapter[] = [
  semrushConformance,
  spyfuConformance,
  claudeConformance,
  smtpConformance,
  demoApiConformance,
  browserConformance,
  storageConformance,
  stripeConformance,
  phantombusterConformance,
];
