import { randomBytes } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { AddressObject } from 'mailparser';
import type { SMTPServerError, SMTPServerSession } from 'smtp-server';
import { createFaults, type FaultControl, type FaultOptions } from '../sandbox/faults.ts';

/** The faults that mean something in SMTP: no bodies to garble, no Retry-After. */
export type SmtpFaultOptions = Omit<FaultOptions, 'malformed' | 'errorStatus' | 'retryAfterSeconds'>;

/** The reply each fault gets at the end of DATA. */
const FAULT_REPLIES = {
  error: [451, '4.3.0 local error in processing, try again later'],
  throttle: [421, '4.7.0 too many messages, slow down and try again later'],
  reject: [554, '5.7.1 message refused'],
} as const;

/**
 * An SMTP server on loopback for the demo and the tests. It keeps every message it takes,
 * parsed, in memory (and as .eml files when asked), and answers the way real servers do
 * when told to: 550 for refused recipients, and the faults every sandbox has, in SMTP's
 * terms, at the end of each message's DATA (`{ keys }` are its first recipient).
 * No TLS unless asked; authentication is optional unless credentials are given.
 */
export interface SmtpSandboxOptions {
  /** Require AUTH with exactly these credentials; without them any client may send. */
  auth?: { user: string; pass: string };
  /** Answer 550 to RCPT TO for these addresses (any case). */
  rejectRecipients?: string[];
  /** Answer 550 to RCPT TO for every address at these domains or under them (the connector's sandbox refuses `.invalid`, which RFC 2606 keeps from ever existing). */
  rejectDomains?: string[];
  /**
   * latencyMs before each DATA reply; error: 451 (temporary); throttle: 421 (too many, try
   * later); reject: 554 (permanent); drop: the connection cut; hang: no reply at all.
   * Changeable later with `faults.set()`.
   */
  faults?: SmtpFaultOptions;
  /**
   * Also write each message taken here as `<time>-<random>.eml` (sorting by arrival), so the
   * demo can show it; sandboxes of several processes may share the folder.
   */
  outDir?: string;
  /** Offer STARTTLS with smtp-server's built-in test certificate, which no client trusts by default. */
  starttls?: boolean;
}

export interface ReceivedAttachment {
  filename: string | undefined;
  contentType: string;
  size: number;
  content: Buffer;
}

export interface ReceivedEmail {
  /** Order of arrival, from 1; goes on counting after clear(). */
  seq: number;
  /** The SMTP session it came over: messages sharing one came through one pooled connection. */
  sessionId: string;
  /** The user the client signed in as, if it did. */
  user: string | undefined;
  envelope: { from: string; to: string[] };
  messageId: string | undefined;
  subject: string | undefined;
  from: { name: string; email: string } | undefined;
  to: { name: string; email: string }[];
  html: string | undefined;
  text: string | undefined;
  /** Raw header values by lower-case name, unfolded; a repeated header's values joined by a newline. */
  headers: Record<string, string>;
  attachments: ReceivedAttachment[];
  raw: Buffer;
  /** The .eml file, when `outDir` was given. */
  file: string | undefined;
}

export interface SmtpSandbox {
  host: string;
  port: number;
  url: string;
  /** Messages taken, in order of arrival. Stored before the server answers 250. */
  readonly messages: ReceivedEmail[];
  /** Resolves with the messages once there are at least `count`; rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedEmail[]>;
  /** Forgets the messages taken; the faults keep counting. */
  clear(): void;
  /** The faults it injects, changeable while it runs. */
  readonly faults: FaultControl<SmtpFaultOptions>;
  close(): Promise<void>;
}

function replyError(responseCode: number, message: string): SMTPServerError {
  return Object.assign(new Error(message), { responseCode });
}

function mailboxes(header: AddressObject | AddressObject[] | undefined): { name: string; email: string }[] {
  const objects = header === undefined ? [] : Array.isArray(header) ? header : [header];
  return objects.flatMap((o) => o.value.flatMap((a) => (a.group ?? [a]).map((m) => ({ name: m.name, email: m.address ?? '' }))));
}

/** The header section as sent, not as mailparser interprets it (it merges List-* into one). */
function rawHeaders(lines: readonly { key: string; line: string }[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { key, line } of lines) {
    const value = line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim();
    out[key] = key in out ? `${out[key]}\n${value}` : value;
  }
  return out;
}

export async function startSmtpSandbox(options: SmtpSandboxOptions = {}): Promise<SmtpSandbox> {
  const messages: ReceivedEmail[] = [];
  const waiters = new Set<() => void>();
  const refused = new Set((options.rejectRecipients ?? []).map((a) => a.toLowerCase()));
  const faults = createFaults<SmtpFaultOptions>(options.faults);
  /** DATA replies held back by a `hang` fault, let go on close(). */
  const held = new Set<() => void>();
  let seq = 0;
  if (options.outDir) await mkdir(options.outDir, { recursive: true });
  // Loaded when a sandbox starts: a command that never starts one never loads them.
  const [{ SMTPServer }, { simpleParser }] = await Promise.all([import('smtp-server'), import('mailparser')]);

  const server = new SMTPServer({
    secure: false,
    disabledCommands: options.starttls ? [] : ['STARTTLS'],
    authOptional: !options.auth,
    allowInsecureAuth: true,
    disableReverseLookup: true,
    logger: false,
    // Connections a client left open are cut this soon after close().
    closeTimeout: 200,
    onAuth(auth, _session, callback) {
      const want = options.auth;
      if (!want || (auth.username === want.user && auth.password === want.pass)) return callback(null, { user: auth.username });
      callback(replyError(535, 'Authentication credentials invalid'));
    },
    onRcptTo(address, _session, callback) {
      const domain = address.address.toLowerCase().split('@')[1] ?? '';
      const gone = (options.rejectDomains ?? []).some((d) => domain === d || domain.endsWith(`.${d}`));
      if (gone || refused.has(address.address.toLowerCase())) return callback(replyError(550, `5.1.1 <${address.address}>: mailbox unavailable`));
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks);
        answer(raw, session, callback).catch((err: Error) => callback(replyError(451, `4.3.0 the sandbox could not take the message: ${err.message}`)));
      });
    },
  });

  /** The reply to one message's DATA: a fault's, or 250 once the message is kept. */
  async function answer(raw: Buffer, session: SMTPServerSession, callback: (err?: SMTPServerError | null) => void): Promise<void> {
    const fault = faults.next({ key: session.envelope.rcptTo[0]?.address.toLowerCase() });
    const latency = faults.options.latencyMs ?? 0;
    if (latency > 0) await new Promise((resolve) => setTimeout(resolve, latency));
    if (fault === 'hang') {
      held.add(() => callback(replyError(421, '4.3.2 the sandbox is closing')));
      return;
    }
    if (fault === 'drop') {
      // smtp-server has no API to cut one connection: its socket is what a dropped line loses.
      for (const connection of server.connections as Set<{ id: string; _socket: { destroy(): void } }>) if (connection.id === session.id) connection._socket.destroy();
      return;
    }
    if (fault === 'error' || fault === 'throttle' || fault === 'reject') {
      const [code, text] = FAULT_REPLIES[fault];
      return callback(replyError(code, text));
    }
    callback(await take(raw, session));
  }

  async function take(raw: Buffer, session: SMTPServerSession): Promise<null> {
    const parsed = await simpleParser(raw);
    seq += 1;
    const file = options.outDir ? join(options.outDir, emlName(new Date())) : undefined;
    if (file) {
      // Written beside its name, then renamed: whoever watches the folder never reads half a message.
      await writeFile(`${file}.part`, raw, { flag: 'wx' });
      await rename(`${file}.part`, file);
    }
    const mailFrom = session.envelope.mailFrom;
    messages.push({
      seq,
      sessionId: session.id,
      user: typeof session.user === 'string' ? session.user : undefined,
      envelope: { from: mailFrom ? mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address) },
      messageId: parsed.messageId,
      subject: parsed.subject,
      from: mailboxes(parsed.from)[0],
      to: mailboxes(parsed.to),
      html: parsed.html || undefined,
      text: parsed.text,
      headers: rawHeaders(parsed.headerLines),
      attachments: parsed.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, size: a.size, content: a.content })),
      raw,
      file,
    });
    for (const wake of waiters) wake();
    return null;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  // A client that drops its connection is reported here; the sandbox keeps serving the others.
  server.on('error', () => {});
  const { port } = server.server.address() as AddressInfo;

  return {
    host: '127.0.0.1',
    port,
    url: `smtp://127.0.0.1:${port}`,
    messages,
    waitFor(count, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (messages.length < count) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve([...messages]);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`smtp sandbox: waited ${timeoutMs}ms for ${count} messages, got ${messages.length}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    clear() {
      messages.length = 0;
    },
    faults,
    close: () =>
      new Promise((resolve) => {
        for (const release of held) release();
        held.clear();
        server.close(() => resolve());
      }),
  };
}

/** A file name no other message gets, in this process or another: the time it arrived, then random bits. */
function emlName(at: Date): string {
  return `${at.toISOString().replace(/[-:.]/g, '')}-${randomBytes(4).toString('hex')}.eml`;
}
