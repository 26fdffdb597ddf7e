import type { Command } from 'commander';
import { RunStore } from '../../store/index.ts';
import { table, when } from '../../format.ts';
import type { Project } from '../project.ts';
import { UsageError } from '../project.ts';
import type { Wrap } from './types.ts';

/**
 * Effects in doubt: reserved by an attempt that never reported back (the process died in
 * the middle of a send). They are never repeated on their own; a person checks the outside
 * system and says what happened.
 */
export function effectsCommand(program: Command, project: () => Project, wrap: Wrap): void {
  const effects = program.command('effects').description('Effects in doubt (started, never confirmed), and how to settle them');

  effects
    .command('list', { isDefault: true })
    .description('List effects in doubt')
    .option('--run <run-id>', 'only this run')
    .option('--json', 'print them as JSON on stdout')
    .action(
      wrap(async (opts: { run?: string; json?: boolean }) => {
        const p = project();
        const db = await p.openDb();
        try {
          const rows = await new RunStore(db).effects.inDoubt(opts.run);
          if (opts.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
          else if (!rows.length) process.stdout.write('no effects in doubt\n');
          else {
            // What identifies each outside (recipient, subject, Message-ID ...), to look it up there.
            const identity = (r: (typeof rows)[number]) => (r.identity ? Object.entries(r.identity).map(([k, v]) => `${k}: ${v}`).join('; ') : '');
            process.stdout.write(
              `${table(
                ['key', 'run', 'step', 'item', 'what', 'identity', 'started'],
                rows.map((r) => [r.key, r.run_id, r.step_id, r.item_key, r.summary, identity(r), when(r.reserved_at)]),
              )}\n`,
            );
            process.stdout.write('\nCheck each in the outside system, then: flows effects resolve <key> --happened | --did-not-happen\n');
          }
          return 0;
        } finally {
          await db.close();
        }
      }),
    );

  effects
    .command('resolve')
    .description('Settle an effect in doubt: it happened (never repeat it) or it did not (a resume performs it)')
    .argument('<key>', 'the effect key (see flows effects)')
    .option('--happened', 'the outside system shows it: record it as done')
    .option('--did-not-happen', 'it is not there: free the key so that resuming the run performs it')
    .action(
      wrap(async (key: string, opts: { happened?: boolean; didNotHappen?: boolean }) => {
        if (Boolean(opts.happened) === Boolean(opts.didNotHappen)) throw new UsageError('say either --happened or --did-not-happen');
        const p = project();
        const db = await p.openDb();
        try {
          const store = new RunStore(db);
          const effect = await store.effects.find(key);
          if (!effect) throw new UsageError(`no effect with key "${key}" (see flows effects)`);
          if (effect.status !== 'reserved') throw new UsageError(`effect "${key}" is not in doubt (it is ${effect.status})`);
          await store.effects.resolve(key, Boolean(opts.happened), new Date());
          if (opts.happened) {
            process.stdout.write(`recorded ${key} as done: it will not be repeated\n`);
          } else {
            const run = await store.runs.get(effect.run_id);
            process.stdout.write(`freed ${key}: resuming the run performs it (flows run ${run?.pipeline ?? '<pipeline>'} --resume ${effect.run_id})\n`);
          }
          return 0;
        } finally {
          await db.close();
        }
      }),
    );
}
