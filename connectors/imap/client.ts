import { NonRetriableError } from '../../engine/sdk.ts';

/**
 * Reads a mailbox's INBOX over IMAP (imapflow, loaded on first use): the UIDs after a
 * cursor, then each message's raw source. A cursor is the folder's UIDVALIDITY with the last
 * UID read; when the server's UIDVALIDITY differs, its UIDs were renumbered and every
 * message is new again (recording deduplicates by Message-ID, so nothing happens twice).
 * The password never appears in an error.
 */

/** Where reading got to in one folder. */
export interface ImapCursor {
  uidValidity: string;
  lastUid: number;
}

export interface NewMessages {
  uidValidity: string;
  /** UIDs after the cursor, oldest first. */
  uids: number[];
  /** The server's UIDVALIDITY is not the cursor's: reading starts over. */
  reset: boolean;
}

/** What the email.inbox step sees of a mailbox. */
export interface Inbox {
  /** INBOX's UIDVALIDITY and the UIDs of the messages after the cursor (all of them without one). */
  newMessages(cursor: ImapCursor | undefined): Promise<NewMessages>;
  /** One message's raw bytes as stored; undefined when it was expunged meanwhile. */
  source(uid: number): Promise<Buffer | undefined>;
  close(): Promise<void>;
}

export interface ImapSettings {
  host: string;
  port: number;
  /** TLS from the first byte (imaps://); else STARTTLS when the server offers it. */
  secure: boolean;
  user: string;
  pass: string;
}

/** imaps://user:password@host:993 or imap://user:password@host:143; `where` names the setting in errors. */
export function parseImapUrl(url: string, where = 'imap'): ImapSettings {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new NonRetriableError(`${where}: not a URL (write imaps://user:password@host:993)`);
  }
  if (u.protocol !== 'imaps:' && u.protocol !== 'imap:') throw new NonRetriableError(`${where}: expected an imaps:// or imap:// URL, got ${u.protocol}// (write imaps://user:password@host:993)`);
  if (!u.hostname) throw new NonRetriableError(`${where}: the URL names no host (write imaps://user:password@host:993)`);
  if (!u.username) throw new NonRetriableError(`${where}: the URL names no user to sign in as (write imaps://user:password@${u.host})`);
  const secure = u.protocol === 'imaps:';
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : secure ? 993 : 143, secure, user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) };
}

export interface OpenInboxOptions {
  /** Wait this long for the connection and the greeting (default 10 s). */
  connectTimeoutMs?: number;
  /** Aborts the connection (closing it) when the step is stopped. */
  signal?: AbortSignal;
}

/** Connects, signs in and opens INBOX read-only (reading marks nothing \Seen). */
export async function openInbox(settings: ImapSettings, options: OpenInboxOptions = {}): Promise<Inbox> {
  const { ImapFlow } = await import('imapflow');
  const timeout = options.connectTimeoutMs ?? 10_000;
  const client = new ImapFlow({
    host: settings.host,
    port: settings.port,
    secure: settings.secure,
    auth: { user: settings.user, pass: settings.pass },
    logger: false,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: 120_000,
  });
  // A dropped connection is reported by the call that needed it; this keeps it from crashing the process meanwhile.
  client.on('error', () => {});
  const abort = () => client.close();
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    await client.connect();
    const folder = await client.mailboxOpen('INBOX', { readOnly: true });
    const uidValidity = String(folder.uidValidity);
    return {
      async newMessages(cursor) {
        const reset = cursor !== undefined && cursor.uidValidity !== uidValidity;
        const after = cursor && !reset ? cursor.lastUid : 0;
        // Nothing new: `n:*` would still name the newest message.
        if (folder.exists === 0 || (folder.uidNext !== undefined && folder.uidNext <= after + 1)) return { uidValidity, uids: [], reset };
        const found = await client.search({ uid: `${after + 1}:*` }, { uid: true });
        const uids = (found || []).filter((uid) => uid > after).sort((a, b) => a - b);
        return { uidValidity, uids, reset };
      },
      async source(uid) {
        const message = await client.fetchOne(String(uid), { source: true }, { uid: true });
        return message ? message.source : undefined;
      },
      async close() {
        options.signal?.removeEventListener('abort', abort);
        await client.logout().catch(() => client.close());
      },
    };
  } catch (err) {
    options.signal?.removeEventListener('abort', abort);
    client.close();
    throw imapError(err, settings);
  }
}

/** A refused sign-in is not retried (the same password fails again); the rest is (a network error, a busy server). */
function imapError(err: unknown, settings: ImapSettings): Error {
  const e = err as { authenticationFailed?: boolean; responseText?: string; message?: string; code?: string };
  const where = `IMAP ${settings.user} at ${settings.host}:${settings.port}`;
  const detail = (e.responseText ?? e.message ?? String(err)).split(settings.pass || '\u0000').join('***');
  if (e.authenticationFailed) return new NonRetriableError(`${where}: sign-in refused (${detail}): check the mailbox's imap URL`);
  return new Error(`${where}: ${detail}${e.code ? ` (${e.code})` : ''}`, { cause: err });
}
