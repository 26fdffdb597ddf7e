import type { ClaudeConfig } from '../../connectors/claude/client.ts';
import { SANDBOX_API_KEY } from '../../connectors/claude/sandbox.ts';

/** A Claude connector config pointed at a sandbox, with prices so costs can be checked. */
export function sandboxClaudeConfig(baseUrl: string, overrides: Partial<ClaudeConfig> = {}): ClaudeConfig {
  return {
    base_url: baseUrl,
    api_key: SANDBOX_API_KEY,
    model: 'claude-sonnet-5',
    max_tokens: 2048,
    timeout: '5s',
    price_per_input_token: 0.000003,
    price_per_output_token: 0.000015,
    ...overrides,
  };
}

/** The error `promise` rejects with; fails the test when it resolves. */
export async function failureOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a failure');
}
