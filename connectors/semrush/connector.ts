import { defineConnector } from '../../engine/sdk.ts';
import { createSemrushClient, SemrushConfigSchema } from './client.ts';
import { SANDBOX_KEY, startSemrushSandbox } from './sandbox.ts';

/** SEMrush as the engine sees it: `connectors.semrush`, the live API with a key, else the sandbox. */
export const semrushConnector = defineConnector({
  name: 'semrush',
  description: 'SEMrush Analytics API v3: domain overview, organic and paid keywords, organic competitors; billed in API units per line returned.',
  config: SemrushConfigSchema,
  secrets: ['key'],
  create: (config, deps) => createSemrushClient(config, { now: () => deps.clock.now().getTime() }),
  async sandbox() {
    const sandbox = await startSemrushSandbox();
    return { config: { key: SANDBOX_KEY, base_url: sandbox.url }, close: () => sandbox.close() };
  },
});
