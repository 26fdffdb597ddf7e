import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import type { Analysis } from './client.ts';
import { type Claude, claudeConnector } from './connector.ts';
import { SANDBOX_API_KEY, startClaudeSandbox } from './sandbox.ts';

const SUMMARY = { type: 'object', properties: { summary: { type: 'string', minLength: 1 } }, required: ['summary'], additionalProperties: false } as const;

/** Claude in the connector suite: one short structured analysis (a few hundred tokens live). */
export const claudeConformance: ConformanceAdapter<Claude> = {
  spec: claudeConnector,
  async sandbox(faults) {
    const sandbox = await startClaudeSandbox({ faults });
    return { config: { api_key: SANDBOX_API_KEY, base_url: sandbox.url }, faults: sandbox.faults, close: () => sandbox.close() };
  },
  call: (client, { signal }) =>
    client.analyst.analyse({ prompt: 'In one sentence: what does acme-widgets.com sell?', schema: SUMMARY, toolName: 'record_summary', maxTokens: 256, signal }),
  check(result) {
    const { analysis, usage } = result as Analysis<{ summary?: unknown }>;
    wellFormed(typeof analysis.summary === 'string' && analysis.summary.length > 0, 'a summary');
    wellFormed(usage.input_tokens > 0 && usage.output_tokens > 0, 'token usage');
  },
  faults: ['hang', 'drop', 'throttle', 'error', 'malformed'],
  throttle: 'retry-after',
  wrongKey: { config: { api_key: 'sk-ant-wrong-7f3a9c21d4e8b6' }, secret: 'sk-ant-wrong-7f3a9c21d4e8b6' },
  timeout: (ms) => ({ timeout: `${ms}ms` }),
  live: { variables: ['ANTHROPIC_API_KEY'], config: (env) => ({ api_key: env.ANTHROPIC_API_KEY }) },
};
