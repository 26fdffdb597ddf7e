/** Usage by unit name (semrush_units, claude_input_tokens ...) and its price in USD. */
export interface Cost {
  units: Record<string, number>;
  usd: number;
}

export const zeroCost = (): Cost => ({ units: {}, usd: 0 });

/** Prices are per unit, keyed by the unit name in singular or as written: semrush_unit or semrush_units. */
export function priceOf(units: Record<string, number>, prices: Record<string, number> = {}): number {
  let usd = 0;
  for (const [unit, amount] of Object.entries(units)) {
    const price = prices[unit] ?? prices[unit.replace(/s$/, '')] ?? 0;
    usd += price * amount;
  }
  return usd;
}

export function addCost(into: Cost, units: Record<string, number> = {}, prices?: Record<string, number>): void {
  for (const [unit, amount] of Object.entries(units)) into.units[unit] = (into.units[unit] ?? 0) + amount;
  into.usd += priceOf(units, prices);
}
