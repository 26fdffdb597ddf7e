import type { Clock } from '../clock.ts';
import type { Condition } from '../expr/index.ts';

/** A step's `when` (checked at load: one ${{ }} expression giving true or false); absent means always. */
export function whenHolds(when: Condition | undefined, scope: Record<string, unknown>, clock: Clock): boolean {
  return when === undefined || when.holds(scope, { now: () => clock.now() });
}
