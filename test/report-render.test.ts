import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_FLAGS, PAGE_MARGINS_MM, PdfRenderer } from '../connectors/browser/browser.ts';
import { NonRetriableError } from '../engine/errors.ts';
import { escapeXml, horizontalBarChart, sparkline, splitBar } from '../steps/report/charts.ts';
import { formatCompact, formatMoney, formatNumber, formatPercent } from '../steps/report/format.ts';
import type { ReportView } from '../steps/report/model.ts';
import { createReportRenderer, DEFAULT_TEMPLATE_DIR, ReportTemplateError } from '../steps/report/templates.ts';
import { sampleReportView } from './helpers/report-view.ts';

const renderer = createReportRenderer({ templateDir: DEFAULT_TEMPLATE_DIR });
const tmp = mkdtempSync(join(tmpdir(), 'flows-report-'));

const SECTIONS = ['Executive summary', 'Traffic &amp; keyword overview', 'Top keywords', 'Competitor comparison', 'Paid search', 'Opportunities', 'Recommended actions'];

/** Every start tag in the page. Escaped text holds no `<`, so these are real elements. */
const tags = (html: string) => html.match(/<[a-z][^>]*>/gi) ?? [];
const svgs = (html: string) => html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
const count = (html: string, text: string) => html.split(text).length - 1;

function hostileView(): ReportView {
  const view = sampleReportView({ company: '<script>alert(1)</script>' });
  view.intel.organicKeywords[0]!.keyword = '"><img src=x onerror=alert(1)>';
  view.intel.competitors[0]!.domain = 'widget<b>depot</b>.com';
  view.analysis.opportunities[0]!.detail = 'See <iframe src="https://evil.example/"></iframe> here';
  view.analysis.headline = 'Look: <img src="//evil.example/pixel.png">';
  return view;
}

function emptyView(): ReportView {
  const view = sampleReportView();
  view.intel = { ...view.intel, overview: null, organicKeywords: [], competitors: [], paidKeywords: [], spyfu: { stats: null, competitors: [], valuableKeywords: [] } };
  return view;
}

describe('report HTML', () => {
  it('has every section in order, the company, its domain, and formatted numbers', async () => {
    const html = await renderer.render(sampleReportView());
    const positions = SECTIONS.map((title) => html.indexOf(`<h2>${title}</h2>`));
    expect(positions.every((p) => p > 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(html).toContain('<h1>Acme Widgets</h1>');
    expect(html).toContain('acme-widgets.com');
    expect(html).toContain('4 March 2025');
    // KPIs, table cells and chart labels.
    for (const text of ['27.7k', '3,412', '$58.4k', '48,213', '24.9k', '$9,870', '$11.3k', '14,800', '$4.12', '>18%<', '▲4', '▼1', 'new']) {
      expect(html).toContain(text);
    }
    expect(html).toContain('Northlight Insights Ltd');
    expect(html).toContain('12 Harbour Street, Bristol BS1 4QA');
    expect(html).toContain('Data: SEMrush, SpyFu; analysis: Claude. Data fetched 3 March 2025');
    // Tables are cut in render code: 15 of 20 keywords, all 6 competitors and 10 paid keywords.
    expect(html).toContain('precision widgets uk');
    expect(html).not.toContain('widget tolerances');
    expect(count(html, '<svg')).toBe(15 + 4);
  });

  it('escapes every data string, in the page and in the SVG charts', async () => {
    const html = await renderer.render(hostileView());
    expect(count(html, '<script')).toBe(0);
    expect(html).not.toMatch(/<img|<iframe|<b>/i);
    expect(tags(html).filter((tag) => /\son\w+\s*=/i.test(tag))).toEqual([]);
    expect(html).toContain('<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>');
    expect(html).toContain('&#34;&gt;&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('See &lt;iframe src=&#34;https://evil.example/&#34;&gt;&lt;/iframe&gt; here');
    const charts = svgs(html).join('');
    expect(charts).toContain('widget&lt;b&gt;depot&lt;/b&gt;.com');
    expect(charts).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(charts).not.toMatch(/<(script|b|img)[\s>]/);
  });

  it('points at nothing to fetch: no external src, href, url() or stylesheet', async () => {
    for (const html of [await renderer.render(sampleReportView()), await renderer.render(hostileView())]) {
      expect(html).not.toMatch(/\b(src|href)\s*=\s*["']?\s*(https?:|\/\/)/i);
      expect(html).not.toMatch(/url\(\s*["']?\s*(https?:|\/\/)/i);
      expect(html).not.toMatch(/<link\b|@import|<script/i);
    }
  });

  it('renders a domain SEMrush and SpyFu know nothing of, saying there is no data', async () => {
    const html = await renderer.render(emptyView());
    expect(count(html, 'No data')).toBeGreaterThanOrEqual(4);
    expect(html).toContain('No data: no organic keywords found for acme-widgets.com.');
    expect(html).toContain('No data: SEMrush lists no organic competitors for acme-widgets.com.');
    expect(html).toContain('No data: neither SEMrush nor SpyFu sees acme-widgets.com advertising on Google Ads.');
    expect(html).not.toContain('<svg');
    expect(html).not.toMatch(/NaN|undefined|null|Infinity/);
    expect(html).toContain('<span class="kpi-value">—</span>');
    expect(html).toContain('<h2>Recommended actions</h2>');
  });

  it('says a section has no data instead of drawing empty tables and 100%/0% bars', async () => {
    const view = sampleReportView();
    view.intel.overview = { ...view.intel.overview!, paidKeywords: 0, paidTraffic: 0, paidCost: 0 };
    view.intel.paidKeywords = [];
    view.intel.spyfu.stats = { ...view.intel.spyfu.stats!, monthlyBudget: 0, monthlyPaidClicks: 0, totalAdsPurchased: 0 };
    const html = await renderer.render(view);
    const paid = html.slice(html.indexOf('<h2>Paid search</h2>'), html.indexOf('<h2>Opportunities</h2>'));
    expect(paid).toContain('No data: neither SEMrush nor SpyFu sees acme-widgets.com advertising on Google Ads.');
    expect(paid).not.toMatch(/<table|<svg|\(100%\)|\(0%\)|class="kpis/);
    // The organic sections keep their data.
    expect(count(html, '<table')).toBe(2);

    const empty = await renderer.render(emptyView());
    expect(count(empty, '<table')).toBe(0);
    expect(empty).not.toMatch(/<td[^>]*class="empty"/);
  });

  it('renders the same view to the same HTML', async () => {
    const [a, b] = [await renderer.render(sampleReportView()), await createReportRenderer({ templateDir: DEFAULT_TEMPLATE_DIR }).render(sampleReportView())];
    expect(a).toBe(b);
  });

  it('finds the templates next to the code', () => {
    expect(DEFAULT_TEMPLATE_DIR).toBe(fileURLToPath(new URL('../pipelines/templates/', import.meta.url)));
    expect(existsSync(join(DEFAULT_TEMPLATE_DIR, 'report.liquid'))).toBe(true);
  });
});

describe('report template errors', () => {
  /** A template folder holding `files`, and a renderer over it. */
  function templates(files: Record<string, string>) {
    const dir = mkdtempSync(join(tmp, 'templates-'));
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
    return { dir, render: () => createReportRenderer({ templateDir: dir }).render(sampleReportView()) };
  }

  it('names the file, line and column of a misspelt variable, and lists the variables there are', async () => {
    const { dir, render } = templates({ 'report.liquid': '<h1>{{ company }}</h1>\n<p>{{ compnay }}</p>\n' });
    const err = await render().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReportTemplateError);
    expect(err).toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toMatch(new RegExp(`^${dir}/report\\.liquid:2:7: undefined variable: compnay \\(the template sees: company, domain, `));
    expect((err as Error).message).toContain('>> 2| <p>{{ compnay }}</p>');
  });

  it('names the partial an error is in', async () => {
    const { dir, render } = templates({ 'report.liquid': 'x\n{% include "report/kpis" %}', 'report/kpis.liquid': '\n\n{{ kpis.organic_trafic }}' });
    await expect(render()).rejects.toThrow(`${dir}/report/kpis.liquid:3:4: undefined variable: kpis.organic_trafic`);
  });

  it('names an unknown filter', async () => {
    const { dir, render } = templates({ 'report.liquid': '{{ kpis.organic_traffic | thousands }}' });
    await expect(render()).rejects.toThrow(`${dir}/report.liquid:1:1: undefined filter: thousands`);
  });
});

describe('number formats and charts', () => {
  it('formats numbers compactly and reads missing numbers as a dash', () => {
    expect([formatNumber(1234567), formatCompact(950), formatCompact(12_345), formatCompact(999_950), formatCompact(1_234_567)]).toEqual(['1,234,567', '950', '12.3k', '1M', '1.2M']);
    expect([formatMoney(2.349), formatMoney(1234), formatMoney(12_345), formatPercent(12.345)]).toEqual(['$2.35', '$1,234', '$12.3k', '12.3%']);
    expect([formatNumber(null), formatCompact(undefined), formatMoney(Number.NaN), formatPercent('12')]).toEqual(['—', '—', '—', '—']);
  });

  it('escapes text for SVG and draws nothing without data', () => {
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    expect(horizontalBarChart('t', [])).toBe('');
    expect(horizontalBarChart('t', [{ label: 'a', value: null }, { label: 'b', value: 0 }])).toBe('');
    expect(splitBar('t', [{ label: 'a', value: null, color: '#000' }])).toBe('');
    expect(sparkline([0.5])).toBe('');
    expect(sparkline([0.2, 0.2, 0.2])).toContain('points="0,8 30,8 60,8"');
  });
});

const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const has = (command: string) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
const PX_PER_MM = 96 / 25.4;

/** One page of pdftoppm's greyscale rendering: width, height and one byte per pixel. */
function pageImage(file: string, page: number, dpi: number): { width: number; height: number; pixels: Buffer } {
  const pgm = execFileSync('pdftoppm', ['-gray', '-r', String(dpi), '-f', String(page), '-l', String(page), file]);
  // P5 header: magic, width, height, maxval, each followed by whitespace.
  const header = /^P5\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(pgm.subarray(0, 50).toString('latin1'))!;
  return { width: Number(header[1]), height: Number(header[2]), pixels: pgm.subarray(header[0].length) };
}

/** How far down the printable area of a page its content reaches (0..1), the footer left out. */
function pageFill(file: string, page: number): number {
  const dpi = 30;
  const { width, height, pixels } = pageImage(file, page, dpi);
  const mm = dpi / 25.4;
  const [top, bottom] = [Math.round(PAGE_MARGINS_MM.top * mm), height - Math.round(PAGE_MARGINS_MM.bottom * mm)];
  let last = top;
  for (let y = top; y < bottom; y++) {
    const row = pixels.subarray(y * width, (y + 1) * width);
    if (row.some((v) => v < 200)) last = y;
  }
  return (last - top) / (bottom - top);
}

function pdfInfo(file: string): Record<string, string> {
  const text = execFileSync('pdfinfo', [file], { encoding: 'utf8' });
  return Object.fromEntries(text.split('\n').filter(Boolean).map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim()]));
}

/**
 * The right edges (CSS px) of the report's boxes as Chromium lays the page out for print:
 * print media, at the width the A4 page leaves between its margins.
 */
async function printedRightEdges(html: string): Promise<{ selector: string; right: number }[]> {
  const { default: puppeteer } = await import('puppeteer-core');
  const browser = await puppeteer.launch({ executablePath: chromium, args: [...CHROMIUM_FLAGS], headless: true, pipe: true });
  try {
    const page = await browser.newPage();
    await page.emulateMediaType('print');
    await page.setViewport({ width: Math.round((210 - PAGE_MARGINS_MM.left - PAGE_MARGINS_MM.right) * PX_PER_MM), height: 1100 });
    await page.setContent(html, { waitUntil: 'load' });
    const edges: { selector: string; right: number }[] = [];
    for (const selector of ['.kpi', '.card', 'table', 'figure', 'h2', '.headline', '.sample-banner']) {
      const rights = await page.$$eval(selector, (elements) => elements.map((el) => el.getBoundingClientRect().right));
      edges.push(...rights.map((right) => ({ selector, right })));
    }
    return edges;
  } finally {
    await browser.close();
  }
}

describe.runIf(existsSync(chromium))('report PDF with Chromium', () => {
  const pdfRenderer = new PdfRenderer({ executable_path: chromium });
  const file = join(tmp, 'report.pdf');
  const emptyFile = join(tmp, 'empty.pdf');
  let html = '';
  beforeAll(async () => {
    html = await renderer.render(sampleReportView());
    writeFileSync(file, await pdfRenderer.pdf(html, { footerText: 'Northlight Insights Ltd', title: 'Acme Widgets: search intelligence report' }));
    writeFileSync(emptyFile, await pdfRenderer.pdf(await renderer.render(emptyView()), { title: 'Acme Widgets: search intelligence report' }));
  }, 60_000);
  afterAll(() => pdfRenderer.close());

  it('prints the sample report to several pages', () => {
    const pdf = readFileSync(file);
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    const pages = has('pdfinfo')
      ? Number(/^Pages:\s+(\d+)/m.exec(execFileSync('pdfinfo', [file], { encoding: 'utf8' }))?.[1])
      : (pdf.toString('latin1').match(/\/Type\s*\/Page\b(?!s)/g) ?? []).length;
    expect(pages).toBeGreaterThanOrEqual(2);
  });

  it.runIf(has('pdftoppm'))('draws a page 1 that is not blank', () => {
    const { pixels } = pageImage(file, 1, 30);
    const mean = pixels.reduce((a, b) => a + b, 0) / pixels.length;
    const variance = pixels.reduce((sum, v) => sum + (v - mean) ** 2, 0) / pixels.length;
    expect(variance).toBeGreaterThan(100);
  });

  it.runIf(has('pdfinfo'))('keeps every card, table and chart inside the printable width of the page', async () => {
    // Chromium prints the page a little narrower than the A4 it lays out (594.96 pt, not 595.28).
    const pageWidthPx = Number(/^([\d.]+) x/.exec(pdfInfo(file)['Page size']!)![1]) / 0.75;
    const printable = pageWidthPx - (PAGE_MARGINS_MM.left + PAGE_MARGINS_MM.right) * PX_PER_MM;
    const edges = await printedRightEdges(html);
    expect(edges.filter((e) => e.selector === '.kpi').length).toBe(9);
    expect(edges.filter((e) => e.right > printable)).toEqual([]);
  }, 60_000);

  it.runIf(has('pdftoppm') && has('pdfinfo'))('fills its pages: sections follow on, no page but the last is mostly blank', () => {
    const pages = Number(pdfInfo(file).Pages);
    const fills = Array.from({ length: pages }, (_, i) => pageFill(file, i + 1));
    expect(fills.slice(0, -1).filter((fill) => fill < 0.75)).toEqual([]);
    expect(pages).toBeLessThanOrEqual(4);
    // With no data the report says so in a page or two.
    expect(Number(pdfInfo(emptyFile).Pages)).toBeLessThanOrEqual(2);
  });

  it.runIf(has('pdfinfo'))('is titled after the report and made by flows', () => {
    const info = pdfInfo(file);
    expect(info.Title).toBe('Acme Widgets: search intelligence report');
    expect(info.Creator).toBe('flows');
    expect(info.Producer).toMatch(/Skia/);
    expect(info.Pages).toBe(String(Number(/^Pages:\s+(\d+)/m.exec(execFileSync('pdfinfo', [file], { encoding: 'utf8' }))?.[1])));
  });
});
