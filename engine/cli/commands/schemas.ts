import type { Command } from 'commander';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { schemaFiles, withGeneratedDocs } from '../../generated.ts';
import type { Project } from '../project.ts';
import type { Wrap } from './types.ts';

export function schemasCommand(program: Command, project: () => Project, wrap: Wrap): void {
  program
    .command('schemas')
    .description('Generate the editor schemas (schemas/*.json) and the README step and connector references from the registry')
    .option('--out <folder>', 'where the schema files go', 'schemas')
    .option('--readme <file>', 'README whose step and connector reference blocks are refreshed', 'README.md')
    .option('--check', 'change nothing; exit 1 when a generated file is stale')
    .action(
      wrap(async (opts: { out: string; readme: string; check?: boolean }) => {
        const { registry } = project();
        const wanted: Record<string, string> = {};
        for (const [name, content] of Object.entries(schemaFiles(registry))) wanted[join(opts.out, name)] = content;
        if (existsSync(opts.readme)) wanted[opts.readme] = withGeneratedDocs(readFileSync(opts.readme, 'utf8'), registry);
        const stale = Object.entries(wanted).filter(([file, content]) => !existsSync(file) || readFileSync(file, 'utf8') !== content);
        if (opts.check) {
          for (const [file] of stale) process.stderr.write(`stale: ${file} (run: npx flows schemas)\n`);
          return stale.length ? 1 : 0;
        }
        mkdirSync(opts.out, { recursive: true });
        for (const [file, content] of stale) {
          writeFileSync(file, content);
          process.stdout.write(`wrote ${file}\n`);
        }
        if (!stale.length) process.stdout.write('generated files are up to date\n');
        return 0;
      }),
    );
}
