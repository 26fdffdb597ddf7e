import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { LoadedConfig } from '../../config.ts';
import { type Diagnostic, formatDiagnostic } from '../../errors.ts';
import { checkPipelineSet } from '../../pipeline/load.ts';
import type { Pipeline } from '../../pipeline/types.ts';
import { CONFIG_FILE, isConfigFile, type Project, UsageError } from '../project.ts';
import type { Wrap } from './types.ts';

export function validateCommand(program: Command, project: () => Project, wrap: Wrap): void {
  program
    .command('validate')
    .description('Check pipeline files and the config; print every problem as file:line:col: message')
    .argument('[paths...]', `pipeline files, folders (their pipelines and their ${CONFIG_FILE}) or a ${CONFIG_FILE} (default: --dir)`)
    .option('--json', 'print { ok, files, diagnostics } as JSON on stdout')
    .action(
      wrap(async (paths: string[], opts: { json?: boolean }) => {
        const p = project();
        const targets = paths.length ? expand(p, paths) : { configs: [p.configFile], pipelines: p.pipelineFiles() };
        // A pipeline is checked against the config of its folder when that one is named, else the project's.
        const configOf = (file: string) => (targets.configs.includes(join(dirname(file), CONFIG_FILE)) ? join(dirname(file), CONFIG_FILE) : p.configFile);
        const configs = new Map<string, LoadedConfig>();
        for (const file of [...targets.configs, ...targets.pipelines.map(configOf)]) if (!configs.has(file)) configs.set(file, p.checkConfig(file));

        const diagnostics: Diagnostic[] = [...configs.values()].flatMap((c) => c.diagnostics);
        let steps = 0;
        const loaded: Pipeline[] = [];
        for (const file of targets.pipelines) {
          const result = p.checkPipeline(file, configs.get(configOf(file))!.declared);
          diagnostics.push(...result.diagnostics);
          steps += result.pipeline?.steps.length ?? 0;
          if (result.pipeline) loaded.push(result.pipeline);
        }
        diagnostics.push(...checkPipelineSet(loaded));
        const files = targets.pipelines;
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ ok: diagnostics.length === 0, files: files.map((f) => p.display(f)), diagnostics }, null, 2)}\n`);
        } else {
          for (const d of diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
        }
        if (diagnostics.length) {
          if (!opts.json) process.stderr.write(`${diagnostics.length} problem${diagnostics.length === 1 ? '' : 's'} in ${new Set(diagnostics.map((d) => d.file)).size} file(s)\n`);
          return 2;
        }
        if (!opts.json) {
          process.stdout.write(`ok: ${files.length} pipeline${files.length === 1 ? '' : 's'} (${steps} steps) and the config are valid\n`);
        }
        return 0;
      }),
    );
}

/** The paths a user named: a folder is its pipelines and its config; a config is known by its name. */
function expand(p: Project, paths: string[]): { configs: string[]; pipelines: string[] } {
  const configs = new Set<string>();
  const pipelines = new Set<string>();
  for (const path of paths) {
    if (existsSync(path) && statSync(path).isDirectory()) {
      const config = resolve(path, CONFIG_FILE);
      const files = p.pipelineFiles(resolve(path));
      if (!existsSync(config) && !files.length) throw new UsageError(`no pipeline files and no ${CONFIG_FILE} in ${path}`);
      if (existsSync(config)) configs.add(config);
      for (const file of files) pipelines.add(file);
    } else {
      const file = resolveFile(p, path);
      (isConfigFile(file) ? configs : pipelines).add(file);
    }
  }
  return { configs: [...configs], pipelines: [...pipelines] };
}

function resolveFile(p: Project, path: string): string {
  if (existsSync(path) && statSync(path).isFile()) return resolve(path);
  try {
    return p.findPipelineFile(path);
  } catch {
    throw new UsageError(`no such file: ${path}`);
  }
}
