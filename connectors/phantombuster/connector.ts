import { defineConnector } from '../../engine/sdk.ts';
import { AGENT_KINDS, createPhantombusterClient, type PhantombusterAccount, type PhantombusterClient, PhantombusterConfigSchema } from './client.ts';
import { type PhantombusterSandbox, SANDBOX_API_KEY, startPhantombusterSandbox } from './sandbox.ts';

/**
 * Phantombuster as the engine sees it: `connectors.phantombuster`, API v2 with a key, else
 * the sandbox simulating LinkedIn. Under the sandbox every configured account's agents are
 * registered there with their kind, so the configured ids work; with no account configured
 * the sandbox makes one ("sandbox") and its agents.
 */
export const phantombusterConnector = defineConnector({
  name: 'phantombuster',
  description: 'Phantombuster API v2 driving LinkedIn phantoms (Auto Connect, Message Sender, Connections Export, Inbox Scraper, Invitation Withdrawer), one set of agents per LinkedIn account.',
  config: PhantombusterConfigSchema,
  secrets: ['api_key'],
  create: (config, deps): PhantombusterClient => createPhantombusterClient(config, { clock: deps.clock }),
  async sandbox(config, deps) {
    const sandbox = await startPhantombusterSandbox({ now: () => deps.clock.now() });
    return { config: sandboxSettings(sandbox, config.accounts ?? {}), close: () => sandbox.close() };
  },
});

/**
 * The settings that reach a sandbox: every configured account's agents registered there
 * with their kind, so the configured ids work; with no account configured, one ("sandbox")
 * with an agent of every kind.
 */
export function sandboxSettings(sandbox: PhantombusterSandbox, configured: Record<string, PhantombusterAccount>) {
  let accounts = configured;
  if (Object.keys(accounts).length === 0) {
    const agents = Object.fromEntries(AGENT_KINDS.map((kind) => [kind, { id: sandbox.addAgent({ kind, account: 'sandbox' }) }]));
    accounts = { sandbox: { agents: agents as PhantombusterAccount['agents'] } };
  } else {
    for (const [account, settings] of Object.entries(accounts)) {
      for (const kind of AGENT_KINDS) {
        const agent = settings.agents[kind];
        if (agent) sandbox.addAgent({ id: agent.id, kind, account, argument: agent.arguments });
      }
    }
  }
  return { api_key: SANDBOX_API_KEY, base_url: sandbox.url, storage_url: sandbox.storageUrl, accounts };
}
