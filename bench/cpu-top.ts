/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by function, inclusive time by
 * function, and self time by area (engine/, steps/, a package, node internals, GC, idle).
 *
 *   node --import tsx bench/cpu-top.ts <file.cpuprofile> [--top 25]
 */
import { readFileSync } from 'node:fs';

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: CpuNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  self: { fn: string; ms: number; pct: number }[];
  inclusive: { fn: string; ms: number; pct: number }[];
  areas: { area: string; ms: number; pct: number }[];
}

function shortUrl(url: string): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length);
  const root = u.search(/\/(engine|steps|bench|connectors)\//);
  return root >= 0 ? u.slice(root + 1) : u;
}

function label(n: CpuNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  const name = functionName || '(anonymous)';
  return url ? `${name} ${shortUrl(url)}:${lineNumber + 1}` : name;
}

function areaOf(n: CpuNode): string {
  const { url, functionName } = n.callFrame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + '/node_modules/'.length).split('/');
    return `pkg ${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const m = /\/(engine\/[^/]+|steps|bench|connectors)\//.exec(u);
  if (m) return m[1]!.startsWith('engine/') ? m[1]! : m[1]!;
  if (/\/engine\/[^/]+\.ts/.test(u)) return 'engine';
  return 'other';
}

export function summarise(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
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
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    selfByFn.set(label(node), (selfByFn.get(label(node)) ?? 0) + us);
    byArea.set(areaOf(node), (byArea.get(areaOf(node)) ?? 0) + us);
    // Inclusive: every distinct function on the stack gets the sample once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!);
      if (seen.has(l)) continue;
      seen.add(l);
      inclByFn.set(l, (inclByFn.get(l) ?? 0) + us);
    }
  }
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, us]) => ({ k, ms: us / 1000, pct: totalUs ? (100 * us) / totalUs : 0 }));
  return {
    totalMs: totalUs / 1000,
    self: rows(selfByFn).slice(0, top).map(({ k, ms, pct }) => ({ fn: k, ms, pct })),
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

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/cpu-top.ts <file.cpuprofile> [--top 25]\n');
    process.exit(2);
  }
  const i = process.argv.indexOf('--top');
  const top = i > 0 ? Number(process.argv[i + 1]) : 25;
  process.stdout.write(`${formatSummary(summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, top))}\n`);
}
