import { defineConnector } from '../../engine/sdk.ts';
import { createDemoApiClient, DemoApiConfigSchema } from './client.ts';
import { startDemoApi } from './sandbox.ts';

/** The demo's search-visibility API: at `base_url` when set, else its sandbox in-process. */
export const demoApiConnector = defineConnector({
  name: 'demo_api',
  description: "The demo's search-visibility API (GET /v1/overview?domain=); it exists only as a sandbox, which `flows demo` starts.",
  config: DemoApiConfigSchema,
  secrets: ['base_url'],
  create: (config, deps) => createDemoApiClient(config, { now: () => deps.clock.now().getTime() }),
  async sandbox() {
    const api = await startDemoApi();
    return { config: { base_url: api.url }, close: () => api.close() };
  },
});
