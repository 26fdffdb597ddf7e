import { Type } from '@sinclair/typebox';
import { type ImapCursor, type Inbox, openInbox, parseImapUrl } from '../../connectors/imap/client.ts';
import { defineStep, type EngineConfig, errorMessage, NonRetriableError, type Queryable, type StepContext } from '../../engine/sdk.ts';
import type { InboundKind } from './inbound.ts';
import { receiveInbound } from './replies.ts';
import { type Mailbox, mailboxesOf } from './settings.ts';

/**
 * `email.inbox`: reads what came back to the mailboxes (every one of the config with an
 * `imap` URL): the messages of INBOX after the last UID read, each parsed and recorded as
 * email_inbound does it (replies stop sequences, bounces suppress, auto-replies count for
 * nothing). The cursor moves after each message, so a run stopped halfway goes on from
 * there; a message read twice is recorded once. A message no parser reads is recorded as
 * other with its problem and the cursor moves past it. A mailbox that cannot be reached is
 * reported in the output and the others are read; the next run tries it again.
 */

const KINDS: readonly InboundKind[] = ['reply', 'auto_reply', 'bounce', 'delay', 'complaint', 'other'];

const Counts = Type.Object(Object.fromEntries(KINDS.map((k) => [k, Type.Integer({ minimum: 0 })])) as Record<InboundKind, ReturnType<typeof Type.Integer>>, { additionalProperties: false });

const Input = Type.Object(
  {
    mailboxes: Type.Optional(Type.Array(Type.String({ format: 'email' }), { minItems: 1, description: 'Read only these mailboxes (default: every mailbox under email.domains with an imap URL).' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 500, description: 'Messages read per mailbox in one run; the rest wait for the next run.' })),
  },
  { additionalProperties: false },
);

const Output = Type.Object(
  {
    kinds: Counts,
    /** Messages read that were recorded before. */
    seen: Type.Integer({ minimum: 0, description: 'Messages read again that were recorded before.' }),
    paused: Type.Array(Type.String(), { description: 'Mailboxes paused by the bounce or complaint rate.' }),
    mailboxes: Type.Array(
      Type.Object(
        {
          mailbox: Type.String(),
          read: Type.Integer({ minimum: 0 }),
          reset: Type.Boolean({ description: 'The folder\'s UIDVALIDITY changed: it was read from the start.' }),
          error: Type.Optional(Type.String({ description: 'Why it could not be read this time.' })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

type InboxOutput = typeof Output.static;

/** The mailboxes to read: those asked for (each must have an imap URL), else all that have one. */
function mailboxesToRead(config: EngineConfig, wanted: readonly string[] | undefined): Mailbox[] {
  const all = mailboxesOf(config);
  const readable = all.filter((m) => m.imap);
  if (!wanted) return readable;
  return wanted.map((address) => {
    const found = all.find((m) => m.address === address.toLowerCase());
    if (!found) throw new NonRetriableError(`email.inbox: no mailbox ${address} under email.domains (mailboxes with an imap URL: ${readable.map((m) => m.address).join(', ') || 'none'})`);
    if (!found.imap) throw new NonRetriableError(`email.inbox: mailbox ${address} has no imap URL (set email.domains.${found.domain}.mailboxes.${found.address}.imap through \${{ env.NAME }})`);
    return found;
  });
}

async function cursorOf(db: Queryable, mailbox: string): Promise<ImapCursor | undefined> {
  const [row] = await db.query<{ uid_validity: string; last_uid: string }>('SELECT uid_validity, last_uid FROM email_inbox_cursors WHERE mailbox = $1', [mailbox]);
  return row ? { uidValidity: row.uid_validity, lastUid: Number(row.last_uid) } : undefined;
}

async function saveCursor(db: Queryable, mailbox: string, cursor: ImapCursor, now: Date): Promise<void> {
  await db.query(
    `INSERT INTO email_inbox_cursors (mailbox, uid_validity, last_uid, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (mailbox) DO UPDATE SET uid_validity = EXCLUDED.uid_validity, last_uid = EXCLUDED.last_uid, updated_at = EXCLUDED.updated_at`,
    [mailbox, cursor.uidValidity, cursor.lastUid, now],
  );
}

/** Reads one mailbox into `out`; returns how many messages it read and whether it started over. */
async function readMailbox(ctx: StepContext, mailbox: Mailbox, limit: number, out: InboxOutput): Promise<{ read: number; reset: boolean }> {
  const inbox: Inbox = await openInbox(parseImapUrl(mailbox.imap!, `email.domains.${mailbox.domain}.mailboxes.${mailbox.address}.imap`), { signal: ctx.signal });
  let read = 0;
  try {
    const cursor = await cursorOf(ctx.db, mailbox.address);
    const fresh = await inbox.newMessages(cursor);
    if (!cursor || fresh.reset) await saveCursor(ctx.db, mailbox.address, { uidValidity: fresh.uidValidity, lastUid: 0 }, ctx.clock.now());
    for (const uid of fresh.uids.slice(0, limit)) {
      if (ctx.signal.aborted) break;
      const raw = await inbox.source(uid);
      if (raw) {
        const received = await receiveInbound(ctx.db, ctx.config, mailbox.address, raw, ctx.clock.now(), ctx.run.id);
        if (received.status === 'seen') out.seen++;
        else out.kinds[received.kind]++;
        for (const key of received.paused) if (!out.paused.includes(key)) out.paused.push(key);
      }
      await saveCursor(ctx.db, mailbox.address, { uidValidity: fresh.uidValidity, lastUid: uid }, ctx.clock.now());
      read++;
    }
    return { read, reset: fresh.reset };
  } finally {
    await inbox.close();
  }
}

export const emailInbox = defineStep({
  type: 'email.inbox',
  description: 'Reads new mail of every mailbox with an imap URL (replies, auto-replies, bounces, delays, complaints) and records each once: replies stop the sequence, bounces and complaints suppress the address.',
  input: Input,
  output: Output,
  effect: {
    kind: () => 'email.inbox',
    plan(ctx, input) {
      const mailboxes = mailboxesToRead(ctx.config, input.mailboxes);
      return {
        summary: mailboxes.length ? `read the INBOX of ${mailboxes.length} mailbox${mailboxes.length === 1 ? '' : 'es'}: ${mailboxes.map((m) => m.address).join(', ')}` : 'no mailbox has an imap URL: nothing to read',
        output: { kinds: Object.fromEntries(KINDS.map((k) => [k, 0])) as InboxOutput['kinds'], seen: 0, paused: [], mailboxes: mailboxes.map((m) => ({ mailbox: m.address, read: 0, reset: false })) },
      };
    },
    // Reading again is harmless: the cursor and the Message-ID make each message count once.
    providerIdempotent: () => true,
  },
  async run(ctx, input) {
    const out: InboxOutput = { kinds: Object.fromEntries(KINDS.map((k) => [k, 0])) as InboxOutput['kinds'], seen: 0, paused: [], mailboxes: [] };
    for (const mailbox of mailboxesToRead(ctx.config, input.mailboxes)) {
      try {
        out.mailboxes.push({ mailbox: mailbox.address, ...(await readMailbox(ctx, mailbox, input.limit ?? 500, out)) });
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        ctx.log.warn({ mailbox: mailbox.address, err: errorMessage(err) }, 'could not read a mailbox');
        out.mailboxes.push({ mailbox: mailbox.address, read: 0, reset: false, error: errorMessage(err) });
      }
    }
    const total = KINDS.reduce((n, k) => n + out.kinds[k], 0);
    ctx.note(`${total} new message${total === 1 ? '' : 's'} (${KINDS.filter((k) => out.kinds[k]).map((k) => `${out.kinds[k]} ${k}`).join(', ') || 'none'})${out.paused.length ? `; paused ${out.paused.join(', ')}` : ''}`);
    return out;
  },
});
