import type { ServerResponse } from 'node:http';
import { createFaults, type Fault, type FaultControl, type FaultOptions, type FaultSubject } from './faults.ts';

/** The faults an HTTP sandbox injects: all but SMTP's permanent refusal. */
export type HttpFaultOptions = Omit<FaultOptions, 'reject'>;

/** One HTTP answer of a sandbox. */
export interface HttpAnswer {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

/** How a provider says what the faults mean, on its wire. */
export interface HttpDialect {
  /** Its answer to too many requests (429, with its body and the Retry-After header). */
  throttled(retryAfterSeconds: number): HttpAnswer;
  /** Its answer to a server failure of this status. */
  failed(status: number): HttpAnswer;
  /** Its body made unreadable (default: cut in half, as a dropped transfer would). */
  garble?(body: string): string;
}

/** The faults of an HTTP sandbox, answered in its provider's dialect. */
export interface HttpFaults {
  readonly control: FaultControl<HttpFaultOptions>;
  /** Counts the request and decides its fault (see FaultControl.next). */
  decide(subject?: FaultSubject): Fault | undefined;
  /**
   * Answers a fault that is the whole answer (hang, drop, throttle, error) and says what it
   * did ("held", "dropped", "429", "500"); undefined when the sandbox answers (no fault, or
   * malformed, which send() applies).
   */
  intercept(res: ServerResponse, fault: Fault | undefined): string | undefined;
  /** Sends the sandbox's answer after the latency, garbled when the request drew `malformed`. */
  send(res: ServerResponse, answer: HttpAnswer, fault?: Fault): void;
  /** Cancels pending answers and ends held requests: before the server closes. */
  close(): void;
}

export function httpFaults(options: HttpFaultOptions | undefined, dialect: HttpDialect): HttpFaults {
  const control = createFaults(options);
  const timers = new Set<NodeJS.Timeout>();
  const held = new Set<ServerResponse>();

  const send = (res: ServerResponse, answer: HttpAnswer, fault?: Fault) => {
    const body = fault === 'malformed' ? (dialect.garble ?? halve)(answer.body) : answer.body;
    const write = () => {
      if (res.destroyed) return;
      res.writeHead(answer.status, answer.headers);
      res.end(body);
    };
    const latency = control.options.latencyMs ?? 0;
    if (latency <= 0) return write();
    const timer = setTimeout(() => {
      timers.delete(timer);
      write();
    }, latency);
    timers.add(timer);
  };

  return {
    control,
    decide: (subject) => control.next(subject),
    intercept(res, fault) {
      switch (fault) {
        case 'hang':
          // Never answered: the connection stays open until the client gives up (or close()).
          held.add(res);
          res.on('close', () => held.delete(res));
          return 'held';
        case 'drop':
          res.socket?.destroy();
          return 'dropped';
        case 'throttle': {
          const answer = dialect.throttled(control.options.retryAfterSeconds ?? 1);
          send(res, answer);
          return String(answer.status);
        }
        case 'error': {
          const answer = dialect.failed(control.options.errorStatus ?? 500);
          send(res, answer);
          return String(answer.status);
        }
        default:
          return undefined;
      }
    },
    send,
    close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const res of held) res.destroy();
      held.clear();
    },
  };
}

const halve = (body: string) => body.slice(0, Math.floor(body.length / 2));
