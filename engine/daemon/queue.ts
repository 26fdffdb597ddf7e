import PgBoss from 'pg-boss';
import { CompiledQuery, type Transaction } from 'kysely';
import type { Database } from '../db/connect.ts';
import type { Tables } from '../db/tables.ts';
import type { Logger } from '../log.ts';

/** The pg-boss queue of runs to execute. A job carries only the run id; the run row holds the rest. */
export const RUN_QUEUE = 'flows-runs';

export interface RunJob {
  run_id: string;
}

export interface RunQueueOptions {
  /** How often an idle worker looks for a job (seconds; pg-boss's minimum is 0.5). */
  pollSeconds: number;
  log: Logger;
}

/**
 * The durable queue of runs, on pg-boss. On Postgres pg-boss keeps its own small pool; on
 * the embedded database it shares our single connection through kysely, which serialises
 * its statements with ours (a multi-statement script goes through PGlite's exec).
 *
 * Jobs are sent inside our own transactions (`enqueue(trx, ...)`): a run row and its job
 * commit together or not at all, so a webhook answered 200 always has its run, and a
 * schedule fire recorded as done always has its job.
 *
 * pg-boss delivers; it does not decide liveness. A long run holds a lease on its row that
 * its worker renews; when a worker dies the lease runs out and another daemon queues the
 * run again (see claims.ts). Run jobs are therefore never retried by pg-boss itself.
 */
export class RunQueue {
  readonly boss: PgBoss;

  constructor(
    db: Database,
    private readonly options: RunQueueOptions,
  ) {
    const connection: PgBoss.ConstructorOptions = db.url
      ? { connectionString: db.url, max: 3 }
      : {
          db: {
            executeSql: async (text: string, values: unknown[] = []) =>
              values.length === 0 && /;\s*\S/.test(text)
                ? { rows: await db.script(text) }
                : { rows: (await db.kysely.executeQuery(CompiledQuery.raw(text, values))).rows as unknown[] },
          },
        };
    this.boss = new PgBoss({
      ...connection,
      // Schedules are ours (catch-up and overlap rules, injected clock): pg-boss only delivers.
      schedule: false,
      supervise: true,
      maintenanceIntervalSeconds: 60,
      archiveCompletedAfterSeconds: 3600,
      deleteAfterDays: 7,
    });
    this.boss.on('error', (err) => options.log.error({ err: String(err) }, 'queue error'));
  }

  async start(): Promise<void> {
    await this.boss.start();
    if (!(await this.boss.getQueue(RUN_QUEUE))) {
      await this.boss.createQueue(RUN_QUEUE, {
        name: RUN_QUEUE,
        retryLimit: 0,
        // Liveness comes from run leases; this only bounds how long pg-boss keeps a job active.
        expireInSeconds: 23 * 3600,
        retentionDays: 7,
      });
    }
  }

  /** Sends a run's job inside `trx`, so it commits with the run row. */
  async enqueue(trx: Transaction<Tables>, runId: string, startAfter?: Date): Promise<void> {
    await this.boss.send(RUN_QUEUE, { run_id: runId } satisfies RunJob, {
      startAfter,
      db: { executeSql: async (text, values) => ({ rows: (await trx.executeQuery(CompiledQuery.raw(text, values))).rows as unknown[] }) },
    });
  }

  /** Pollers not executing a job, in the order they became so. */
  private readonly idle = new Set<string>();

  /**
   * Starts `slots` pollers; each executes one run at a time. A poller that finished a job
   * looks again at once (there may be more); an idle one sleeps the poll interval unless
   * wake() is called because a run was queued here.
   */
  async work(slots: number, handle: (job: RunJob) => Promise<void>): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < slots; i++) {
      let id = '';
      id = await this.boss.work<RunJob>(RUN_QUEUE, { batchSize: 1, pollingIntervalSeconds: this.options.pollSeconds }, async ([job]) => {
        if (!job) return;
        this.idle.delete(id);
        try {
          await handle(job.data);
        } finally {
          this.idle.add(id);
          // It found a job, so there may be more: look again at once, not a poll interval later.
          if (id) this.boss.notifyWorker(id);
        }
      });
      this.idle.add(id);
      ids.push(id);
    }
    return ids;
  }

  /**
   * Wakes up to `count` idle pollers (that many runs were just queued here). Busy pollers
   * look again as soon as their run ends, so they need no wake-up.
   */
  wake(count = 1): void {
    let n = 0;
    for (const id of this.idle) {
      if (n++ >= count) break;
      // Round robin: the one woken goes to the back.
      this.idle.delete(id);
      this.idle.add(id);
      this.boss.notifyWorker(id);
    }
  }

  /** Jobs waiting to be picked up (created or retry). */
  depth(): Promise<number> {
    return this.boss.getQueueSize(RUN_QUEUE);
  }

  /** Stops fetching new jobs; jobs already handed to a handler run to their end. */
  async stopFetching(): Promise<void> {
    await this.boss.offWork(RUN_QUEUE);
  }

  async stop(): Promise<void> {
    await this.boss.stop({ graceful: true, wait: true, close: true, timeout: 5000 });
  }
}
