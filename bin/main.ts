/**
 * The composition root: the engine's CLI with the built-in steps and connectors (the
 * registry) and the demo's sandboxes. The engine itself names no step and no connector.
 */
import { existsSync } from 'node:fs';
import { chromiumPath } from '../connectors/browser/browser.ts';
import { startDemoApi } from '../connectors/demo-api/sandbox.ts';
import { sandboxSettings } from '../connectors/phantombuster/connector.ts';
import { startPhantombusterSandbox } from '../connectors/phantombuster/sandbox.ts';
import { stripeTestSignature } from '../connectors/stripe/webhooks.ts';
import { exitWhenFlushed, runCli } from '../engine/cli/main.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { reportCommand } from '../steps/report/command.ts';

const code = await runCli(process.argv, {
  registry: createRegistry(),
  pages: builtinPages,
  commands: [reportCommand],
  env: process.env,
  demo: {
    startApi: () => startDemoApi(),
    pages: builtinPages,
    signStripe: stripeTestSignature,
    startLinkedIn: async ({ now, seed }) => {
      const sandbox = await startPhantombusterSandbox({ now, linkedin: { seed } });
      return { connector: sandboxSettings(sandbox, {}), script: (profile, person) => sandbox.world.script(profile, person), close: () => sandbox.close() };
    },
    reportsUnavailable: () =>
      existsSync(chromiumPath(process.env)) ? undefined : `Chromium (for report PDFs) is not at ${chromiumPath(process.env)}: install it with apt-get install chromium, or set CHROMIUM_PATH`,
  },
});
await exitWhenFlushed(code);
