import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import type { DemoApiClient, DemoOverview } from './client.ts';
import { demoApiConnector } from './connector.ts';
import { startDemoApi } from './sandbox.ts';

/** The demo API in the connector suite: one overview. It has no key and no live service. */
export const demoApiConformance: ConformanceAdapter<DemoApiClient> = {
  spec: demoApiConnector,
  async sandbox(faults) {
    const api = await startDemoApi({ faults });
    return { config: { base_url: api.url }, faults: api.faults, close: () => api.close() };
  },
  call: (client, { signal }) => client.overview('acme-widgets.com', { signal }),
  check(result) {
    const overview = result as DemoOverview;
    wellFormed(overview.domain === 'acme-widgets.com' && typeof overview.organic_traffic === 'number', 'an overview of acme-widgets.com');
  },
  faults: ['hang', 'drop', 'throttle', 'error', 'malformed'],
  throttle: 'retry-after',
  timeout: (ms) => ({ timeout: `${ms}ms` }),
};
