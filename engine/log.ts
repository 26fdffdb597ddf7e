import { pino, type Logger } from 'pino';
import type { Scrubber } from './secrets.ts';

export type { Logger };

/**
 * Structured logs (JSON lines on stderr, so stdout stays free for --json output). Every
 * argument is scrubbed of secret values before it is written.
 */
export function createLogger(options: { level?: string; scrub: Scrubber; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          method.apply(this, options.scrub(args) as Parameters<typeof method>);
        },
      },
      serializers: { err: pino.stdSerializers.err },
    },
    options.destination ?? pino.destination({ dest: 2, sync: true }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
