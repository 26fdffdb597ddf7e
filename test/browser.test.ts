import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PdfRenderer } from '../connectors/browser/browser.ts';
import { eventually } from './helpers/eventually.ts';

const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const dir = mkdtempSync(join(tmpdir(), 'flows-pdf-'));

/** The share of non-white pixels on page 1, from pdftoppm's greyscale rendering. */
function inkShare(pdf: Buffer): number {
  const file = join(dir, `p-${Math.random().toString(36).slice(2)}.pdf`);
  writeFileSync(file, pdf);
  execFileSync('pdftoppm', ['-gray', '-r', '30', '-f', '1', '-l', '1', file, file]);
  const pgm = readFileSync(`${file}-1.pgm`);
  // P5\n<width> <height>\n<max>\n<bytes>
  const header = pgm.subarray(0, 64).toString('latin1').split(/\s+/);
  const [width, height] = [Number(header[1]), Number(header[2])];
  const pixels = pgm.subarray(pgm.length - width * height);
  let ink = 0;
  for (const v of pixels) if (v < 200) ink++;
  return ink / pixels.length;
}

function textOf(pdf: Buffer): string {
  const file = join(dir, `t-${Math.random().toString(36).slice(2)}.pdf`);
  writeFileSync(file, pdf);
  return execFileSync('pdftotext', ['-layout', file, '-'], { encoding: 'utf8' });
}

const page = (body: string) => `<!doctype html><html><head><meta charset="utf-8"><style>body{font-family:sans-serif} .break{page-break-before:always}</style></head><body>${body}</body></html>`;

describe.runIf(existsSync(chromium))('PDF rendering with Chromium', () => {
  const renderer = new PdfRenderer({ pages: 2 });
  let hits = 0;
  let server: ReturnType<typeof createServer>;
  let url = '';
  beforeAll(async () => {
    server = createServer((_req, res) => {
      hits++;
      res.end('x');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await renderer.close();
    server.close();
  });

  it('renders A4 pages with inline SVG, numbered in the footer, not blank', async () => {
    const svg = '<svg width="400" height="200" xmlns="http://www.w3.org/2000/svg"><rect width="400" height="200" fill="#1f4e79"/></svg>';
    const pdf = await renderer.pdf(page(`<h1>Search visibility</h1>${svg}<p class="break">Second page</p>`), { footerText: 'acme.example' });
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    expect(inkShare(pdf)).toBeGreaterThan(0.05);
    const text = textOf(pdf);
    expect(text).toContain('Search visibility');
    expect(text).toMatch(/1\s*\/\s*2/);
    expect(text).toMatch(/2\s*\/\s*2/);
    expect(text).toContain('acme.example');
  });

  it('runs no script and fetches nothing the HTML points at', async () => {
    const pdf = await renderer.pdf(
      page(`<p id="p">static</p><script>document.getElementById('p').textContent = 'SCRIPT RAN'</script><img src="${url}/pixel.png"><link rel="stylesheet" href="${url}/x.css">`),
    );
    const text = textOf(pdf);
    expect(text).toContain('static');
    expect(text).not.toContain('SCRIPT RAN');
    expect(hits).toBe(0);
  });

  it('keeps one browser for many renders and relaunches after a crash', async () => {
    const before = renderer.launches;
    await Promise.all(Array.from({ length: 6 }, (_, i) => renderer.pdf(page(`<p>report ${i}</p>`))));
    expect(renderer.launches).toBe(before);
    const pid = await renderer.browserPid();
    expect(pid).toBeGreaterThan(0);
    process.kill(pid!, 'SIGKILL');
    await eventually(async () => (await renderer.browserPid()) === undefined, 'the renderer to see the browser gone');
    const pdf = await renderer.pdf(page('<p>after the crash</p>'));
    expect(textOf(pdf)).toContain('after the crash');
    expect(renderer.launches).toBe(before + 1);
  });
});
