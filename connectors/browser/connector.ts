import { defineConnector } from '../../engine/sdk.ts';
import { BrowserConfigSchema, PdfRenderer } from './browser.ts';

/** The browser that prints report PDFs: local, so always "live" (no secrets, no sandbox). */
export const browserConnector = defineConnector({
  name: 'browser',
  description: "Debian's Chromium through puppeteer-core, printing report HTML to A4 PDFs: one browser per process, a pool of pages.",
  config: BrowserConfigSchema,
  secrets: [],
  create: (config, deps) => new PdfRenderer(config, deps.env),
  close: (renderer) => renderer.close(),
});
