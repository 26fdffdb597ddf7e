import type { Command } from 'commander';
import { Daemon, type Page } from '../../daemon/daemon.ts';
import { ValidationError } from '../../errors.ts';
import { checkPipelineSet } from '../../pipeline/load.ts';
import type { Pipeline } from '../../pipeline/types.ts';
import { type Project, UsageError } from '../project.ts';
import { integerOption } from '../options.ts';
import { onStopSignals } from '../stop-signals.ts';
import type { Wrap } from './types.ts';

interface DaemonCliOptions {
  port?: number;
  host?: string;
  workers?: number;
}

export function daemonCommand(program: Command, project: (defaults?: { logLevel?: string }) => Project, wrap: Wrap, pages: readonly Page[] = []): void {
  program
    .command('daemon')
    .description('Run the scheduler, the workers and the webhook server in one process (several may share one Postgres)')
    .option('--port <port>', 'HTTP port (default: daemon.port in the config, else 8080; 0 picks a free one)', integerOption({ min: 0, max: 65535, example: 8080 }))
    .option('--host <address>', 'address to listen on (default 127.0.0.1)')
    .option('--workers <n>', 'runs executed at once by this daemon (default: daemon.workers, else 2)', integerOption({ min: 1, max: 64, example: 2 }))
    .addHelpText(
      'after',
      `
Every pipeline file in --dir is loaded (all must be valid). Scheduled pipelines fire on their
cron; webhook pipelines get a POST route; event pipelines start when their event is recorded.
Runs are queued in the database: with Postgres (DATABASE_URL), start this on as many machines
as you like; each schedule fires once and each run is executed by one daemon.

Endpoints: POST <webhook paths>, GET /reports/<token>[.pdf] (report links), GET /healthz,
GET /metrics (Prometheus).
Signals: SIGTERM, SIGHUP or Ctrl-C (and npm stopping, under npx) stops gracefully (in-flight steps finish, runs go back to the queue,
exit 0); a second one exits at once. Pipeline files are read at start: restart the daemon after
editing them (runs in flight go back to the queue and resume).
Logs are JSON lines on stderr.`,
    )
    .action(
      wrap(async (opts: DaemonCliOptions) => {
        const p = project({ logLevel: 'info' });
        const pipelines: Pipeline[] = p.pipelineFiles().map((file) => p.pipeline(file));
        const clashes = checkPipelineSet(pipelines);
        if (clashes.length) throw new ValidationError(clashes);
        const config = opts.workers ? { ...p.config, daemon: { ...p.config.daemon, workers: opts.workers } } : p.config;
        const db = await p.openDb();
        let daemon: Daemon;
        try {
          daemon = new Daemon({
            db,
            config,
            pipelines,
            pages,
            verifiers: p.registry.verifiers,
            connectors: p.registry.connectors.values(),
            projectDir: p.dir,
            log: p.log,
            env: p.env,
            scrub: p.scrub,
            port: opts.port,
            host: opts.host,
            redisUrl: p.env.REDIS_URL || undefined,
          });
        } catch (err) {
          // A missing secret, a path used twice: the project's set-up, not a crash.
          await db.close();
          throw new UsageError((err as Error).message);
        }
        try {
          await daemon.start();
        } catch (err) {
          await daemon.stop().catch(() => {});
          await db.close();
          throw err;
        }
        const stopped = new Promise<void>((resolve) => {
          let signals = 0;
          onStopSignals((signal) => {
            signals++;
            if (signals > 1) process.exit(130);
            p.log.warn({ component: 'daemon', signal }, 'stopping: in-flight steps finish (a second signal aborts them)');
            void daemon.stop().then(resolve);
          }, p.env);
        });
        await stopped;
        await db.close();
        return 0;
      }),
    );
}
