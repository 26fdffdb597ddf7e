import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_FLAGS, PdfRenderer } from '../connectors/browser/browser.ts';
import { newProfile, recordOwner } from '../connectors/browser/profile.ts';
import { eventually } from './helpers/eventually.ts';
import { processesWith, processTag, taggedProcesses } from './helpers/processes.ts';

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
    const profile = profileOf(pid!);
    process.kill(pid!, 'SIGKILL');
    await eventually(async () => (await renderer.browserPid()) === undefined, 'the renderer to see the browser gone');
    const pdf = await renderer.pdf(page('<p>after the crash</p>'));
    expect(textOf(pdf)).toContain('after the crash');
    expect(renderer.launches).toBe(before + 1);
    // The new browser has a folder of its own; the dead one's is removed once its helpers are stopped.
    expect(profileOf((await renderer.browserPid())!)).not.toBe(profile);
    await eventually(() => !existsSync(profile) && processesWith(profile).length === 0, 'the crashed browser\'s profile to be gone');
  });
});

/** The profile folder a running browser was started on. */
function profileOf(pid: number): string {
  return /--user-data-dir=(\S+)/.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '))![1]!;
}

describe.runIf(existsSync(chromium))('a browser never outlives the process that launched it', () => {
  const launcher = join(dir, 'launch.mts');
  writeFileSync(
    launcher,
    `import { PdfRenderer } from ${JSON.stringify(join(import.meta.dirname, '../connectors/browser/browser.ts'))};
const renderer = new PdfRenderer();
await renderer.pdf('<p>x</p>');
process.stdout.write(\`browser \${await renderer.browserPid()}\\n\`);
setInterval(() => {}, 60_000);
`,
  );

  it('exits when its launcher is killed with SIGKILL', async () => {
    const { tag, env } = processTag();
    const child = spawn(process.execPath, ['--import', 'tsx', launcher], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      await eventually(() => /browser \d+\n/.test(out), 'the child to launch its browser', 60_000);
      const profile = profileOf(Number(/browser (\d+)/.exec(out)![1]));
      expect(processesWith(profile).length).toBeGreaterThan(0);
      child.kill('SIGKILL');
      await eventually(() => processesWith(profile).length === 0 && taggedProcesses(tag).length === 0, 'the browser to exit with its launcher', 5_000);
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);

  it('stops a browser a killed predecessor left behind, and removes its profile', async () => {
    const profile = newProfile();
    const { tag, env } = processTag();
    const orphan = spawn(chromium, [...CHROMIUM_FLAGS, '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank'], { detached: true, stdio: 'ignore', env: { ...process.env, ...env } });
    const exited = new Promise((resolve) => orphan.once('exit', resolve));
    try {
      const deadLauncher = spawnSync(process.execPath, ['-e', '']).pid;
      recordOwner(profile, orphan.pid!, deadLauncher);
      await eventually(() => processesWith(profile).length > 0, 'the orphan browser to run');
      const successor = new PdfRenderer();
      try {
        await successor.pdf(page('<p>next process</p>'));
      } finally {
        await successor.close();
      }
      await exited;
      expect(existsSync(profile)).toBe(false);
      await eventually(() => taggedProcesses(tag).length === 0, 'the orphan\'s helpers to be gone', 5_000);
    } finally {
      try {
        process.kill(-orphan.pid!, 'SIGKILL');
      } catch {
        // Already stopped.
      }
    }
  }, 60_000);
});
