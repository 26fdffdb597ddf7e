import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import type { SpyfuApi, SpyfuDomainStats, SpyfuResult } from './client.ts';
import { spyfuConnector } from './connector.ts';
import { SANDBOX_API_KEY, startSpyfuSandbox } from './sandbox.ts';

/** SpyFu in the connector suite: one domain's latest stats (one billed row). */
export const spyfuConformance: ConformanceAdapter<SpyfuApi> = {
  spec: spyfuConnector,
  async sandbox(faults) {
    const sandbox = await startSpyfuSandbox({ faults });
    return { config: { api_key: SANDBOX_API_KEY, base_url: sandbox.url }, faults: sandbox.faults, close: () => sandbox.close() };
  },
  call: (client, { signal }) => client.latestDomainStats('spyfu.com', { signal }),
  check(result) {
    const { data, rows } = result as SpyfuResult<SpyfuDomainStats | null>;
    wellFormed(data !== null && rows === 1, 'one row of stats');
    wellFormed([data!.monthlyOrganicClicks, data!.totalOrganicResults, data!.searchYear].every((n) => typeof n === 'number'), 'numbers');
  },
  faults: ['hang', 'drop', 'throttle', 'error', 'malformed'],
  throttle: 'retry-after',
  wrongKey: { config: { api_key: 'WRONGKEY-3c8e1f0a9b' }, secret: 'WRONGKEY-3c8e1f0a9b' },
  timeout: (ms) => ({ timeout: `${ms}ms` }),
  live: { variables: ['SPYFU_API_KEY'], config: (env) => ({ api_key: env.SPYFU_API_KEY, api_id: env.SPYFU_API_ID || undefined }) },
};
