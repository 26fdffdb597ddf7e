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

/**
 * The step types each file under steps/ defines: the `type: '...'` of every `defineStep({ ... })`
 * call, read at the object's own level (the `type: 'string'` of a schema inside it is deeper).
 * A small scanner over strings, template literals and comments; enough for our sources.
 */
function definedStepTypes(text: string): string[] {
  const found: string[] = [];
  const skipTo = (from: number, end: string) => {
    const at = text.indexOf(end, from);
    return at < 0 ? text.length : at + end.length - 1;
  };
  for (const call of text.matchAll(/\bdefineStep\s*\(\s*\{/g)) {
    // Open brackets, template literals (`) and their ${ } holes, innermost last.
    const open: string[] = [];
    for (let i = call.index + call[0].length - 1; i < text.length; i++) {
      const c = text[i]!;
      if (open.at(-1) === '`') {
        if (c === '\\') i++;
        else if (c === '`') open.pop();
        else if (c === '$' && text[i + 1] === '{') open.push(text[++i]!);
      } else if (c === "'" || c === '"') {
        for (i++; i < text.length && text[i] !== c; i++) if (text[i] === '\\') i++;
      } else if (c === '/' && text[i + 1] === '/') {
        i = skipTo(i, '\n');
      } else if (c === '/' && text[i + 1] === '*') {
        i = skipTo(i + 2, '*/');
      } else if ('`{(['.includes(c)) {
        open.push(c);
      } else if ('}])'.includes(c)) {
        open.pop();
        if (open.length === 0) break;
      } else if (open.length === 1 && /[\s,{]/.test(text[i - 1]!)) {
        const own = /^type\s*:\s*'([^']*)'/.exec(text.slice(i, i + 200));
        if (own) found.push(own[1]!);
      }
    }
  }
  return found;
}

describe('step files', () => {
  const defined = sources('steps').map((file) => ({ file, types: definedStepTypes(readFileSync(join(root, file), 'utf8')) }));

  it('a built-in step type is defined in the file named after it: family.name in steps/family/name.ts, name in steps/name.ts', async () => {
    const { createRegistry } = await import('../steps/index.ts');
    const types = createRegistry().all().map((step) => step.type);
    expect(types.length).toBeGreaterThan(0);
    const misplaced = types.flatMap((type) => {
      const files = defined.filter((d) => d.types.includes(type)).map((d) => d.file);
      const expected = join('steps', ...type.split('.')) + '.ts';
      return files.length === 1 && files[0] === expected ? [] : [`${type}: expected in ${expected}, defined in ${files.join(', ') || 'no file under steps/ (a defineStep({ type: ... }) call)'}`];
    });
    expect(misplaced).toEqual([]);
  });

  it('no file defines two step types', () => {
    expect(defined.filter((d) => d.types.length > 1).map((d) => `${d.file}: ${d.types.join(', ')}`)).toEqual([]);
  });
});
