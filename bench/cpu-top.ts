/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by area (engine/..., steps,
 * a package, node internals, PGlite's wasm, GC, idle), self time by function and inclusive
 * time by function.
 *
 *   node --import tsx bench/cpu-top.ts <file.cpuprofile> [--top 25]
 *
 * Under tsx every module is one minified line, so bench/engine.ts --profile runs the
 * profiled case from an esbuild bundle with a source map (<bundle>.map next to it); frames
 * of that bundle are mapped back to engine/foo.ts:line when source-map-js can be loaded,
 * else named by the module comment esbuild writes at the start of each module.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface CpuNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: CpuNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  self: { fn: string; ms: number; pct: number }[];
  inclusive: { fn: string; ms: number; pct: number }[];
  areas: { area: string; ms: number; pct: number }[];
}

type Locate = (frame: CallFrame) => { file: string; line: number } | undefined;

/** Maps frames of an esbuild bundle back to their sources (file relative to the project). */
async function bundleLocator(profile: CpuProfile): Promise<Locate> {
  const bundles = new Map<string, Locate>();
  for (const n of profile.nodes) {
    const url = n.callFrame.url;
    if (!url.endsWith('.bundle.mjs') || bundles.has(url)) continue;
    const path = fileURLToPath(url);
    let locate: Locate = () => undefined;
    try {
      const { SourceMapConsumer } = (await import('source-map-js' as string)) as typeof import('source-map-js');
      if (existsSync(`${path}.map`)) {
        const consumer = new SourceMapConsumer(JSON.parse(readFileSync(`${path}.map`, 'utf8')));
        locate = (f) => {
          const pos = consumer.originalPositionFor({ line: f.lineNumber + 1, column: f.columnNumber });
          return pos.source ? { file: pos.source.replace(/^(\.\.\/)+/, ''), line: pos.line ?? 0 } : undefined;
        };
      }
    } catch {
      // No source-map-js: fall back to the `// path/to/module.ts` comments of the bundle.
      const starts: { line: number; file: string }[] = [];
      readFileSync(path, 'utf8')
        .split('\n')
        .forEach((text, line) => {
          const m = /^\/\/ (\S+\.[cm]?[jt]s)$/.exec(text);
          if (m) starts.push({ line, file: m[1]! });
        });
      locate = (f) => {
        let found: { line: number; file: string } | undefined;
        for (const s of starts) if (s.line <= f.lineNumber) found = s;
        return found && { file: found.file.replace(/^(\.\.\/)+/, ''), line: f.lineNumber - found.line };
      };
    }
    bundles.set(url, locate);
  }
  return (f) => bundles.get(f.url)?.(f);
}

function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length);
  const root = u.search(/\/(engine|steps|bench|connectors)\//);
  return root >= 0 ? u.slice(root + 1) : u;
}

function areaOfFile(file: string): string {
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = file.slice(nm + 'node_modules/'.length).split('/');
    return `pkg ${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const m = /(?:^|\/)(engine\/[a-z-]+\/|engine\/|steps\/|bench\/|connectors\/)/.exec(file);
  return m ? m[1]!.replace(/\/$/, '') : 'other';
}

export async function summarise(profile: CpuProfile, top = 25): Promise<ProfileSummary> {
  const locate = await bundleLocator(profile);
  const info = new Map<number, { label: string; area: string }>();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    const name = f.functionName || '(anonymous)';
    let label: string;
    let area: string;
    if (!f.url) {
      label = name;
      area = name.startsWith('(') ? name : '(native)';
    } else if (f.url.startsWith('node:')) {
      label = `${name} ${f.url}:${f.lineNumber + 1}`;
      area = 'node internals';
    } else if (f.url.startsWith('wasm://')) {
      label = `${name} (wasm)`;
      area = 'wasm (PGlite)';
    } else {
      const loc = locate(f);
      const file = loc ? loc.file : shortUrl(f.url);
      label = `${name} ${file}:${loc ? loc.line : f.lineNumber + 1}`;
      area = areaOfFile(loc ? loc.file : f.url.replace(/^file:\/\//, ''));
    }
    info.set(n.id, { label, area });
  }
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  let totalUs = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    totalUs += dt;
  });

  const selfByFn = new Map<string, number>();
  const inclByFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
  for (const [id, us] of selfUs) {
    const { label, area } = info.get(id)!;
    add(selfByFn, label, us);
    add(byArea, area, us);
    // Inclusive: every distinct function on the stack gets the sample once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = info.get(cur)!.label;
      if (seen.has(l)) continue;
      seen.add(l);
      add(inclByFn, l, us);
    }
  }
  const rows = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, us]) => ({ k, ms: us / 1000, pct: totalUs ? (100 * us) / totalUs : 0 }));
  return {
    totalMs: totalUs / 1000,
    self: rows(selfByFn)
      .slice(0, top)
      .map(({ k, ms, pct }) => ({ fn: k, ms, pct })),
    inclusive: rows(inclByFn)
      .filter((r) => !/^\((root|program)\)/.test(r.k))
      .slice(0, top)
      .map(({ k, ms, pct }) => ({ fn: k, ms, pct })),
    areas: rows(byArea).map(({ k, ms, pct }) => ({ area: k, ms, pct })),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const line = (ms: number, pct: number, what: string) => `  ${ms.toFixed(0).padStart(7)} ms ${pct.toFixed(1).padStart(5)}%  ${what}`;
  return [
    `profile: ${s.totalMs.toFixed(0)} ms sampled`,
    'self time by area:',
    ...s.areas.slice(0, 20).map((a) => line(a.ms, a.pct, a.area)),
    'top self time:',
    ...s.self.map((r) => line(r.ms, r.pct, r.fn)),
    'top inclusive time:',
    ...s.inclusive.map((r) => line(r.ms, r.pct, r.fn)),
  ].join('\n');
}

if (/cpu-top\.ts$/.test(process.argv[1] ?? '')) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/cpu-top.ts <file.cpuprofile> [--top 25]\n');
    process.exit(2);
  }
  const i = process.argv.indexOf('--top');
  const top = i > 0 ? Number(process.argv[i + 1]) : 25;
  process.stdout.write(`${formatSummary(await summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, top))}\n`);
}
