import { normaliseProfileUrl } from '../../connectors/phantombuster/profile-url.ts';

/**
 * The rows the connections export and the inbox scraper write, read by the names the phantoms
 * use and the ones they have used before, tolerating what they may add. A row without a
 * readable profile is left out (and counted), never a reason to fail the batch.
 */

type Row = Record<string, unknown>;

const first = (row: Row, names: readonly string[]): unknown => names.map((n) => row[n]).find((v) => v !== undefined && v !== null && v !== '');

/** A time the phantom wrote (ISO text, epoch milliseconds or seconds), or undefined. */
export function timeOf(value: unknown): Date | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value;
  if (typeof value === 'number' || (typeof value === 'string' && /^\d{9,13}$/.test(value.trim()))) {
    const n = Number(value);
    return new Date(n < 1e12 ? n * 1000 : n);
  }
  if (typeof value !== 'string' || !value.trim()) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t);
}

const PROFILE = ['profileUrl', 'linkedinProfileUrl', 'url', 'profileLink'] as const;

export interface Connection {
  profileUrl: string;
  /** When the connection was made, when the export says. */
  connectedAt?: Date;
}

/** The connections of an export (LinkedIn Connections Export), each by its canonical profile URL. */
export function connectionsOf(rows: readonly Row[]): { connections: Connection[]; unreadable: number } {
  const connections: Connection[] = [];
  let unreadable = 0;
  for (const row of rows) {
    const profileUrl = normaliseProfileUrl(String(first(row, PROFILE) ?? ''));
    if (!profileUrl) {
      unreadable++;
      continue;
    }
    const connectedAt = timeOf(first(row, ['connectionSince', 'connectedAt', 'connectionDate', 'connectedOn']));
    connections.push({ profileUrl, ...(connectedAt ? { connectedAt } : {}) });
  }
  return { connections, unreadable };
}

export interface InboundMessage {
  profileUrl: string;
  text: string;
  at: Date;
  threadUrl?: string;
}

const truthy = (v: unknown) => v === true || v === 'true' || v === 'TRUE' || v === 1 || v === '1';

/**
 * The threads of an inbox scrape (LinkedIn Inbox Scraper) whose last message came from the
 * other person: a thread's last message is theirs when isLastMessageFromMe is false, or when
 * the profile it came from is not the account's own. Threads without a time are left out: a
 * reply is recorded once per message, by its time.
 */
export function inboundOf(rows: readonly Row[], ownProfile?: string): { messages: InboundMessage[]; unreadable: number } {
  const messages: InboundMessage[] = [];
  let unreadable = 0;
  for (const row of rows) {
    const fromMeField = first(row, ['isLastMessageFromMe', 'lastMessageFromMe']);
    const fromUrl = normaliseProfileUrl(String(first(row, ['lastMessageFromUrl', 'lastMessageFrom']) ?? ''));
    const fromMe = fromMeField !== undefined ? truthy(fromMeField) : Boolean(fromUrl && ownProfile && fromUrl === ownProfile);
    if (fromMe) continue;
    const profileUrl = normaliseProfileUrl(String(first(row, PROFILE) ?? '')) ?? fromUrl;
    const at = timeOf(first(row, ['lastMessageDate', 'lastMessageTimestamp', 'date', 'timestamp']));
    if (!profileUrl || !at) {
      unreadable++;
      continue;
    }
    const threadUrl = first(row, ['threadUrl']);
    messages.push({ profileUrl, at, text: String(first(row, ['lastMessage', 'lastMessageText', 'message']) ?? ''), ...(typeof threadUrl === 'string' ? { threadUrl } : {}) });
  }
  return { messages, unreadable };
}
