/**
 * How numbers read in a report, shared by the template filters and the SVG charts. Pure and
 * locale-fixed (en-US), so a report renders the same on every machine. A missing number
 * (null, NaN, or anything else a template passes that is not a number) reads as an em dash.
 */

export const MISSING = '—';

const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

const whole = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const cents = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const oneDecimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

const SUFFIXES: [number, string][] = [
  [1e9, 'B'],
  [1e6, 'M'],
  [1e3, 'k'],
];

/** 1234567 → "1,234,567". */
export function formatNumber(value: unknown): string {
  return isNumber(value) ? whole.format(value) : MISSING;
}

/** 950 → "950", 12_345 → "12.3k", 1_234_567 → "1.2M". */
export function formatCompact(value: unknown): string {
  if (!isNumber(value)) return MISSING;
  const size = Math.abs(value);
  for (const [unit, suffix] of SUFFIXES) {
    // 999_950 would round to "1000k": promote it to the next unit instead.
    if (size >= unit * 0.99995) return `${oneDecimal.format(value / unit)}${suffix}`;
  }
  return oneDecimal.format(value);
}

/** US dollars: "$2.35" for cents-sized amounts (a CPC), "$1,234", then "$12.3k". */
export function formatMoney(value: unknown): string {
  if (!isNumber(value)) return MISSING;
  const sign = value < 0 ? '-' : '';
  const size = Math.abs(value);
  if (size < 100 && !Number.isInteger(size)) return `${sign}$${cents.format(size)}`;
  if (size < 10_000) return `${sign}$${whole.format(size)}`;
  return `${sign}$${formatCompact(size)}`;
}

/** A percentage (0..100, not a fraction): 12.345 → "12.3%". */
export function formatPercent(value: unknown): string {
  return isNumber(value) ? `${oneDecimal.format(value)}%` : MISSING;
}
