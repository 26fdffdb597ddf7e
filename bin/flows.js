#!/usr/bin/env node
// Runs the CLI from the TypeScript sources with no build step. The sources are bundled by
// esbuild into node_modules/.cache/flows/ the first time and again whenever one changes
// (packages stay external and load natively, which makes start-up several times faster
// than transpiling every module on the fly). Without esbuild it falls back to tsx.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCES = ['engine', 'steps', 'connectors', 'bin'];

function signature() {
  const hash = createHash('sha256');
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        const s = statSync(path);
        hash.update(`${path}:${s.size}:${s.mtimeMs}\n`);
      }
    }
  };
  for (const dir of SOURCES) walk(join(root, dir));
  return hash.digest('hex').slice(0, 16);
}

async function bundled() {
  const cache = join(root, 'node_modules', '.cache', 'flows');
  const out = join(cache, `cli-${signature()}.mjs`);
  try {
    statSync(out);
    return out;
  } catch {}
  const esbuild = await import('esbuild');
  mkdirSync(cache, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  await esbuild.build({
    entryPoints: [join(root, 'bin', 'main.ts')],
    outfile: tmp,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    logLevel: 'silent',
  });
  renameSync(tmp, out);
  // Older bundles go, but not one another checkout of the sources (sharing this install) may be loading.
  const stale = Date.now() - 60 * 60 * 1000;
  for (const old of readdirSync(cache)) {
    const path = join(cache, old);
    if (old.startsWith('cli-') && path !== out && statSync(path, { throwIfNoEntry: false })?.mtimeMs < stale) rmSync(path, { force: true });
  }
  return out;
}

let entry;
try {
  entry = await bundled();
} catch {
  entry = undefined;
}
if (entry) {
  process.setSourceMapsEnabled(true);
  await import(pathToFileURL(entry).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./main.ts');
}
