/**
 * Our PdfRenderer against bare puppeteer-core, on the same report HTML in the same run.
 *
 * The baseline is one Chromium launched with the same executable and flags, one page, and
 * nothing else: setContent (waitUntil load) then pdf (printBackground, preferCSSPageSize).
 * Ours adds what a report needs: JavaScript off, every request intercepted, the footer
 * style tag, a page pool. Both are warmed with one render, then timed in turns (ours,
 * bare, ours, bare ...) so a noisy neighbour hits both alike.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { CHROMIUM_FLAGS as FLAGS, PdfRenderer } from '../connectors/browser/browser.ts';
import { median, percentile } from './report-kit.ts';


export interface PdfComparison {
  rounds: number;
  htmlBytes: number;
  ours: { medianMs: number; p95Ms: number; pdfBytes: number };
  bare: { medianMs: number; p95Ms: number; pdfBytes: number; setContentMedianMs: number; printMedianMs: number };
  /** ours / bare, of the medians. */
  ratio: number;
  /** Launch to first PDF, cold, of each (one sample: a hint, not a figure to compare). */
  coldMs: { ours: number; bare: number };
}

export async function comparePdf(html: string, footerText: string, rounds: number): Promise<PdfComparison> {
  const ours = new PdfRenderer();
  const profile = mkdtempSync(join(tmpdir(), 'flows-bench-bare-chromium-'));
  let t = performance.now();
  const browser = await puppeteer.launch({ executablePath: ours.executablePath, args: [...FLAGS, `--user-data-dir=${profile}`], headless: true });
  try {
    const page = await browser.newPage();
    const bare = async () => {
      const start = performance.now();
      await page.setContent(html, { waitUntil: 'load' });
      const loaded = performance.now();
      const pdf = await page.pdf({ printBackground: true, preferCSSPageSize: true });
      const end = performance.now();
      return { ms: end - start, setContentMs: loaded - start, printMs: end - loaded, bytes: pdf.length };
    };
    const timedOurs = async () => {
      const start = performance.now();
      const pdf = await ours.pdf(html, { footerText });
      return { ms: performance.now() - start, bytes: pdf.length };
    };

    await bare();
    const bareCold = performance.now() - t;
    t = performance.now();
    await timedOurs();
    const oursCold = performance.now() - t;

    const a: { ms: number; bytes: number }[] = [];
    const b: Awaited<ReturnType<typeof bare>>[] = [];
    for (let i = 0; i < rounds; i++) {
      a.push(await timedOurs());
      b.push(await bare());
    }
    const oursMs = a.map((r) => r.ms);
    const bareMs = b.map((r) => r.ms);
    return {
      rounds,
      htmlBytes: Buffer.byteLength(html),
      ours: { medianMs: median(oursMs), p95Ms: percentile(oursMs, 0.95), pdfBytes: a.at(-1)!.bytes },
      bare: {
        medianMs: median(bareMs),
        p95Ms: percentile(bareMs, 0.95),
        pdfBytes: b.at(-1)!.bytes,
        setContentMedianMs: median(b.map((r) => r.setContentMs)),
        printMedianMs: median(b.map((r) => r.printMs)),
      },
      ratio: median(oursMs) / median(bareMs),
      coldMs: { ours: oursCold, bare: bareCold },
    };
  } finally {
    await browser.close();
    await ours.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
