import { Command, CommanderError, Option } from 'commander';
import { type Diagnostic, formatDiagnostic, ValidationError } from '../errors.ts';
import packageJson from '../../package.json' with { type: 'json' };
import { InputError } from '../pipeline/inputs.ts';
import type { Page } from '../daemon/daemon.ts';
import type { StepRegistry } from '../registry.ts';
import type { Wrap } from './commands/types.ts';
import { daemonCommand } from './commands/daemon.ts';
import { demoCommand } from './commands/demo.ts';
import { runCommand } from './commands/run.ts';
import { runsCommand, showCommand } from './commands/runs.ts';
import { effectsCommand } from './commands/effects.ts';
import { budgetsCommand, quotasCommand } from './commands/quotas.ts';
import { scheduleCommand } from './commands/schedule.ts';
import { schemasCommand } from './commands/schemas.ts';
import { validateCommand } from './commands/validate.ts';
import { Project, type ProjectOptions, UsageError } from './project.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/** A command added by the composition root (it may use steps and connectors; the engine does not). */
export type CommandModule = (program: Command, project: (defaults?: { logLevel?: string }) => Project, wrap: Wrap) => void;

export interface CliDeps {
  registry: StepRegistry;
  /** GET pages the daemon serves (report links). */
  pages?: readonly Page[];
  /** More commands, e.g. `flows report`. */
  commands?: readonly CommandModule[];
  env: Record<string, string | undefined>;
  /** Where the demo's sandboxes come from (kept out of the engine). */
  demo?: import('./commands/demo.ts').DemoDeps;
}

export function createProgram(deps: CliDeps, setExit: (code: number) => void, output: { jsonErrors?: boolean } = {}): Command {
  const program = new Command('flows')
    .description('Runs declarative YAML pipelines: typed steps, durable runs, quotas and dry runs.')
    .version(packageJson.version, '--version', 'print the version')
    .addOption(new Option('--dir <folder>', 'folder of pipeline files and flows.config.yaml').env('FLOWS_DIR').default('pipelines'))
    .addOption(new Option('--db <url-or-folder>', 'postgres:// URL, or a folder for the embedded database (memory:// for a throwaway one; default: DATABASE_URL, else .flows/db)'))
    .addOption(new Option('--log-level <level>', 'log level on stderr').choices(['debug', 'info', 'warn', 'error', 'silent']))
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // Subcommands inherit this: with --json, runCli prints the error as JSON instead.
  if (output.jsonErrors) program.configureOutput({ outputError: () => {}, writeErr: () => {} });

  const project = (defaults: { logLevel?: string } = {}): Project => {
    const o = program.opts<ProjectOptions>();
    return new Project(deps.registry, { dir: o.dir, db: o.db, logLevel: o.logLevel ?? defaults.logLevel }, deps.env);
  };
  const wrap =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A) =>
      setExit(await fn(...args));

  validateCommand(program, project, wrap);
  runCommand(program, project, wrap);
  runsCommand(program, project, wrap);
  showCommand(program, project, wrap);
  effectsCommand(program, project, wrap);
  quotasCommand(program, project, wrap);
  budgetsCommand(program, project, wrap);
  scheduleCommand(program, project, wrap);
  daemonCommand(program, project, wrap, deps.pages ?? []);
  schemasCommand(program, project, wrap);
  for (const command of deps.commands ?? []) command(program, project, wrap);
  demoCommand(program, project, wrap, deps.demo);
  return program;
}

/**
 * Exits once stdout and stderr have handed on everything written to them: on a pipe, writes
 * are queued, and process.exit alone would cut a long JSON document short.
 */
export async function exitWhenFlushed(code: number): Promise<never> {
  const flushed = (stream: NodeJS.WriteStream) => new Promise<void>((resolve) => stream.write('', () => resolve()));
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}

/** Runs the CLI and returns the exit code; every error a user can cause becomes a clear line. */
export async function runCli(argv: string[], deps: CliDeps): Promise<number> {
  let code: number = EXIT.ok;
  const json = wantsJson(argv);
  const program = createProgram(deps, (c) => (code = c), { jsonErrors: json });
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError && err.exitCode === 0) return EXIT.ok; // --help, --version
    const failure = describeFailure(err);
    if (json) process.stdout.write(`${JSON.stringify({ error: failure })}\n`);
    else if (failure.diagnostics) for (const d of failure.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
    else if (failure.kind !== 'usage' || !(err instanceof CommanderError)) process.stderr.write(`flows: ${failure.message}\n`); // commander wrote its own
    return failure.kind === 'failed' ? EXIT.failed : EXIT.usage;
  }
}

/** What went wrong, as printed (a line on stderr) or, with --json, as the `error` object on stdout. */
interface Failure {
  /** usage: how the command was called (exit 2); invalid: a file does not validate (exit 2); failed: the command itself failed (exit 1). */
  kind: 'usage' | 'invalid' | 'failed';
  message: string;
  diagnostics?: Diagnostic[];
}

function describeFailure(err: unknown): Failure {
  if (err instanceof CommanderError) return { kind: 'usage', message: err.message.replace(/^error: /, '') };
  if (err instanceof ValidationError) return { kind: 'invalid', message: err.message, diagnostics: err.diagnostics };
  if (err instanceof UsageError || err instanceof InputError) return { kind: 'usage', message: err.message };
  return { kind: 'failed', message: (err as Error).message ?? String(err) };
}

/** Whether the command line asks for JSON (options end at "--"). */
function wantsJson(argv: string[]): boolean {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}
