/**
 * The composition root: the engine's CLI with the built-in steps and the demo's sandboxes.
 * The engine itself names no step and no connector.
 */
import { startDemoApi } from '../connectors/demo-api/sandbox.ts';
import { runCli } from '../engine/cli/main.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { reportCommand } from '../steps/report/command.ts';

const code = await runCli(process.argv, {
  registry: createRegistry(),
  pages: builtinPages,
  commands: [reportCommand],
  env: process.env,
  demo: { startApi: () => startDemoApi() },
});
process.exit(code);
