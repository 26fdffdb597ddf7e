import { formatUnits, table, usd } from './format.ts';
import type { RunResult } from './executor/run.ts';

/** The human summary of a run: a table of steps, then failures, then what a dry run planned. */
export function renderRunSummary(result: RunResult): string {
  const lines: string[] = [];
  lines.push(`${result.dry_run ? 'Dry run' : 'Run'} ${result.run_id} of ${result.pipeline}: ${result.status}${result.error ? ` (${result.error})` : ''}`);
  lines.push('');
  lines.push(
    table(
      ['step', 'uses', 'status', 'items', result.dry_run ? 'planned effects' : 'effects', 'est. cost'],
      result.steps.map((s) => [
        s.id,
        s.uses,
        s.status,
        s.items ? `${s.items.succeeded} ok${s.items.failed ? `, ${s.items.failed} failed` : ''}${s.items.skipped ? `, ${s.items.skipped} skipped` : ''} / ${s.items.total}` : '-',
        s.effects,
        Object.keys(s.cost.units).length ? `${formatUnits(s.cost.units)} (${usd(s.cost.usd)})` : '-',
      ]),
    ),
  );
  if (result.failures.length) {
    lines.push('', 'Failed items:');
    for (const [reason, items] of groupBy(result.failures, (f) => `${f.step}: ${f.error ?? 'unknown error'}`)) {
      lines.push(`  ${items.length} × ${reason}${items.length <= 3 ? ` [${items.map((i) => i.item).join(', ')}]` : ''}`);
    }
  }
  if (result.skipped?.length) {
    lines.push('', 'Skipped items by reason:');
    for (const s of result.skipped) lines.push(`  ${s.n} × ${s.step}: ${s.reason}`);
  }
  if (result.notes?.length) {
    lines.push('');
    for (const n of result.notes) lines.push(`${n.step}: ${n.text}`);
  }
  if (result.dry_run) {
    const quotas = groupBy(
      result.effects.filter((e) => e.quota && e.slot),
      (e) => e.quota!,
    );
    for (const [quota, effects] of quotas) {
      const windows = groupBy(effects, (e) => e.slot!.label);
      lines.push('', `Quota ${quota}: ${effects.length} effects over ${windows.size} window${windows.size === 1 ? '' : 's'}`);
      for (const [label, inWindow] of [...windows].slice(0, 7)) lines.push(`  ${label}: ${inWindow.length}`);
      if (windows.size > 7) lines.push(`  ... ${windows.size - 7} more windows`);
    }
    lines.push('', `Estimated cost: ${Object.keys(result.cost.units).length ? `${formatUnits(result.cost.units)}, ` : ''}${usd(result.cost.usd)}`);
    if (result.artifacts) lines.push(`Planned effects and their content: ${result.artifacts}/ (effects.json, one file per rendered message)`);
  }
  return lines.join('\n');
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}
