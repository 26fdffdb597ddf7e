import { existsSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import type { Browser, Page } from 'puppeteer-core';
import { DURATION_PATTERN, parseDuration } from '../../engine/sdk.ts';
import { withDocumentInfo } from './pdf-info.ts';
import { newProfile, reapOrphans, recordOwner, retireProfile } from './profile.ts';

/** `connectors.browser` in the engine config. */
export const BrowserConfigSchema = Type.Object(
  {
    executable_path: Type.Optional(Type.String({ minLength: 1, description: 'Chromium binary (default: the CHROMIUM_PATH variable, else /usr/bin/chromium).' })),
    pages: Type.Integer({ minimum: 1, maximum: 16, default: 2, description: 'Pages kept open for rendering at once.' }),
    timeout: Type.String({ pattern: DURATION_PATTERN, default: '30s', description: 'How long a render may take, like "30s".' }),
  },
  { additionalProperties: false },
);
export type BrowserConfig = Static<typeof BrowserConfigSchema>;

/** Where Chromium is: CHROMIUM_PATH, else Debian's /usr/bin/chromium. */
export function chromiumPath(env: Record<string, string | undefined> = process.env): string {
  return env.CHROMIUM_PATH || '/usr/bin/chromium';
}

export interface PdfOptions {
  /** Text in the page footer beside the page numbers (escaped here). */
  footerText?: string;
  /** A mark in the middle of every page's footer, in red (escaped here), e.g. that the data is a sample. */
  pageMark?: string;
  /** The PDF's Title (default: the page's <title>, as Chromium writes it). */
  title?: string;
  signal?: AbortSignal;
}

/** The PDF's Creator. */
export const PDF_CREATOR = 'flows';

/** A4's margins; the footer sits in the bottom one. */
export const PAGE_MARGINS_MM = { top: 14, right: 12, bottom: 16, left: 12 } as const;

/** Chromium's flags for a server: headless, no sandbox (root in a container), nothing phoned home. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

/**
 * Renders report HTML to A4 PDF with Debian's Chromium through puppeteer-core.
 *
 * One long-lived browser per process, launched on first use with a fresh profile folder;
 * a small pool of pages reused between renders. A browser that crashes or disconnects is
 * relaunched on the next render, on a fresh folder (the old one is removed once its
 * helpers are stopped); a page that crashes is replaced. The browser never outlives this
 * process: it is driven over a pipe (--remote-debugging-pipe) and exits when the pipe
 * closes, however the process ends; and a browser a killed predecessor left behind is
 * stopped at the first launch (profile.ts). Pages run with
 * JavaScript off and every network request refused: a report is self-contained (inline
 * SVG and CSS), so a stray URL in prospect data can neither run nor fetch anything.
 */
export class PdfRenderer {
  private browser?: Promise<Browser>;
  private readonly retiring = new Set<Promise<void>>();
  private reaped = false;
  private readonly idle: Page[] = [];
  private readonly waiters: ((page: Page) => void)[] = [];
  private open = 0;
  private closed = false;
  /** How many times a browser was started (a warm renderer starts one). */
  launches = 0;
  readonly executablePath: string;
  private readonly poolSize: number;
  private readonly timeoutMs: number;

  constructor(config: Partial<BrowserConfig> = {}, env: Record<string, string | undefined> = process.env) {
    this.executablePath = config.executable_path ?? chromiumPath(env);
    this.poolSize = config.pages ?? 2;
    const timeout = config.timeout === undefined ? 30_000 : parseDuration(config.timeout);
    if (timeout === undefined) throw new Error(`connectors.browser.timeout: expected a duration like "30s", got "${config.timeout}"`);
    this.timeoutMs = timeout;
  }

  /** The PDF of `html`: A4, backgrounds printed, page numbers in the footer, made by "flows". */
  async pdf(html: string, options: PdfOptions = {}): Promise<Buffer> {
    const page = await this.acquire();
    let healthy = true;
    try {
      options.signal?.throwIfAborted();
      await page.setContent(html, { waitUntil: 'load', timeout: this.timeoutMs });
      // Page numbers come from CSS page margin boxes: they need no script in the page.
      await page.addStyleTag({ content: pageStyle(options.footerText ?? '', options.pageMark) });
      const pdf = await page.pdf({ printBackground: true, preferCSSPageSize: true, timeout: this.timeoutMs });
      return withDocumentInfo(Buffer.from(pdf), { ...(options.title === undefined ? {} : { Title: options.title }), Creator: PDF_CREATOR });
    } catch (err) {
      healthy = false;
      throw err;
    } finally {
      this.release(page, healthy);
    }
  }

  /** The running browser's process id, if one is running (for health checks and tests). */
  async browserPid(): Promise<number | undefined> {
    const browser = await this.browser?.catch(() => undefined);
    return browser?.process()?.pid;
  }

  async close(): Promise<void> {
    this.closed = true;
    const browser = await this.browser?.catch(() => undefined);
    this.browser = undefined;
    await browser?.close().catch(() => {});
    await Promise.all(this.retiring);
  }

  private launch(): Promise<Browser> {
    if (!existsSync(this.executablePath)) {
      return Promise.reject(
        new Error(`Chromium not found at ${this.executablePath}: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`),
      );
    }
    this.browser ??= (async () => {
      const { default: puppeteer } = await import('puppeteer-core');
      if (!this.reaped) reapOrphans();
      this.reaped = true;
      const profile = newProfile();
      const browser = await puppeteer
        .launch({ executablePath: this.executablePath, args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`], headless: true, pipe: true })
        .catch(async (err: unknown) => {
          await retireProfile(profile, undefined);
          throw err;
        });
      const child = browser.process();
      if (child?.pid !== undefined) recordOwner(profile, child.pid);
      this.launches++;
      browser.on('disconnected', () => {
        // Crashed, killed or closed: forget it and its pages; the next render launches a new one.
        this.browser = undefined;
        this.idle.length = 0;
        this.open = 0;
        const retired = retireProfile(profile, child);
        this.retiring.add(retired);
        void retired.finally(() => this.retiring.delete(retired));
      });
      return browser;
    })();
    this.browser.catch(() => (this.browser = undefined));
    return this.browser;
  }

  private async acquire(): Promise<Page> {
    if (this.closed) throw new Error('the PDF renderer is closed');
    const idle = this.idle.pop();
    if (idle && !idle.isClosed()) return idle;
    if (this.open >= this.poolSize) return new Promise((resolve) => this.waiters.push(resolve));
    this.open++;
    try {
      const page = await (await this.launch()).newPage();
      await page.setJavaScriptEnabled(false);
      await page.setRequestInterception(true);
      page.on('request', (request) => {
        // The document itself (about:blank, data:) loads; anything else is refused.
        const url = request.url();
        if (url.startsWith('data:') || url === 'about:blank') void request.continue();
        else void request.abort('blockedbyclient');
      });
      return page;
    } catch (err) {
      this.open--;
      throw err;
    }
  }

  private release(page: Page, healthy: boolean): void {
    if (!healthy || page.isClosed()) {
      this.open = Math.max(0, this.open - 1);
      void page.close().catch(() => {});
      const waiter = this.waiters.shift();
      if (waiter) void this.acquire().then(waiter);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter(page);
    else this.idle.push(page);
  }
}

/** A4 with margins, and a footer: `text` on the left, `mark` in the middle, "page / pages" on the right. */
function pageStyle(text: string, mark: string | undefined): string {
  const box = 'font-family: sans-serif; font-size: 8px; color: #666;';
  const m = PAGE_MARGINS_MM;
  const middle = mark ? `@bottom-center { content: ${cssString(mark)}; font-family: sans-serif; font-size: 9px; font-weight: bold; color: #b03a2e; }` : '';
  return `@page { size: A4; margin: ${m.top}mm ${m.right}mm ${m.bottom}mm ${m.left}mm; ${middle}
    @bottom-left { content: ${cssString(text)}; ${box} }
    @bottom-right { content: counter(page) " / " counter(pages); ${box} } }`;
}

/** A CSS string: backslash-escape what could end it or the rule. */
function cssString(text: string): string {
  return `"${text.replace(/[\\"\n\r]/g, (c) => `\\${c.charCodeAt(0).toString(16)} `)}"`;
}
