import { existsSync } from 'node:fs';
import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import { chromiumPath, type PdfRenderer } from './browser.ts';
import { browserConnector } from './connector.ts';

/** The browser in the connector suite: one small PDF. Local: no sandbox, no faults. */
export const browserConformance: ConformanceAdapter<PdfRenderer> = {
  spec: browserConnector,
  call: (renderer, { signal }) => renderer.pdf('<h1>Connector check</h1>', { signal }),
  check(result) {
    wellFormed(Buffer.isBuffer(result) && result.subarray(0, 5).toString() === '%PDF-', 'a PDF');
  },
  faults: [],
  unavailable: (env) => (existsSync(chromiumPath(env)) ? undefined : `no Chromium at ${chromiumPath(env)}`),
};
