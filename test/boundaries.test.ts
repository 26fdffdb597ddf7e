import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The arrows of the layout point one way (see DESIGN.md): steps and connectors reach the
 * engine only through engine/sdk.ts; connectors know nothing of steps; the engine knows no
 * step or connector by name. A new import across these lines fails here.
 */
const root = join(import.meta.dirname, '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sources(path));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

function imports(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm), ...text.matchAll(/import\(\s*'([^']+)'\s*\)/g)]
    .map((m) => m[1]!)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => relative(root, join(root, file, '..', spec)));
}

const crossing = (dirs: string[], allowed: (target: string) => boolean) =>
  dirs.flatMap((dir) => sources(dir).flatMap((file) => imports(file).filter((t) => !allowed(t)).map((t) => `${file} imports ${t}`)));

describe('module boundaries', () => {
  it('steps and connectors import the engine only through engine/sdk.ts', () => {
    expect(crossing(['steps', 'connectors'], (t) => !t.startsWith('engine/') || t === 'engine/sdk.ts')).toEqual([]);
  });

  it('connectors import no step', () => {
    expect(crossing(['connectors'], (t) => !t.startsWith('steps/'))).toEqual([]);
  });

  it('the engine imports no step and no connector', () => {
    expect(crossing(['engine'], (t) => !t.startsWith('steps/') && !t.startsWith('connectors/'))).toEqual([]);
  });
});
