import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import type { AgentRecord, PhantombusterApi } from './client.ts';
import { phantombusterConnector } from './connector.ts';
import { SANDBOX_API_KEY, startPhantombusterSandbox } from './sandbox.ts';

const AGENT_ID = '4000000000000042';

/** Phantombuster in the connector suite: one agent record (free; nothing is launched). */
export const phantombusterConformance: ConformanceAdapter<PhantombusterApi> = {
  spec: phantombusterConnector,
  async sandbox(faults) {
    const sandbox = await startPhantombusterSandbox({ faults, agents: [{ id: AGENT_ID, kind: 'connections' }] });
    return {
      config: { api_key: SANDBOX_API_KEY, base_url: sandbox.url, storage_url: sandbox.storageUrl, accounts: { sandbox: { agents: agentsOf(AGENT_ID) } } },
      faults: sandbox.faults,
      close: () => sandbox.close(),
    };
  },
  call: (client, { signal, env }) => client.agent(env.PHANTOMBUSTER_AGENT_ID || AGENT_ID, { signal }),
  check(result) {
    const agent = result as AgentRecord;
    wellFormed(typeof agent.id === 'string' && agent.id.length > 0, 'an agent id');
    wellFormed(typeof agent.s3Folder === 'string' && typeof agent.orgS3Folder === 'string', 'its result folders');
  },
  faults: ['hang', 'drop', 'throttle', 'error', 'malformed'],
  throttle: 'retry-after',
  wrongKey: { config: { api_key: 'pb-wrong-key-5d1e9a7c3b' }, secret: 'pb-wrong-key-5d1e9a7c3b' },
  timeout: (ms) => ({ request_timeout: `${ms}ms` }),
  live: {
    variables: ['PHANTOMBUSTER_API_KEY', 'PHANTOMBUSTER_AGENT_ID'],
    config: (env) => ({ api_key: env.PHANTOMBUSTER_API_KEY, accounts: { live: { agents: agentsOf(env.PHANTOMBUSTER_AGENT_ID!) } } }),
  },
};

function agentsOf(id: string) {
  return { connect: { id }, message: { id }, connections: { id }, inbox: { id } };
}
