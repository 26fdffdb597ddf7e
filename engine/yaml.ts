import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
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
  const diagnostics: Diagnostic[] = [...doc.errors, ...doc.warnings].map((e) => {
    const { line, col } = place(e.pos[0]);
    return { file, line, col, path: '', message: e.message.split('\n')[0]! };
  });
  const value = doc.errors.length ? undefined : doc.toJS({ maxAliasCount: 100 });

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

/** Quoted scalars start one character before their content. */
function scalarContentStart(text: string, offset: number): number {
  const c = text[offset];
  return c === '"' || c === "'" ? 1 : 0;
}
