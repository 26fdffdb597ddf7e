import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { type Diagnostic, formatDiagnostic } from '../../errors.ts';
import { checkPipelineSet } from '../../pipeline/load.ts';
import type { Pipeline } from '../../pipeline/types.ts';
import type { Project } from '../project.ts';
import { UsageError } from '../project.ts';
import type { Wrap } from './types.ts';

export function validateCommand(program: Command, project: () => Project, wrap: Wrap): void {
  program
    .command('validate')
    .description('Check pipeline files and the config; print every problem as file:line:col: message')
    .argument('[paths...]', 'pipeline files (default: every pipeline in --dir, and the config)')
    .option('--json', 'print { ok, files, diagnostics } as JSON on stdout')
    .action(
      wrap(async (paths: string[], opts: { json?: boolean }) => {
        const p = project();
        const diagnostics: Diagnostic[] = [];
        const { config, diagnostics: configProblems } = p.checkConfig();
        diagnostics.push(...configProblems);
        const files = paths.length ? paths.map((f) => resolveFile(p, f)) : p.pipelineFiles();
        let steps = 0;
        const loaded: Pipeline[] = [];
        for (const file of files) {
          const result = p.checkPipeline(file, config ?? {});
          diagnostics.push(...result.diagnostics);
          steps += result.pipeline?.steps.length ?? 0;
          if (result.pipeline) loaded.push(result.pipeline);
        }
        diagnostics.push(...checkPipelineSet(loaded));
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

function resolveFile(p: Project, path: string): string {
  if (existsSync(path) && statSync(path).isFile()) return path;
  try {
    return p.findPipelineFile(path);
  } catch {
    throw new UsageError(`no such file: ${path}`);
  }
}
