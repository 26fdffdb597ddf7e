import type { Clock } from '../clock.ts';
import { evaluate, isTemplate, parseExpression, parseTemplate, renderTemplate } from '../expr/index.ts';

export function isTruthy(v: unknown): boolean {
  return !(v === false || v === null || v === undefined || v === 0 || v === '' || Number.isNaN(v));
}

/** `when` is a boolean, a ${{ }} template, or a bare expression; absent means always. */
export function whenHolds(when: string | boolean | undefined, scope: Record<string, unknown>, clock: Clock): boolean {
  if (when === undefined) return true;
  if (typeof when === 'boolean') return when;
  const now = () => clock.now();
  const value = isTemplate(when) ? renderTemplate(parseTemplate(when), scope, { now }) : evaluate(parseExpression(when), scope, { now });
  return isTruthy(value);
}
