import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Node, visit } from 'yaml';
import type { Diagnostic } from './errors.ts';

export type Path = readonly (string | number)[];

/** A parsed YAML file that can say where any of its values is. */
export interface SourceDoc {
  readonly file: string;
  readonly text: string;
  /** The plain data (undefined when the YAML is broken). */
  readonly value: unknown;
  /** Syntax errors, already placed. */
  readonly diagnostics: Diagnostic[];
  /** A diagnostic pointing at the node at `path` (or its closest existing parent). */
  at(path: Path, message: string, options?: { key?: boolean; offset?: number }): Diagnostic;
}

/** `steps[2].with.limit`, as a user reads it. */
export function formatPath(path: Path): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z_][\w-]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

export function parseYamlSource(text: string, file: string): SourceDoc {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const place = (offset: number) => lineCounter.linePos(offset);
  const problem = (offset: number, message: string): Diagnostic => ({ file, ...place(offset), path: '', message });
  const diagnostics: Diagnostic[] = [...doc.errors, ...doc.warnings].map((e) => problem(e.pos[0], e.message.split('\n')[0]!));
  if (!doc.errors.length) diagnostics.push(...aliasProblems(doc).map((p) => problem(p.offset, p.message)));
  const value = diagnostics.length ? undefined : plainValue(doc, (offset, message) => diagnostics.push(problem(offset, message)));

  function nodeAt(path: Path, key: boolean): Node | undefined {
    let node: unknown = doc.contents;
    let keyNode: unknown;
    for (const part of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(part));
        if (!pair) break;
        keyNode = pair.key;
        node = pair.value;
      } else if (isSeq(node) && typeof part === 'number' && node.items[part]) {
        keyNode = undefined;
        node = node.items[part];
      } else break;
    }
    return (key && keyNode ? keyNode : node) as Node | undefined;
  }

  return {
    file,
    text,
    value,
    diagnostics,
    at(path, message, options = {}) {
      const node = nodeAt(path, options.key ?? false);
      let offset = node?.range?.[0] ?? 0;
      if (options.offset !== undefined && node && isScalar(node)) offset += scalarContentStart(text, offset) + options.offset;
      const { line, col } = place(offset);
      return { file, line, col, path: formatPath(path), message };
    },
  };
}

/** Copies one alias may make of what it refers to, counted through nested aliases. */
const MAX_ALIAS_COPIES = 100;

/**
 * The data of the document, or undefined with a problem when its aliases would expand it
 * beyond MAX_ALIAS_COPIES (an alias bomb: a small file that would take gigabytes).
 */
function plainValue(doc: Document, report: (offset: number, message: string) => void): unknown {
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COPIES });
  } catch (err) {
    if (!/alias/i.test((err as Error).message)) throw err;
    const first = aliases(doc)[0];
    const from = first ? ` from *${first.name} on` : '';
    report(first?.offset ?? 0, `the aliases${from} expand to too much data (over ${MAX_ALIAS_COPIES} copies of a value, as in an alias bomb): write the values out, or refer to them fewer times`);
    return undefined;
  }
}

/** An alias inside the value it refers to would make a value that contains itself. */
function aliasProblems(doc: Document): { offset: number; message: string }[] {
  return aliases(doc)
    .filter((a) => a.cyclic)
    .map((a) => ({ offset: a.offset, message: `the alias *${a.name} is inside the value it refers to (&${a.name}): a value cannot contain itself; write the inner value out` }));
}

function aliases(doc: Document): { name: string; offset: number; cyclic: boolean }[] {
  const found: { name: string; offset: number; cyclic: boolean }[] = [];
  visit(doc, {
    Alias(_key, alias, ancestors) {
      const target = alias.resolve(doc);
      found.push({ name: alias.source, offset: alias.range?.[0] ?? 0, cyclic: target !== undefined && (ancestors as readonly unknown[]).includes(target) });
    },
  });
  return found;
}

/** Quoted scalars start one character before their content. */
function scalarContentStart(text: string, offset: number): number {
  const c = text[offset];
  return c === '"' || c === "'" ? 1 : 0;
}
