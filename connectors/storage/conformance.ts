import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import { storageConnector } from './connector.ts';
import type { ReportStorage } from './index.ts';

/** Report storage in the connector suite: a write read back. Local: no sandbox, no faults. */
export const storageConformance: ConformanceAdapter<ReportStorage> = {
  spec: storageConnector,
  async call(storage, { signal }) {
    await storage.put('conformance/check.txt', 'stored whole', 'text/plain', { signal });
    return storage.get('conformance/check.txt', { signal });
  },
  check(result) {
    wellFormed(Buffer.isBuffer(result) && result.toString() === 'stored whole', 'the content written');
  },
  faults: [],
};
