/** Usage by unit name (semrush_units, claude_input_tokens ...) and its price in USD. */
export interface Cost {
  units: Record<string, number>;
  usd: number;
}

export const zeroCost = (): Cost => ({ units: {}, usd: 0 });

/** Money is kept in whole micro-dollars, as the database stores it: sums carry no float noise. */
export const roundUsd = (usd: number): number => Math.round(usd * 1e6) / 1e6;

/** Prices are per unit, keyed by the unit name in singular or as written: semrush_unit or semrush_units. */
export function priceOf(units: Record<string, number>, prices: Record<string, number> = {}): number {
  let usd = 0;
  for (const [unit, amount] of Object.entries(units)) {
    const price = prices[unit] ?? prices[unit.replace(/s$/, '')] ?? 0;
    usd += price * amount;
  }
  return roundUsd(usd);
}

export function addCost(into: Cost, units: Record<string, number> = {}, prices?: Record<string, number>): void {
  for (const [unit, amount] of Object.entries(units)) into.units[unit] = (into.units[unit] ?? 0) + amount;
  into.usd = roundUsd(into.usd + priceOf(units, prices));
}
