import { createHash } from 'node:crypto';
import { normaliseProfileUrl } from './profile-url.ts';

/**
 * LinkedIn as the sandbox's phantoms see it: invitations that are accepted (after a few
 * days), ignored or declined, connections, messages and the replies that come later. Every
 * fate is drawn from a sha256 of the seed, the account and the profile (or set for the people
 * a script names), so a run is the same every time; states are read at a given time, so a
 * test moves its clock days ahead and reads again.
 */
export interface LinkedInWorldOptions {
  /** Seeds every draw (default "linkedin"). */
  seed?: string;
  /** Share of invitations accepted (default 0.35). */
  acceptRate?: number;
  /** Share declined by the invitee: they leave the pending list without a connection (default 0.1). The rest stay pending, ignored. */
  declineRate?: number;
  /** Days after the invitation that an acceptance or a decline comes, [min, max] (default [1, 6]). */
  decideAfterDays?: readonly [number, number];
  /** Share of messages answered (default 0.25). */
  replyRate?: number;
  /** Days after a message that its reply comes, [min, max] (default [0.25, 3]). */
  replyAfterDays?: readonly [number, number];
  /** Longest note LinkedIn takes, filled in (default 300; 200 on a free account). */
  noteLimit?: number;
  /** Invitations LinkedIn takes in any 7 days of one account (default 100). */
  weeklyInvitationLimit?: number;
  /**
   * People who do as told instead of as drawn, by canonical profile URL: for a demo or a test
   * that must show a case (an early acceptance, a reply) whatever the seed draws. What a
   * script leaves unset is drawn as for anyone else.
   */
  scripted?: Readonly<Record<string, ScriptedPerson>>;
}

export interface ScriptedPerson {
  /** Accepts the invitation this many days after it is sent. */
  acceptAfterDays?: number;
  /** Answers the first message they get this many days after it, and no later one; false: answers none. */
  replyAfterDays?: number | false;
}

export interface Person {
  profileUrl: string;
  firstName: string;
  lastName: string;
  fullName: string;
  companyName?: string;
}

export type InvitationState = 'pending' | 'accepted' | 'declined' | 'withdrawn';

export interface Invitation {
  account: string;
  person: Person;
  note: string;
  sentAt: number;
  /** What the invitee will do, and when. */
  fate: 'accept' | 'decline' | 'ignore';
  decidesAt: number;
  withdrawnAt?: number;
}

export interface SentMessage {
  account: string;
  profileUrl: string;
  text: string;
  sentAt: number;
  /** The invitee's reply, if they will answer, and when it arrives. */
  reply?: { text: string; at: number };
}

const DAY = 86_400_000;
const REPLIES = ['Thanks, this is interesting. Can you tell me more?', 'Not right now, thanks.', 'Sure, send it over.', 'Who else do you work with in our space?'];

export class LinkedInWorld {
  readonly invitations: Invitation[] = [];
  readonly messages: SentMessage[] = [];
  private readonly initial = new Map<string, { person: Person; connectedAt: number }[]>();
  private readonly scripted: Map<string, ScriptedPerson>;
  private readonly o: Required<Omit<LinkedInWorldOptions, 'scripted'>>;

  constructor(options: LinkedInWorldOptions = {}) {
    this.o = {
      seed: 'linkedin',
      acceptRate: 0.35,
      declineRate: 0.1,
      decideAfterDays: [1, 6],
      replyRate: 0.25,
      replyAfterDays: [0.25, 3],
      noteLimit: 300,
      weeklyInvitationLimit: 100,
      ...options,
    };
    this.scripted = new Map(Object.entries(options.scripted ?? {}));
  }

  /** From now on this person does as told (as the `scripted` option says), by canonical profile URL. */
  script(profileUrl: string, person: ScriptedPerson): void {
    this.scripted.set(profileUrl, person);
  }

  get noteLimit(): number {
    return this.o.noteLimit;
  }

  /** People the account is connected with from the start. */
  addConnections(account: string, people: { person: Person; connectedAt: number }[]): void {
    this.initial.set(account, [...(this.initial.get(account) ?? []), ...people]);
  }

  stateOf(inv: Invitation, now: number): InvitationState {
    const decided = now >= inv.decidesAt;
    if (inv.withdrawnAt !== undefined && (inv.fate === 'ignore' || inv.withdrawnAt < inv.decidesAt || !decided)) return 'withdrawn';
    if (!decided || inv.fate === 'ignore') return 'pending';
    return inv.fate === 'accept' ? 'accepted' : 'declined';
  }

  /** Invitations sent by the account in the 7 days before `now`. */
  sentThisWeek(account: string, now: number): number {
    return this.invitations.filter((i) => i.account === account && i.sentAt > now - 7 * DAY && i.sentAt <= now).length;
  }

  weeklyLimitReached(account: string, now: number): boolean {
    return this.sentThisWeek(account, now) >= this.o.weeklyInvitationLimit;
  }

  pending(account: string, now: number): Invitation[] {
    return this.invitations.filter((i) => i.account === account && this.stateOf(i, now) === 'pending');
  }

  /** The account's connections at `now`, recently added first. */
  connections(account: string, now: number): { person: Person; connectedAt: number }[] {
    const accepted = this.invitations
      .filter((i) => i.account === account && this.stateOf(i, now) === 'accepted')
      .map((i) => ({ person: i.person, connectedAt: i.decidesAt }));
    return [...(this.initial.get(account) ?? []), ...accepted].filter((c) => c.connectedAt <= now).sort((a, b) => b.connectedAt - a.connectedAt);
  }

  isConnected(account: string, profileUrl: string, now: number): boolean {
    return this.connections(account, now).some((c) => c.person.profileUrl === profileUrl);
  }

  /** Sends an invitation; a reason when LinkedIn refuses this one. */
  invite(account: string, person: Person, note: string, now: number): string | undefined {
    if (note.length > this.o.noteLimit) return 'Message too long';
    if (this.isConnected(account, person.profileUrl, now)) return 'Already connected';
    if (this.invitations.some((i) => i.account === account && i.person.profileUrl === person.profileUrl && this.stateOf(i, now) === 'pending')) {
      return 'Invitation already pending';
    }
    const accepts = this.scripted.get(person.profileUrl)?.acceptAfterDays;
    const roll = this.draw('invite', account, person.profileUrl);
    const fate = accepts !== undefined || roll < this.o.acceptRate ? 'accept' : roll < this.o.acceptRate + this.o.declineRate ? 'decline' : 'ignore';
    const [min, max] = this.o.decideAfterDays;
    const decidesAt = now + Math.round((accepts ?? min + this.draw('delay', account, person.profileUrl) * (max - min)) * DAY);
    this.invitations.push({ account, person, note, sentAt: now, fate, decidesAt });
    return undefined;
  }

  /** Withdraws the account's pending invitation to this profile; false when there is none. */
  withdraw(account: string, profileUrl: string, now: number): boolean {
    const inv = this.invitations.find((i) => i.account === account && i.person.profileUrl === profileUrl && this.stateOf(i, now) === 'pending');
    if (!inv) return false;
    inv.withdrawnAt = now;
    return true;
  }

  /** Sends a message to a connection; a reason when it cannot go. */
  message(account: string, profileUrl: string, text: string, now: number): string | undefined {
    if (!this.isConnected(account, profileUrl, now)) return 'Not a 1st-degree connection: the message was not sent';
    const index = this.messages.filter((m) => m.account === account && m.profileUrl === profileUrl).length;
    const sent: SentMessage = { account, profileUrl, text, sentAt: now };
    const after = this.replyAfter(account, profileUrl, index);
    if (after !== undefined) sent.reply = { text: REPLIES[Math.floor(this.draw('reply-text', account, profileUrl, index) * REPLIES.length)]!, at: now + Math.round(after * DAY) };
    this.messages.push(sent);
    return undefined;
  }

  /** The account's threads at `now`, newest activity first: each one's last message and who sent it. */
  threads(account: string, now: number): { person: Person; lastMessage: string; lastMessageAt: number; fromMe: boolean }[] {
    const byProfile = new Map<string, { text: string; at: number; fromMe: boolean }[]>();
    for (const m of this.messages) {
      if (m.account !== account || m.sentAt > now) continue;
      const thread = byProfile.get(m.profileUrl) ?? [];
      thread.push({ text: m.text, at: m.sentAt, fromMe: true });
      if (m.reply && m.reply.at <= now) thread.push({ text: m.reply.text, at: m.reply.at, fromMe: false });
      byProfile.set(m.profileUrl, thread);
    }
    const people = new Map(this.connections(account, now).map((c) => [c.person.profileUrl, c.person]));
    return [...byProfile.entries()]
      .map(([url, thread]) => {
        const last = thread.sort((a, b) => a.at - b.at).at(-1)!;
        return { person: people.get(url) ?? personOf({ profileUrl: url }), lastMessage: last.text, lastMessageAt: last.at, fromMe: last.fromMe };
      })
      .sort((a, b) => b.lastMessageAt - a.lastMessageAt);
  }

  /** Days until the reply to the account's `index`th message to this profile, or undefined when none comes. */
  private replyAfter(account: string, profileUrl: string, index: number): number | undefined {
    const scripted = this.scripted.get(profileUrl)?.replyAfterDays;
    if (scripted !== undefined) return scripted !== false && index === 0 ? scripted : undefined;
    if (this.draw('reply', account, profileUrl, index) >= this.o.replyRate) return undefined;
    const [min, max] = this.o.replyAfterDays;
    return min + this.draw('reply-delay', account, profileUrl, index) * (max - min);
  }

  private draw(...parts: (string | number)[]): number {
    return createHash('sha256').update([this.o.seed, ...parts].join('\0')).digest().readUInt32BE(0) / 2 ** 32;
  }
}

const capital = (word: string) => word.charAt(0).toUpperCase() + word.slice(1);

/** A person from an input row: its names, else names made from the profile's slug. */
export function personOf(row: Record<string, unknown>): Person {
  const url = normaliseProfileUrl(String(row.profileUrl ?? row.linkedinProfileUrl ?? row.url ?? '')) ?? String(row.profileUrl ?? '');
  const slugWords = (/\/in\/([^/]+)\//.exec(url)?.[1] ?? '').split('-').filter((w) => /^[a-z]+$/.test(w)).map(capital);
  const text = (v: unknown) => (typeof v === 'string' && v.trim() ? v.trim() : undefined);
  const full = text(row.fullName) ?? text(row.name);
  const firstName = text(row.firstName) ?? full?.split(' ')[0] ?? slugWords[0] ?? '';
  const lastName = text(row.lastName) ?? (full ? full.split(' ').slice(1).join(' ') : slugWords.slice(1).join(' '));
  return { profileUrl: url, firstName, lastName, fullName: full ?? [firstName, lastName].filter(Boolean).join(' '), companyName: text(row.companyName) ?? text(row.company) };
}

/** The phantoms' #tag# placeholders filled from the row (and the person), case-sensitive; an unknown tag stays as written. */
export function fillTags(template: string, row: Record<string, unknown>, person: Person): string {
  const values: Record<string, unknown> = { ...row, firstName: person.firstName, lastName: person.lastName, fullName: person.fullName, company: person.companyName ?? row.company, companyName: person.companyName };
  return template.replace(/#([A-Za-z0-9_]+)#/g, (tag, name: string) => (name in values ? String(values[name] ?? '') : tag));
}
