import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { type DeclaredConfig, emptyConfig, type EngineConfig, type LoadedConfig, loadConfig } from '../config.ts';
import { type Database, openDatabase } from '../db/connect.ts';
import { ValidationError } from '../errors.ts';
import { createLogger, type Logger } from '../log.ts';
import { stderrTerminal } from './terminal.ts';
import { loadPipeline } from '../pipeline/load.ts';
import type { Pipeline } from '../pipeline/types.ts';
import type { StepRegistry } from '../registry.ts';
import { createScrubber, type Scrubber } from '../secrets.ts';
import { didYouMean } from '../suggest.ts';

export const CONFIG_FILE = 'flows.config.yaml';

/** The config is recognised by its name, in any folder. */
export const isConfigFile = (path: string): boolean => basename(path) === CONFIG_FILE;

export interface ProjectOptions {
  /** Folder of pipeline files and the config (default ./pipelines, or FLOWS_DIR). */
  dir?: string;
  /** A postgres:// URL or an embedded data directory (default DATABASE_URL, else .flows/db). */
  db?: string;
  logLevel?: string;
}

/**
 * The user's project as the CLI sees it: the pipelines folder, its config, the database.
 * Reads the environment once, here, and hands it on.
 */
export class Project {
  readonly dir: string;
  readonly env: Record<string, string | undefined>;
  readonly scrub: Scrubber;
  readonly log: Logger;
  private loadedConfig?: EngineConfig;

  constructor(
    readonly registry: StepRegistry,
    private readonly options: ProjectOptions,
    env: Record<string, string | undefined>,
  ) {
    this.env = env;
    this.dir = resolve(options.dir ?? env.FLOWS_DIR ?? 'pipelines');
    this.scrub = createScrubber(env);
    const level = options.logLevel ?? env.FLOWS_LOG_LEVEL ?? (process.stderr.isTTY ? 'warn' : 'info');
    this.log = createLogger({ level, scrub: this.scrub, destination: stderrTerminal.logDestination() });
  }

  /** The same project with extra environment values (those already set win). */
  withEnv(extra: Record<string, string>): Project {
    return new Project(this.registry, this.options, { ...extra, ...this.env });
  }

  get configFile(): string {
    return join(this.dir, CONFIG_FILE);
  }

  /** Path as a user would type it, relative to where they stand. */
  display(path: string): string {
    const rel = relative(process.cwd(), path);
    return rel.startsWith('..') ? path : rel;
  }

  /** A config file (the project's by default), or the diagnostics that stop it from loading. */
  checkConfig(file = this.configFile): LoadedConfig {
    if (!existsSync(file)) return { config: emptyConfig, declared: emptyConfig, diagnostics: [] };
    return loadConfig(readFileSync(file, 'utf8'), this.display(file), this.env, this.registry);
  }

  get config(): EngineConfig {
    if (!this.loadedConfig) {
      const { config, diagnostics } = this.checkConfig();
      if (!config) throw new ValidationError(diagnostics);
      this.loadedConfig = config;
    }
    return this.loadedConfig;
  }

  /** Every pipeline file in the folder (the project's by default; the config excluded). */
  pipelineFiles(dir = this.dir): string[] {
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f) && !isConfigFile(f))
      .sort()
      .map((f) => join(dir, f));
  }

  /** A pipeline checked against a config (or, when the config cannot be read at all, against nothing it declares). */
  checkPipeline(file: string, config: DeclaredConfig | undefined) {
    return loadPipeline(readFileSync(file, 'utf8'), this.display(file), { registry: this.registry, config });
  }

  /** A pipeline by file path or by name; throws ValidationError with every problem. */
  pipeline(nameOrPath: string): Pipeline {
    const file = this.findPipelineFile(nameOrPath);
    const { pipeline, diagnostics } = this.checkPipeline(file, this.config);
    if (!pipeline) throw new ValidationError(diagnostics);
    return pipeline;
  }

  findPipelineFile(nameOrPath: string): string {
    if (/\.ya?ml$/.test(nameOrPath) && existsSync(nameOrPath)) return resolve(nameOrPath);
    for (const ext of ['.yaml', '.yml']) {
      const candidate = join(this.dir, `${nameOrPath}${ext}`);
      if (existsSync(candidate)) return candidate;
    }
    const names = this.pipelineFiles()
      .map((f) => basename(f).replace(/\.ya?ml$/, ''))
      .sort();
    throw new UsageError(`no pipeline "${nameOrPath}" in ${this.display(this.dir)}${didYouMean(nameOrPath, names) || (names.length ? ` (pipelines: ${names.join(', ')})` : '')}`);
  }

  /** DATABASE_URL (or --db URL) means Postgres; otherwise the embedded database under .flows/. */
  openDb(): Promise<Database> {
    const target = this.options.db ?? this.env.DATABASE_URL;
    const migrations = this.registry.migrations;
    if (target && /^postgres(ql)?:\/\//.test(target)) return openDatabase({ url: target, migrations });
    if (target?.startsWith('memory://')) return openDatabase({ dataDir: target, migrations });
    return openDatabase({ dataDir: resolve(target ?? join('.flows', 'db')), migrations });
  }
}

/** A mistake in how a command was called: exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
