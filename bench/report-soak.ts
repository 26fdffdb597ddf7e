/**
 * Many reports in a row through one PdfRenderer: the browser must not be relaunched, and
 * neither this process nor Chromium's processes may keep growing. Memory is read from
 * /proc (Linux): VmRSS of this process, and of the browser process and every descendant
 * (zygotes, renderers, utility processes) found through the ppid field of /proc/<pid>/stat.
 * RSS counts a page shared by several Chromium processes once per process, so the tree's
 * PSS (shared pages split between their users) is read beside it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { PdfRenderer } from '../connectors/browser/browser.ts';
import type { EngineConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import type { Resources } from '../engine/resources.ts';
import { benchDomain, type Connectors, median, timedReport } from './report-kit.ts';

export interface MemorySample {
  nodeRssMb: number;
  nodeHeapUsedMb: number;
  chromiumRssMb: number;
  chromiumPssMb: number;
  chromiumProcesses: number;
}

export interface SoakResult {
  reports: number;
  launches: number;
  /** After report 1 (the warm-up) and after the last. */
  first: MemorySample;
  last: MemorySample;
  /** Growth from first to last, in %. */
  growth: { nodeRss: number; chromiumRss: number; chromiumPss: number };
  /** Chromium tree RSS (MB) after each report. */
  chromiumRssSeries: number[];
  /** Median PDF time of reports 2-6 (report 1 launches the browser) and of the last five (fewer in a short soak). */
  pdfMs: { early: number; late: number };
  gcAvailable: boolean;
}

/** Field `name` (in kB) of /proc/<pid>/<file>, or 0 when the process is gone. */
function procKb(pid: number, file: 'status' | 'smaps_rollup', name: string): number {
  try {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** `root` and every process below it. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // comm, in parentheses, may hold spaces and parentheses: the fields follow the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone between readdir and read
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;

export async function memoryNow(browser: PdfRenderer): Promise<MemorySample> {
  globalThis.gc?.();
  const pid = await browser.browserPid();
  const tree = pid ? processTree(pid) : [];
  const sum = (file: 'status' | 'smaps_rollup', name: string) => tree.reduce((total, p) => total + procKb(p, file, name), 0);
  return {
    nodeRssMb: mb(procKb(process.pid, 'status', 'VmRSS')),
    nodeHeapUsedMb: mb(process.memoryUsage().heapUsed / 1024),
    chromiumRssMb: mb(sum('status', 'VmRSS')),
    chromiumPssMb: mb(sum('smaps_rollup', 'Pss')),
    chromiumProcesses: tree.length,
  };
}

const growth = (from: number, to: number) => Math.round(((to - from) / from) * 1000) / 10;

export async function soak(deps: { resources: Resources; connectors: Connectors; db: Database; config: EngineConfig }, reports: number, say: (s: string) => void): Promise<SoakResult> {
  const browser = new PdfRenderer();
  try {
    const series: number[] = [];
    const pdfMs: number[] = [];
    let first: MemorySample | undefined;
    let last: MemorySample | undefined;
    for (let i = 1; i <= reports; i++) {
      const { times } = await timedReport({ ...deps, browser }, benchDomain('soak', i));
      pdfMs.push(times.pdf);
      const sample = await memoryNow(browser);
      series.push(sample.chromiumRssMb);
      if (i === 1) first = sample;
      if (i === reports) last = sample;
      if (i % 5 === 0) say(`  soak: ${i}/${reports} reports, Chromium tree ${sample.chromiumRssMb} MB RSS, node ${sample.nodeRssMb} MB RSS`);
    }
    return {
      reports,
      launches: browser.launches,
      first: first!,
      last: last!,
      growth: { nodeRss: growth(first!.nodeRssMb, last!.nodeRssMb), chromiumRss: growth(first!.chromiumRssMb, last!.chromiumRssMb), chromiumPss: growth(first!.chromiumPssMb, last!.chromiumPssMb) },
      chromiumRssSeries: series,
      pdfMs: { early: median(pdfMs.slice(1, 6)), late: median(pdfMs.slice(-5)) },
      gcAvailable: typeof globalThis.gc === 'function',
    };
  } finally {
    await browser.close();
  }
}
