import { defineConnector } from '../../engine/sdk.ts';
import { createSpyfuClient, SpyfuConfigSchema } from './client.ts';
import { SANDBOX_API_KEY, startSpyfuSandbox } from './sandbox.ts';

/** SpyFu as the engine sees it: `connectors.spyfu`, the live API with a key, else the sandbox. */
export const spyfuConnector = defineConnector({
  name: 'spyfu',
  description: "SpyFu's v2 APIs: latest domain stats, top competitors, most valuable keywords; billed per row returned.",
  config: SpyfuConfigSchema,
  secrets: ['api_key'],
  create: (config, deps) => createSpyfuClient(config, { clock: deps.clock }),
  async sandbox() {
    const sandbox = await startSpyfuSandbox({ apiKey: SANDBOX_API_KEY });
    // No API ID: the sandbox's key goes as the api_key parameter.
    return { config: { api_key: SANDBOX_API_KEY, api_id: undefined, base_url: sandbox.url }, close: () => sandbox.close() };
  },
});
