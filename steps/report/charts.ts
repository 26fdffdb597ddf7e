import type { CompetitorRow, OrganicKeywordRow } from '../../connectors/semrush/client.ts';
import { formatCompact, formatMoney, formatPercent } from './format.ts';
import type { DomainOverview } from './model.ts';

/**
 * The report's charts as inline SVG strings: pure, self-contained (no scripts, no links, no
 * fonts: text inherits the page's font), sized by a viewBox so they scale with the page.
 *
 * Every string that comes from data goes through `escapeXml` before it enters the markup;
 * numbers are formatted here. That is what lets the template print these strings unescaped.
 * A chart with nothing to show is the empty string, which the template tests for.
 */

export const PALETTE = {
  company: '#1f4e79',
  other: '#9aa8b8',
  organic: '#2a7f62',
  paid: '#c8842b',
  text: '#2b3440',
  muted: '#6b7684',
  grid: '#e3e8ee',
} as const;

export interface Bar {
  label: string;
  value: number | null;
  /** The company's own bar: bold label, company colour. */
  highlight?: boolean;
}

export interface BarChartOptions {
  format?: (value: number) => string;
  /** Colour of the other bars (grey by default). */
  color?: string;
}

export interface Segment {
  label: string;
  value: number | null;
  color: string;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text safe inside SVG/HTML markup and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const positive = (value: number | null | undefined): value is number => typeof value === 'number' && Number.isFinite(value) && value > 0;

/** `text` cut to `max` characters, with an ellipsis where it was cut. */
const truncate = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

const round = (n: number) => Math.round(n * 10) / 10;

function svg(width: number, height: number, label: string, body: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="${escapeXml(label)}">` +
    `<title>${escapeXml(label)}</title>${body}</svg>`
  );
}

/**
 * Horizontal bars, one row per item, longest value spanning the plot; labels left, values
 * at the bar's end. Empty when no bar has a positive value.
 */
export function horizontalBarChart(title: string, bars: Bar[], { format = formatCompact, color = PALETTE.other }: BarChartOptions = {}): string {
  const max = Math.max(0, ...bars.map((b) => b.value ?? 0));
  if (!bars.length || !(max > 0)) return '';
  const [width, rowHeight, labelWidth, valueWidth] = [600, 24, 190, 56];
  const plot = width - labelWidth - valueWidth;
  const rows = bars.map((bar, i) => {
    const y = i * rowHeight;
    const length = positive(bar.value) ? Math.max(1, round((bar.value / max) * plot)) : 0;
    const fill = bar.highlight ? PALETTE.company : color;
    const weight = bar.highlight ? ' font-weight="bold"' : '';
    const value = bar.value === null ? 'n/a' : format(bar.value);
    return (
      `<text x="${labelWidth - 8}" y="${y + 16}" text-anchor="end" font-size="12" fill="${PALETTE.text}"${weight}>${escapeXml(truncate(bar.label, 28))}</text>` +
      `<rect x="${labelWidth}" y="${y + 4}" width="${length}" height="${rowHeight - 8}" rx="2" fill="${escapeXml(fill)}"/>` +
      `<text x="${labelWidth + length + 6}" y="${y + 16}" font-size="11" fill="${PALETTE.muted}">${escapeXml(value)}</text>`
    );
  });
  const axis = `<line x1="${labelWidth}" y1="0" x2="${labelWidth}" y2="${bars.length * rowHeight}" stroke="${PALETTE.grid}"/>`;
  return svg(width, bars.length * rowHeight, title, axis + rows.join(''));
}

/**
 * One bar split into shares (organic against paid, say), with a legend of values and
 * percentages below. Empty unless two segments have something: a bar that is 100% one
 * thing shows no split.
 */
export function splitBar(title: string, segments: Segment[], format: (value: number) => string = formatCompact): string {
  if (segments.filter((s) => positive(s.value)).length < 2) return '';
  const total = segments.reduce((sum, s) => sum + (positive(s.value) ? s.value : 0), 0);
  const width = 600;
  let x = 0;
  const parts = segments.map((s) => {
    const share = positive(s.value) ? s.value / total : 0;
    const rect = `<rect x="${round(x)}" y="0" width="${round(share * width)}" height="22" fill="${escapeXml(s.color)}"/>`;
    x += share * width;
    return rect;
  });
  const legend = segments.map((s, i) => {
    const lx = i * 300;
    const share = positive(s.value) ? `${Math.round((s.value / total) * 100)}%` : '0%';
    const value = s.value === null ? 'n/a' : format(s.value);
    return (
      `<rect x="${lx}" y="32" width="10" height="10" rx="2" fill="${escapeXml(s.color)}"/>` +
      `<text x="${lx + 16}" y="41" font-size="12" fill="${PALETTE.text}">${escapeXml(`${s.label}: ${value} (${share})`)}</text>`
    );
  });
  return svg(width, 48, title, parts.join('') + legend.join(''));
}

/** A small line of a trend (12 monthly values, oldest first). Empty with fewer than two. */
export function sparkline(values: readonly (number | null)[], color: string = PALETTE.company): string {
  const points = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  if (points.length < 2) return '';
  const [width, height, pad] = [60, 16, 1.5];
  const [min, max] = [Math.min(...points), Math.max(...points)];
  const span = max - min || 1;
  const xy = points.map((v, i) => {
    const x = (i / (points.length - 1)) * width;
    // A flat trend sits in the middle, not on the floor.
    const y = max === min ? height / 2 : pad + (1 - (v - min) / span) * (height - 2 * pad);
    return `${round(x)},${round(y)}`;
  });
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="12-month trend">` +
    `<polyline points="${xy.join(' ')}" fill="none" stroke="${escapeXml(color)}" stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round"/></svg>`
  );
}

/** The company's organic traffic against its competitors', the company first. */
export function competitorTrafficChart(company: string, overview: DomainOverview | null, competitors: readonly CompetitorRow[]): string {
  const bars: Bar[] = competitors.map((c) => ({ label: c.domain, value: c.organicTraffic }));
  if (!bars.length) return '';
  return horizontalBarChart('Organic traffic: company and competitors', [{ label: company, value: overview?.organicTraffic ?? null, highlight: true }, ...bars]);
}

/** Each top keyword's share of the domain's organic traffic. */
export function keywordShareChart(keywords: readonly OrganicKeywordRow[]): string {
  const bars = keywords.map((k) => ({ label: k.keyword, value: k.trafficPercent }));
  return horizontalBarChart('Share of organic traffic by keyword', bars, { format: formatPercent, color: PALETTE.organic });
}

/** Organic against paid search: visits a month, and what they are worth in USD. */
export function organicVsPaidCharts(overview: DomainOverview | null): { traffic: string; value: string } {
  const pair = (organic: number | null | undefined, paid: number | null | undefined): Segment[] => [
    { label: 'Organic', value: organic ?? null, color: PALETTE.organic },
    { label: 'Paid', value: paid ?? null, color: PALETTE.paid },
  ];
  return {
    traffic: splitBar('Organic and paid traffic a month', pair(overview?.organicTraffic, overview?.paidTraffic)),
    value: splitBar('Organic traffic value and paid spend a month', pair(overview?.organicCost, overview?.paidCost), formatMoney),
  };
}
