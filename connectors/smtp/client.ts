import { type Static, type TObject, Type } from '@sinclair/typebox';
import { Value, ValueErrorType } from '@sinclair/typebox/value';
import type { Mail, NodemailerError, SMTPPoolOptions, SMTPPoolSentMessageInfo } from 'nodemailer';
import { DURATION_PATTERN, NonRetriableError, parseDuration } from '../../engine/sdk.ts';
import { composer } from './composer.ts';

/**
 * Sends report emails over SMTP through a pool of open connections. nodemailer is loaded
 * on the first send, so reading the schema or the types costs nothing. Each message is
 * built and DKIM-signed on a worker thread (composer.ts) and sent as built.
 *
 * Retry is a property of the error: a refused connection, a timeout or a 4xx reply (421,
 * 450, 451, 452) throws a plain Error, which the engine retries; a 5xx reply (550 unknown
 * mailbox, 535 wrong password, 554 refused) throws NonRetriableError, as the server would
 * answer the same again. The password never appears in an error.
 */

const duration = (fallback: string, description: string) => Type.String({ pattern: DURATION_PATTERN, default: fallback, description: `${description}, like "${fallback}".` });

/** `connectors.smtp` in the engine config. */
export const SmtpConfigSchema = Type.Object(
  {
    host: Type.Optional(
      Type.String({ minLength: 1, description: "Host name of the SMTP server (a relay or the provider's submission host), through ${{ env.SMTP_HOST }}; unset, the sandbox SMTP server takes the mail." }),
    ),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'Defaults to 465 when secure, else 587 (submission).' })),
    secure: Type.Boolean({ default: false, description: 'TLS from the first byte (port 465). When false, STARTTLS is used if the server offers it.' }),
    require_tls: Type.Boolean({ default: false, description: 'Send nothing unless STARTTLS succeeds, so the password never crosses in clear.' }),
    auth: Type.Optional(
      Type.Object(
        {
          user: Type.Optional(Type.String({ minLength: 1, description: 'The user to sign in as, through ${{ env.SMTP_USER }}; unset, no sign-in (a relay that takes mail without it).' })),
          pass: Type.Optional(Type.String({ minLength: 1, description: 'Through ${{ env.SMTP_PASSWORD }}; never printed.' })),
        },
        { additionalProperties: false, description: 'Credentials for AUTH, used when user is set.' },
      ),
    ),
    pool_size: Type.Integer({ minimum: 1, maximum: 50, default: 5, description: 'Connections open at once.' }),
    messages_per_connection: Type.Integer({ minimum: 1, default: 100, description: 'Messages sent over one connection before it is replaced.' }),
    connect_timeout: duration('10s', 'Wait for the TCP (and TLS) connection'),
    greeting_timeout: duration('10s', "Wait for the server's greeting"),
    socket_timeout: duration('60s', 'Silence after which a connection is dropped'),
  },
  { additionalProperties: false },
);

export type SmtpConfig = Static<typeof SmtpConfigSchema>;

/** Settings that passed the schema, with every default filled in and the times in milliseconds. */
export interface ResolvedSmtpConfig {
  host: string;
  port: number;
  secure: boolean;
  require_tls: boolean;
  /** Present only with a user: sign in as them. */
  auth?: { user: string; pass: string };
  pool_size: number;
  messages_per_connection: number;
  connect_timeout_ms: number;
  greeting_timeout_ms: number;
  socket_timeout_ms: number;
}

/**
 * Checks connector settings and fills in defaults. `where` names the settings in the error,
 * e.g. `connectors.smtp`. Every problem is listed; the password's value never is.
 */
export function parseSmtpConfig(value: unknown, where = 'smtp config'): ResolvedSmtpConfig {
  const config = Value.Default(SmtpConfigSchema, structuredClone(value ?? {})) as SmtpConfig;
  const problems = new Map<string, string>();
  for (const e of Value.Errors(SmtpConfigSchema, config)) {
    const path = e.path.slice(1).replace(/\//g, '.');
    if (problems.has(path)) continue;
    if (e.type === ValueErrorType.ObjectAdditionalProperties) {
      const allowed = Object.keys((e.schema as TObject).properties).join(', ');
      problems.set(path, `${path}: unknown key (allowed: ${allowed})`);
      continue;
    }
    const got = e.value === undefined ? ', got nothing' : path === 'auth.pass' ? ' (value not shown)' : `, got ${JSON.stringify(e.value)}`;
    problems.set(path, `${path || '(settings)'}: ${e.message.replace(/^Expected/, 'expected')}${got}`);
  }
  if (!config.host && !problems.has('host')) problems.set('host', 'host: missing (the SMTP server to send through)');
  if (config.auth?.user && !config.auth.pass && !problems.has('auth.pass')) problems.set('auth.pass', 'auth.pass: missing (a password goes with auth.user)');
  if (problems.size) throw new NonRetriableError(`${where}: ${[...problems.values()].join('; ')}`);
  const ms = (text: string) => parseDuration(text) ?? 0;
  const user = config.auth?.user;
  return {
    host: config.host!,
    port: config.port ?? (config.secure ? 465 : 587),
    secure: config.secure,
    require_tls: config.require_tls,
    ...(user ? { auth: { user, pass: config.auth!.pass! } } : {}),
    pool_size: config.pool_size,
    messages_per_connection: config.messages_per_connection,
    connect_timeout_ms: ms(config.connect_timeout),
    greeting_timeout_ms: ms(config.greeting_timeout),
    socket_timeout_ms: ms(config.socket_timeout),
  };
}

export interface Mailbox {
  name?: string;
  email: string;
}

/**
 * The receiving server refused a recipient for good at RCPT TO (a 5xx such as 550 5.1.1): the
 * address itself is bad, a hard bounce. Other permanent refusals (the message at DATA, our
 * credentials) say nothing about the address and stay plain NonRetriableErrors.
 */
export class RecipientRefusedError extends NonRetriableError {
  override readonly name = 'RecipientRefusedError';
  constructor(
    message: string,
    readonly code: number,
    readonly response: string,
    readonly recipients: readonly string[],
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface EmailAttachment {
  filename: string;
  content: Buffer;
  contentType: string;
}

export interface EmailMessage {
  from: Mailbox;
  to: string | Mailbox | (string | Mailbox)[];
  subject: string;
  html: string;
  text: string;
  /** Extra header fields, e.g. List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 one-click). */
  headers?: Record<string, string>;
  attachments?: EmailAttachment[];
  /** `<id@domain>`; generated when not given. Pass one to recognise a resent message. */
  messageId?: string;
  /** A reply in a thread: the Message-ID it answers, and the thread's ids (RFC 5322 In-Reply-To, References). */
  inReplyTo?: string;
  references?: string[];
  /** Signs the message (RFC 6376) with the sending domain's key. */
  dkim?: DkimKey;
}

export interface DkimKey {
  domain: string;
  selector: string;
  /** PEM. */
  privateKey: string;
}

/**
 * The header fields a DKIM signature covers: what a receiver shows or acts on, the thread,
 * and both unsubscribe fields (RFC 8058 asks that List-Unsubscribe-Post be signed).
 */
export const DKIM_SIGNED_HEADERS = [
  'From', 'Sender', 'Reply-To', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'In-Reply-To', 'References',
  'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding', 'List-Unsubscribe', 'List-Unsubscribe-Post',
].join(':');

/**
 * A mailbox's own server as a URL, `smtps://user:password@host:465` (TLS from the first
 * byte) or `smtp://user:password@host:587` (STARTTLS, required when there are credentials),
 * as connector settings. `?require_tls=false` lets credentials go without STARTTLS (a local
 * test server that offers none); `?require_tls=true` asks for it without credentials too.
 * The password never appears in the error.
 */
export function smtpSettingsFromUrl(text: string, where: string): SmtpConfig {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new NonRetriableError(`${where}: not a URL (write smtps://user:password@host:465 or smtp://user:password@host:587)`);
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') throw new NonRetriableError(`${where}: the URL starts ${url.protocol}// (write smtps:// or smtp://)`);
  const secure = url.protocol === 'smtps:';
  const user = decodeURIComponent(url.username);
  let requireTls: boolean | undefined;
  for (const [name, value] of url.searchParams) {
    if (name !== 'require_tls') throw new NonRetriableError(`${where}: unknown URL parameter "${name}" (the one there is: require_tls=false)`);
    if (value !== 'true' && value !== 'false') throw new NonRetriableError(`${where}: require_tls=${value} in the URL: write require_tls=true or require_tls=false`);
    requireTls = value === 'true';
  }
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : secure ? 465 : 587,
    secure,
    // Credentials over STARTTLS only, unless the URL says otherwise: a server that does not offer it gets nothing.
    require_tls: !secure && (requireTls ?? user !== ''),
    ...(user ? { auth: { user, pass: decodeURIComponent(url.password) } } : {}),
  } as SmtpConfig;
}

export interface SendResult {
  messageId: string;
  /** Recipients the server took. */
  accepted: string[];
  /** Recipients the server refused while taking the others; all refused throws instead. */
  rejected: string[];
  /** The server's last reply, e.g. `250 OK: queued as 1A2B`. */
  response: string;
}

/** What a step depends on: a fake of it is a few lines. */
export interface EmailSender {
  send(message: EmailMessage, options?: { signal?: AbortSignal }): Promise<SendResult>;
  close(): Promise<void>;
}

/** RFC 5322 field name: printable ASCII without the colon. */
const HEADER_NAME = /^[!-9;-~]+$/;

/**
 * nodemailer codes that, with no reply from the server, mean the message or the settings
 * are wrong, so another attempt fails the same way. Every other failure without a reply is
 * about the connection (refused, timed out, dropped) and is retried.
 */
const PERMANENT_CODES = new Set(['EAUTH', 'ENOAUTH', 'EENVELOPE', 'ECONFIG', 'EFILEACCESS', 'EURLACCESS', 'EMAXRECIPIENTS', 'EOTP', 'EREQUIRETLS', 'EDKIMKEY']);

type Pool = Mail<SMTPPoolSentMessageInfo, SMTPPoolOptions>;

export class SmtpMailer implements EmailSender {
  /** A true private field: it holds the password, and a logged or serialised mailer must not show it. */
  readonly #config: ResolvedSmtpConfig;
  private pool: Promise<Pool> | undefined;
  private releaseComposer: (() => Promise<void>) | undefined;
  private closed = false;

  constructor(config: Partial<SmtpConfig>, where = 'connectors.smtp') {
    this.#config = parseSmtpConfig(config, where);
  }

  /** `host:port`, the prefix of every error. */
  get server(): string {
    return `${this.#config.host}:${this.#config.port}`;
  }

  async send(message: EmailMessage, options: { signal?: AbortSignal } = {}): Promise<SendResult> {
    if (this.closed) throw new Error(`smtp ${this.server}: the mailer is closed`);
    options.signal?.throwIfAborted();
    checkHeaders(message.headers ?? {});
    const pool = await this.open();
    try {
      const composed = await composer.compose({
        from: { name: message.from.name ?? '', address: message.from.email },
        to: (Array.isArray(message.to) ? message.to : [message.to]).map((r) =>
          typeof r === 'string' ? r : { name: r.name ?? '', address: r.email },
        ),
        subject: message.subject,
        html: message.html,
        text: message.text,
        headers: message.headers,
        attachments: message.attachments?.map((a) => ({ filename: a.filename, content: a.content, contentType: a.contentType })),
        messageId: message.messageId,
        inReplyTo: message.inReplyTo,
        references: message.references,
        dkim: message.dkim ? { domainName: message.dkim.domain, keySelector: message.dkim.selector, privateKey: message.dkim.privateKey, headerFieldNames: DKIM_SIGNED_HEADERS } : undefined,
      });
      options.signal?.throwIfAborted();
      const info = await pool.sendMail({ envelope: composed.envelope, raw: composed.raw, signal: options.signal });
      return { messageId: composed.messageId, accepted: info.accepted.map(String), rejected: info.rejected.map(String), response: info.response };
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw this.mapError(err as NodemailerError);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const pool = this.pool;
    this.pool = undefined;
    if (pool) (await pool).close();
    await this.releaseComposer?.();
  }

  private open(): Promise<Pool> {
    const c = this.#config;
    this.releaseComposer ??= composer.use();
    this.pool ??= import('nodemailer').then(({ createTransport }) =>
      createTransport({
        pool: true,
        host: c.host,
        port: c.port,
        secure: c.secure,
        requireTLS: c.require_tls,
        auth: c.auth ? { user: c.auth.user, pass: c.auth.pass } : undefined,
        maxConnections: c.pool_size,
        maxMessages: c.messages_per_connection,
        connectionTimeout: c.connect_timeout_ms,
        greetingTimeout: c.greeting_timeout_ms,
        socketTimeout: c.socket_timeout_ms,
        // A connection lost mid-message is reported, not silently resent by the pool: the
        // engine decides about retries, with its backoff and its record of the send.
        maxRequeues: 0,
        // Attachments are buffers we made; a path or URL in a message is never followed.
        disableFileAccess: true,
        disableUrlAccess: true,
      }),
    );
    return this.pool;
  }

  /** Turns a nodemailer error into one whose type carries the retry decision. */
  private mapError(err: NodemailerError): Error {
    const text = this.redact(err.message ?? String(err));
    const cause = {
      code: err.code,
      responseCode: err.responseCode,
      command: err.command && this.redact(err.command),
      response: err.response && this.redact(err.response),
      rejected: err.rejected,
    };
    const where = `smtp ${this.server}`;
    if (err.responseCode !== undefined) {
      // nodemailer reads the reply class for us; 503 (bad command sequence) is not permanent.
      const permanent = err.permanent ?? (err.responseCode >= 500 && err.responseCode !== 503);
      if (permanent) {
        const hint =
          err.code === 'EAUTH' ? 'check auth.user and auth.pass'
          : err.responseCode === 530 ? 'the server requires sign-in: set auth.user and auth.pass'
          : 'the server will refuse this message again';
        if (/^RCPT\b/i.test(err.command ?? '')) return new RecipientRefusedError(`${where}: ${text} (${hint})`, err.responseCode, cause.response ?? '', (err.rejected ?? []).map(String), { cause });
        return new NonRetriableError(`${where}: ${text} (${hint})`, { cause });
      }
      return new Error(`${where}: ${text} (temporary, try again later)`, { cause });
    }
    // A message still queued when close() ran was not refused: it can go out later.
    if (err.code && PERMANENT_CODES.has(err.code) && !this.closed) {
      const hint = err.code === 'EAUTH' || err.code === 'ENOAUTH' ? ' (check auth.user and auth.pass)' : '';
      return new NonRetriableError(`${where}: ${text}${hint}`, { cause });
    }
    return new Error(`${where}: ${text}`, { cause });
  }

  /** The password, and the base64 forms AUTH PLAIN and AUTH LOGIN send it in, never leave. */
  private redact(text: string): string {
    const auth = this.#config.auth;
    if (!auth) return text;
    const forms = [
      Buffer.from(`\u0000${auth.user}\u0000${auth.pass}`).toString('base64'),
      Buffer.from(auth.pass).toString('base64'),
      auth.pass,
    ];
    return forms.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
  }
}

function checkHeaders(headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name)) throw new NonRetriableError(`email header ${JSON.stringify(name)}: not a valid header name (printable ASCII, no colon or space)`);
    if (/[\r\n]/.test(value)) throw new NonRetriableError(`email header ${name}: the value contains a line break, which would start a new header; remove it`);
  }
}
