import { defineConnector } from '../../engine/sdk.ts';
import { type ClaudeBatches, createClaudeBatches } from './batch.ts';
import { type ClaudeAnalyst, ClaudeConfigSchema, createClaudeAnalyst } from './client.ts';
import { SANDBOX_API_KEY, startClaudeSandbox } from './sandbox.ts';

/** What steps get from `ctx.use(claudeConnector)`: single analyses, Message Batches, and the model settings they price and label their work with. */
export interface Claude {
  analyst: ClaudeAnalyst;
  /** Message Batches at half price, for reports made ahead of time. */
  batches: ClaudeBatches;
  model: string;
  maxTokens: number;
}

/** Claude as the engine sees it: the Messages and Message Batches APIs through one key, else the sandbox (which serves both). */
export const claudeConnector = defineConnector({
  name: 'claude',
  description: 'Claude through the Anthropic API: structured analyses (Messages, forced tool use) and Message Batches at half price; tokens priced by prices.claude_input_token and claude_output_token.',
  config: ClaudeConfigSchema,
  secrets: ['api_key'],
  create(settings, deps): Claude {
    const config = { ...settings, price_per_input_token: deps.prices.claude_input_token, price_per_output_token: deps.prices.claude_output_token };
    const now = () => deps.clock.now().getTime();
    return { analyst: createClaudeAnalyst(config, { now }), batches: createClaudeBatches(config, { now }), model: settings.model, maxTokens: settings.max_tokens };
  },
  async sandbox() {
    const sandbox = await startClaudeSandbox();
    return { config: { api_key: SANDBOX_API_KEY, base_url: sandbox.url }, close: () => sandbox.close() };
  },
});
