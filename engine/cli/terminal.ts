import { type DestinationStream, pino } from 'pino';

/** Where progress bars draw: anything that can print a line above them. */
export interface LinePrinter {
  log(line: string): void;
}

const LEVELS: Record<string, { label: string; color: number }> = {
  trace: { label: 'TRACE', color: 90 },
  debug: { label: 'DEBUG', color: 90 },
  info: { label: 'INFO ', color: 36 },
  warn: { label: 'WARN ', color: 33 },
  error: { label: 'ERROR', color: 31 },
  fatal: { label: 'FATAL', color: 35 },
};

/** Fields a log record always has, or that read better as the line's own parts. */
const OWN_FIELDS = new Set(['level', 'time', 'msg', 'err']);

/**
 * The terminal a person watches: log records as short lines ("12:03:04 WARN  SEMrush: no
 * key (set SEMRUSH_API_KEY)  step=collect"), printed above the progress bars while bars
 * are drawn so a redraw never overwrites or clips a line. Off a terminal, records stay
 * JSON lines for log collectors.
 */
export class Terminal {
  private bars?: LinePrinter;

  constructor(
    readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly color = Boolean(stream.isTTY) && !process.env.NO_COLOR,
  ) {}

  get isTTY(): boolean {
    return Boolean(this.stream.isTTY);
  }

  /** While bars are drawn, lines go through them; `undefined` when they are gone. */
  drawBars(bars: LinePrinter | undefined): void {
    this.bars = bars;
  }

  /** One line for the person watching, above the bars if there are any. */
  print(line: string): void {
    const text = line.endsWith('\n') ? line.slice(0, -1) : line;
    // The bars turn the terminal's own wrapping off: a long line is wrapped here, never cut.
    if (this.bars) this.bars.log(`${wrap(text, this.stream.columns ?? 80).join('\n')}\n`);
    else this.stream.write(`${text}\n`);
  }

  /** A pino destination: readable lines on a terminal, JSON lines elsewhere. */
  logDestination(): DestinationStream {
    if (!this.isTTY) return pino.destination({ dest: (this.stream as { fd?: number }).fd ?? 2, sync: true });
    return {
      write: (chunk: string) => {
        for (const json of chunk.split('\n')) if (json) this.print(this.formatRecord(json));
      },
    };
  }

  /** A JSON log record as one short line; the message is never cut, the context may be. */
  formatRecord(json: string): string {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(json) as Record<string, unknown>;
    } catch {
      return json;
    }
    const level = LEVELS[String(record.level)] ?? { label: String(record.level).toUpperCase().padEnd(5), color: 0 };
    const time = typeof record.time === 'string' ? record.time.slice(11, 19) : '';
    const err = record.err === undefined ? '' : `: ${errorText(record.err)}`;
    const head = `${time} ${this.paint(level.label, level.color)} ${String(record.msg ?? '')}${err}`;
    const context = Object.entries(record)
      .filter(([k, v]) => !OWN_FIELDS.has(k) && v !== undefined)
      .sort(([a], [b]) => rank(a) - rank(b))
      .map(([k, v]) => `${k}=${contextValue(v)}`)
      .join(' ');
    if (!context) return head;
    const room = (this.stream.columns ?? 120) - visibleLength(head) - 2;
    if (room < 8) return head;
    const shown = context.length > room ? `${context.slice(0, room - 1)}…` : context;
    return `${head}  ${this.paint(shown, 90)}`;
  }

  private paint(text: string, code: number): string {
    return this.color && code ? `\x1b[${code}m${text}\x1b[0m` : text;
  }
}

/** Where a line happened, most telling first: the context is what gets cut on a narrow terminal. */
const FIRST = ['step', 'item', 'pipeline', 'run'];
const rank = (key: string) => (FIRST.includes(key) ? FIRST.indexOf(key) : FIRST.length);

function errorText(err: unknown): string {
  if (err && typeof err === 'object' && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
}

function contextValue(v: unknown): string {
  if (typeof v === 'string') return /\s/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}

/** Lines no wider than the terminal (colours dropped from a line that has to be split). */
function wrap(text: string, columns: number): string[] {
  return text.split('\n').flatMap((line) => {
    if (visibleLength(line) <= columns) return [line];
    const plain = stripColours(line);
    const parts: string[] = [];
    for (let i = 0; i < plain.length; i += columns) parts.push(plain.slice(i, i + columns));
    return parts;
  });
}

function stripColours(s: string): string {
  // Colour codes take no room on the screen.
  return s.replace(/\x1b\[[0-9;]*m/g, '');
}

function visibleLength(s: string): number {
  return stripColours(s).length;
}

/** The process's stderr, shared by the logger and the progress bars so they take turns. */
export const stderrTerminal = new Terminal();
