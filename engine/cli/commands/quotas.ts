import type { Command } from 'commander';
import { type Clock, systemClock } from '../../clock.ts';
import { parseDuration } from '../../duration.ts';
import { budgetPeriod } from '../../flow-control/budget-spec.ts';
import { flowControlOf } from '../../flow-control/index.ts';
import { capsText, groupTotals, quotaReports } from '../../flow-control/report.ts';
import { quotaLabel } from '../../flow-control/quota-spec.ts';
import { table, when } from '../../format.ts';
import { RunStore } from '../../store/index.ts';
import { didYouMean } from '../../suggest.ts';
import { type Project, UsageError } from '../project.ts';
import type { Wrap } from './types.ts';

export function quotasCommand(program: Command, project: () => Project, wrap: Wrap, clock: Clock = systemClock): void {
  const quotas = program.command('quotas').description("Each quota's use now, per key, what remains, its window, and what is paused");
  quotas
    .command('list', { isDefault: true })
    .description("Show each quota's caps (used/today's cap per period, ramp included), what remains, its window and why it waits")
    .option('--json', 'print the quotas as JSON on stdout')
    .action(
      wrap(async (opts: { json?: boolean }) => {
        const p = project();
        const db = await p.openDb();
        try {
          const now = clock.now();
          const reports = await quotaReports(flowControlOf(p.config), new RunStore(db).quotas, db, now);
          const remarks = (await Promise.all(p.registry.quotaRemarkSources.map((source) => source(db, p.config, now)))).flat();
          if (opts.json) {
            const about = (r: (typeof reports)[number]) => remarks.filter((m) => m.quota === r.quota && (r.key === null || m.key === undefined || m.key === r.key)).map((m) => m.text);
            process.stdout.write(`${JSON.stringify(reports.map((r) => (about(r).length ? { ...r, remarks: about(r) } : r)))}\n`);
            return 0;
          }
          if (!reports.length) {
            process.stdout.write(`no quotas in ${p.display(p.configFile)}\n`);
            return 0;
          }
          const status = (r: (typeof reports)[number]) =>
            r.paused ? `paused: ${r.paused.reason}${r.paused.until ? ` (until ${when(r.paused.until)})` : ''}` : r.next ? `waits until ${when(r.next.at)}: ${r.next.reason}` : 'open';
          // Each group (a sending domain) after its keys, added up: its room today with the ramps, and how many are paused.
          const totals = new Map(groupTotals(reports).map((g) => [`${g.quota}\u001f${g.group}`, g]));
          const rows: (string | number)[][] = [];
          reports.forEach((r, i) => {
            rows.push([r.quota, r.key ?? '-', capsText(r.caps), r.remaining, `${r.window.label}${r.window.open ? '' : ' (next)'}`, status(r)]);
            const next = reports[i + 1];
            const g = r.group ? totals.get(`${r.quota}\u001f${r.group}`) : undefined;
            if (g && (next?.quota !== r.quota || next.group !== r.group)) {
              rows.push([g.quota, `${g.group} (${g.keys} keys)`, capsText(g.caps), g.remaining, '', g.paused ? `${g.paused} of ${g.keys} paused` : 'open']);
            }
            if (g && next?.quota !== r.quota) {
              const all = groupTotals(reports.filter((x) => x.quota === r.quota).map((x) => ({ ...x, group: 'all' })))[0]!;
              rows.push([all.quota, `all (${all.keys} keys)`, capsText(all.caps), all.remaining, '', all.paused ? `${all.paused} of ${all.keys} paused` : 'open']);
            }
          });
          process.stdout.write(`${table(['quota', 'key', 'used / cap today', 'remaining', 'window', 'now'], rows)}\n`);
          // What steers a quota's volume beside its caps (a LinkedIn account's health), under the table.
          if (remarks.length) process.stdout.write(`\n${remarks.map((m) => `${m.quota}: ${m.text}`).join('\n')}\n`);
          return 0;
        } finally {
          await db.close();
        }
      }),
    );

  quotas
    .command('pause')
    .description('Pause a quota, or one key of it: calls under it wait until it is resumed (or until --for has passed)')
    .argument('<quota[:key]>', 'the quota, e.g. teaser-email, or one key of it, e.g. mailbox:ana@one.example')
    .requiredOption('--reason <text>', 'why, shown by flows quotas, in the runs that wait and in the logs')
    .option('--for <duration>', 'resume by itself after this long, e.g. 4h (default: until flows quotas resume)')
    .action(
      wrap(async (target: string, opts: { reason: string; for?: string }) => {
        const p = project();
        const { quota, key } = parseTarget(p, target);
        const forMs = opts.for === undefined ? undefined : parseDuration(opts.for);
        if (opts.for !== undefined && forMs === undefined) throw new UsageError(`--for "${opts.for}" is not a duration (write 30m, 4h or 2d)`);
        const db = await p.openDb();
        try {
          const now = clock.now();
          const until = forMs === undefined ? null : new Date(now.getTime() + forMs);
          await new RunStore(db).quotas.pause({ quota, key, reason: opts.reason, by: `flows quotas pause (${process.env.USER ?? 'a person'})`, until, now });
          process.stdout.write(`paused ${quotaLabel(quota, key)}${until ? ` until ${when(until)}` : ' until resumed (flows quotas resume ' + quotaLabel(quota, key) + ')'}: ${opts.reason}\n`);
          return 0;
        } finally {
          await db.close();
        }
      }),
    );

  quotas
    .command('resume')
    .description('Lift the pause of a quota, or of one key of it')
    .argument('<quota[:key]>', 'as given to flows quotas pause')
    .action(
      wrap(async (target: string) => {
        const p = project();
        const { quota, key } = parseTarget(p, target);
        const db = await p.openDb();
        try {
          const lifted = await new RunStore(db).quotas.resume(quota, key, { by: `flows quotas resume (${process.env.USER ?? 'a person'})`, now: clock.now() });
          process.stdout.write(lifted ? `resumed ${quotaLabel(quota, key)}\n` : `${quotaLabel(quota, key)} was not paused\n`);
          return 0;
        } finally {
          await db.close();
        }
      }),
    );
}

/** "mailbox:ana@one.example" -> the quota and the key, checked against the config. */
function parseTarget(p: Project, target: string): { quota: string; key: string } {
  const at = target.indexOf(':');
  const quota = at < 0 ? target : target.slice(0, at);
  const key = at < 0 ? '' : target.slice(at + 1);
  const flow = flowControlOf(p.config);
  const names = flow.quotaNames();
  if (!names.includes(quota)) throw new UsageError(`unknown quota "${quota}"${didYouMean(quota, names) || `; quotas in the config: ${names.join(', ') || 'none'}`}`);
  const compiled = flow.quota(quota);
  if (key && !compiled.perKey) throw new UsageError(`quota ${quota} has no keys: write ${quota} alone`);
  const declared = compiled.declaredKeys;
  if (key && declared.length && !declared.includes(key)) throw new UsageError(`quota ${quota} has no key "${key}"${didYouMean(key, declared) || `; its keys: ${declared.join(', ')}`}`);
  return { quota, key };
}

export function budgetsCommand(program: Command, project: () => Project, wrap: Wrap, clock: Clock = systemClock): void {
  program
    .command('budgets')
    .description('Show what each budget has spent (and reserved) in its current period, by unit, and what remains')
    .option('--json', 'print the budgets as JSON on stdout')
    .action(
      wrap(async (opts: { json?: boolean }) => {
        const p = project();
        const db = await p.openDb();
        try {
          const ledger = new RunStore(db).budgets;
          const flow = flowControlOf(p.config);
          const rows: { budget: string; unit: string; spent: number; limit: number; remaining: number; period: { start: string; end: string } }[] = [];
          for (const [name, budget] of Object.entries(p.config.budgets ?? {})) {
            const period = budgetPeriod(budget, flow.timezone, clock.now());
            const use = await ledger.useNow(name, period.start);
            for (const [unit, limit] of Object.entries(budget.limits)) {
              const spent = Math.round((unit === 'usd' ? use.usd : (use.units[unit] ?? 0)) * 100) / 100;
              rows.push({ budget: name, unit, spent, limit, remaining: Math.max(0, Math.round((limit - spent) * 100) / 100), period: { start: period.start.toISOString(), end: period.end.toISOString() } });
            }
          }
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(rows)}\n`);
            return 0;
          }
          if (!rows.length) {
            process.stdout.write(`no budgets in ${p.display(p.configFile)}\n`);
            return 0;
          }
          process.stdout.write(
            `${table(
              ['budget', 'unit', 'spent', 'limit', 'remaining', 'period'],
              rows.map((r) => [r.budget, r.unit, r.spent, r.limit, r.remaining, `${when(r.period.start)} to ${when(r.period.end)}`]),
            )}\n`,
          );
          return 0;
        } finally {
          await db.close();
        }
      }),
    );
}
