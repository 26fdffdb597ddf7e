import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { cli } from './helpers/cli.ts';

const HOOK = pathToFileURL(resolve(import.meta.dirname, 'fixtures/record-packages.mjs')).href;

it('loads the mail parsers, the bot list and the SMTP server on first use, not when the CLI starts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'flows-startup-'));
  try {
    const log = join(dir, 'packages.log');
    const result = await cli(['--version'], { cwd: dir, env: { FLOWS_PACKAGES_LOG: log, NODE_OPTIONS: `--import ${HOOK}` } });
    expect(result.code, result.stderr).toBe(0);
    const packages = new Set((await readFile(log, 'utf8')).split('\n').map((s) => s.split('/').slice(0, s.startsWith('@') ? 2 : 1).join('/')));
    expect(packages.has('commander'), 'the hook sees the packages the CLI imports').toBe(true);
    expect(['mailparser', '@zone-eu/mailsplit', 'isbot', 'smtp-server', 'mjml'].filter((p) => packages.has(p))).toEqual([]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
