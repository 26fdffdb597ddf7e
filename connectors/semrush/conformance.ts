import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import type { DomainRankRow, SemrushClient, SemrushResult } from './client.ts';
import { semrushConnector } from './connector.ts';
import { SANDBOX_KEY, startSemrushSandbox } from './sandbox.ts';

/** SEMrush in the connector suite: one domain overview (10 units). */
export const semrushConformance: ConformanceAdapter<SemrushClient> = {
  spec: semrushConnector,
  async sandbox(faults) {
    const sandbox = await startSemrushSandbox({ faults });
    return { config: { key: SANDBOX_KEY, base_url: sandbox.url }, faults: sandbox.faults, close: () => sandbox.close() };
  },
  call: (client, { signal }) => client.domainRank('semrush.com', { signal }),
  check(result) {
    const { rows, units } = result as SemrushResult<DomainRankRow>;
    wellFormed(rows.length === 1 && rows[0]!.domain === 'semrush.com', 'one overview row for semrush.com');
    wellFormed([rows[0]!.rank, rows[0]!.organicKeywords, rows[0]!.organicTraffic].every((n) => typeof n === 'number'), 'numbers parsed');
    wellFormed(units === 10, '10 units for one line');
  },
  faults: ['hang', 'drop', 'throttle', 'error', 'malformed'],
  throttle: 'retry-after',
  wrongKey: { config: { key: 'wrong-key-6f1d2c9a7e3b4d58a0c1' }, secret: 'wrong-key-6f1d2c9a7e3b4d58a0c1' },
  timeout: (ms) => ({ timeout: `${ms}ms` }),
  live: { variables: ['SEMRUSH_API_KEY'], config: (env) => ({ key: env.SEMRUSH_API_KEY }) },
};
