import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { classify, PHANTOM_MESSAGES } from '../connectors/phantombuster/classify.ts';
import { PhantombusterClient, type PhantombusterAccount } from '../connectors/phantombuster/client.ts';
import { phantombusterConnector } from '../connectors/phantombuster/connector.ts';
import { normaliseProfileUrl } from '../connectors/phantombuster/profile-url.ts';
import { type PhantombusterSandbox, type PhantombusterSandboxOptions, startPhantombusterSandbox } from '../connectors/phantombuster/sandbox.ts';
import { ManualClock } from '../engine/clock.ts';
import { openConnector } from '../engine/connector-open.ts';
import { NonRetriableError } from '../engine/errors.ts';
import { silentLogger } from '../engine/log.ts';
import { eventually } from './helpers/eventually.ts';

const KEY = 'pb-test-key-81f2c4';
const DAY = 86_400_000;
const IDS = { connect: '101', message: '102', connections: '103', inbox: '104', withdraw: '105' } as const;
const ACCOUNTS: Record<string, PhantombusterAccount> = {
  main: {
    session_cookie: 'AQEDAT-cookie-of-main',
    agents: {
      connect: { id: IDS.connect, arguments: { numberOfAddsPerLaunch: 10 } },
      message: { id: IDS.message },
      connections: { id: IDS.connections },
      inbox: { id: IDS.inbox },
      withdraw: { id: IDS.withdraw },
    },
  },
};

let clock: ManualClock;
let sandbox: PhantombusterSandbox;
let client: PhantombusterClient;

async function start(options: PhantombusterSandboxOptions = {}) {
  sandbox = await startPhantombusterSandbox({
    apiKey: KEY,
    now: () => clock.now(),
    agents: Object.entries(IDS).map(([kind, id]) => ({ id, kind: kind as keyof typeof IDS, account: 'main' })),
    ...options,
  });
  client = new PhantombusterClient({ apiKey: KEY, baseUrl: sandbox.url, storageUrl: sandbox.storageUrl, accounts: ACCOUNTS, pollMs: 10_000, clock });
}

const people = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ url: `https://linkedin.com/in/person-${from + i}-ab12`, first: `First${from + i}`, company: `Co${from + i}` }));
const sheet = (rows: { url: string; first: string; company: string }[]) => sandbox.hostCsv(['profileUrl,firstName,companyName', ...rows.map((r) => `${r.url},${r.first},${r.company}`)].join('\n'));
const connect = (argument: Record<string, unknown>, bonusArgument?: Record<string, unknown>) => {
  const agent = client.agentFor('main', 'connect');
  return client.run(agent.id, { argument: { ...agent.argument, ...argument }, bonusArgument });
};

async function failure(call: Promise<unknown>): Promise<Error> {
  try {
    await call;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to fail');
}

beforeEach(() => {
  clock = new ManualClock(new Date('2026-11-23T09:00:00Z'));
});
afterEach(() => sandbox?.close());

describe('the client against the sandbox', () => {
  it('launches, polls on the injected clock until the container finishes, reads and classifies the result', async () => {
    await start();
    const startedAt = clock.now().getTime();
    const launched: string[] = [];
    const agent = client.agentFor('main', 'connect');
    expect(agent.argument).toMatchObject({ sessionCookie: 'AQEDAT-cookie-of-main', numberOfAddsPerLaunch: 10 });
    const run = await client.run(agent.id, { argument: { ...agent.argument, spreadsheetUrl: 'https://www.linkedin.com/in/jane-doe-42/', message: 'Hi #firstName#, saw your work.' } }, { onLaunched: (id) => void launched.push(id) });
    expect(run.outcome).toEqual({ kind: 'ok' });
    expect(launched).toEqual([run.containerId]);
    expect(run.container).toMatchObject({ status: 'finished', exitCode: 0 });
    expect(run.container.endedAt).toBeGreaterThan(run.container.createdAt);
    expect(clock.now().getTime() - startedAt).toBeGreaterThanOrEqual(60_000);
    expect(clock.sleeps.every((ms) => ms === 10_000)).toBe(true);
    expect(run.result).toEqual([expect.objectContaining({ profileUrl: 'https://www.linkedin.com/in/jane-doe-42/', message: 'Hi Jane, saw your work.', status: 'Invitation sent' })]);
    expect(run.output).toContain('Invitation sent to Jane Doe');
    expect(sandbox.launches[0]!.argument).toMatchObject({ sessionCookie: 'AQEDAT-cookie-of-main' });
    expect(sandbox.invitations('main').map((i) => i.state)).toEqual(['pending']);
  });

  it('a bonus argument counts for its launch only', async () => {
    await start();
    const input = sheet(people(4));
    await connect({ spreadsheetUrl: input, numberOfAddsPerLaunch: 1 }, { message: 'Hello #firstName# at #companyName#' });
    await connect({ spreadsheetUrl: input, numberOfAddsPerLaunch: 1 });
    expect(sandbox.launches.map((l) => l.argument.message)).toEqual(['Hello #firstName# at #companyName#', undefined]);
    expect(sandbox.launches[0]!.bonusArgument).toEqual({ message: 'Hello #firstName# at #companyName#' });
    expect(sandbox.invitations().map((i) => i.note)).toEqual(['Hello First0 at Co0', '']);
  });

  it('a wrong key is a NonRetriableError that says what to check and never shows the key', async () => {
    await start();
    const wrong = new PhantombusterClient({ apiKey: 'pb-wrong-0c9d', baseUrl: sandbox.url, clock });
    const err = await failure(wrong.launch(IDS.connect));
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/401, Phantombuster refused the API key: check connectors\.phantombuster\.api_key/);
    expect(err.message).not.toContain('pb-wrong-0c9d');
    expect(sandbox.launches).toHaveLength(0);
  });

  it('classifies each failure from the container and its output', async () => {
    await start({ linkedin: { weeklyInvitationLimit: 2 } });
    const one = 'https://www.linkedin.com/in/solo-person-1/';

    sandbox.expireSession('main');
    const expired = await connect({ spreadsheetUrl: one });
    expect(expired.container.exitCode).toBe(87);
    expect(expired.outcome.kind).toBe('session_expired');
    sandbox.renewSession('main');

    sandbox.disconnect('main');
    expect((await connect({ spreadsheetUrl: one })).outcome).toEqual({ kind: 'disconnected', message: expect.stringContaining('Disconnected by LinkedIn') });
    sandbox.reconnect('main');

    sandbox.rateLimit(clock.now().getTime() + DAY, 'main');
    expect((await connect({ spreadsheetUrl: one })).outcome.kind).toBe('rate_limited');
    clock.advance(DAY);

    sandbox.emptyRuns(1);
    const empty = await connect({ spreadsheetUrl: one });
    expect(empty.container.exitCode).toBe(0);
    expect(empty.outcome.kind).toBe('empty');
    expect(sandbox.invitations()).toHaveLength(0);

    const weekly = await connect({ spreadsheetUrl: sheet(people(3)) });
    expect(weekly.outcome.kind).toBe('weekly_invitation_limit');
    expect(sandbox.invitations()).toHaveLength(2);
    // A week later the rolling window has room again.
    clock.advance(7 * DAY);
    expect((await connect({ spreadsheetUrl: sheet(people(3)) })).outcome.kind).toBe('ok');
  });

  it('a note over the limit fails its row, and LinkedIn gets no invitation for it', async () => {
    await start({ linkedin: { noteLimit: 200 } });
    const run = await connect({ spreadsheetUrl: 'https://www.linkedin.com/in/long-note-7/', message: `Hi #firstName#, ${'x'.repeat(200)}` });
    expect(run.result).toEqual([expect.objectContaining({ error: PHANTOM_MESSAGES.messageTooLong })]);
    expect(sandbox.invitations()).toHaveLength(0);
  });

  it("the agent's result file accumulates across launches, and a launch with nothing left is empty", async () => {
    await start();
    const input = sheet(people(4));
    expect(await client.resultFile(IDS.connect)).toEqual([]);
    await connect({ spreadsheetUrl: input, numberOfAddsPerLaunch: 2, message: 'Hi #firstName#' });
    expect((await client.resultFile(IDS.connect)).map((r) => r.profileUrl)).toHaveLength(2);
    await connect({ spreadsheetUrl: input, numberOfAddsPerLaunch: 2, message: 'Hi #firstName#' });
    const file = await client.resultFile(IDS.connect);
    expect(file.map((r) => r.profileUrl)).toEqual(people(4).map((p) => normaliseProfileUrl(p.url)));
    expect(file[3]).toMatchObject({ firstName: 'First3', message: 'Hi First3', status: 'Invitation sent' });
    expect((await connect({ spreadsheetUrl: input, numberOfAddsPerLaunch: 2 })).outcome.kind).toBe('empty');
    expect(await client.agent(IDS.connect)).toMatchObject({ id: IDS.connect, orgS3Folder: expect.any(String), s3Folder: expect.any(String) });
  });

  it('invitations are accepted over the following days at about the configured rate; messages go to connections only and replies reach the inbox', async () => {
    await start({ linkedin: { seed: 'week-1', acceptRate: 0.35, replyRate: 0.5 } });
    for (let day = 0; day < 4; day++) {
      await connect({ spreadsheetUrl: sheet(people(20, day * 20)), numberOfAddsPerLaunch: 20, message: 'Hi #firstName#' });
      clock.advance(DAY);
    }
    const exportNow = async () => (await client.run(IDS.connections, {})).result as Record<string, string>[];
    clock.advance(10 * DAY);
    const connections = await exportNow();
    expect(connections.length).toBeGreaterThanOrEqual(80 * 0.2);
    expect(connections.length).toBeLessThanOrEqual(80 * 0.5);
    const times = connections.map((c) => Date.parse(c.connectedAt!));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(sandbox.invitations().filter((i) => i.state === 'accepted')).toHaveLength(connections.length);
    expect(sandbox.invitations().some((i) => i.state === 'pending')).toBe(true);

    const friend = connections[0]!.profileUrl!;
    const stranger = sandbox.invitations().find((i) => i.state !== 'accepted')!.person.profileUrl;
    const sent = await client.run(IDS.message, { argument: { spreadsheetUrl: `${friend}\n${stranger}`, message: 'Thanks #firstName#, here is your report.' } });
    expect(sent.result).toEqual([
      expect.objectContaining({ profileUrl: friend, status: 'Message sent' }),
      expect.objectContaining({ profileUrl: stranger, error: expect.stringContaining('Not a 1st-degree connection') }),
    ]);
    expect(sandbox.messages('main')).toHaveLength(1);

    for (const c of connections.slice(1)) await client.run(IDS.message, { argument: { spreadsheetUrl: c.profileUrl, message: 'Hello' } });
    clock.advance(4 * DAY);
    const threads = (await client.run(IDS.inbox, {})).result as Record<string, unknown>[];
    expect(threads).toHaveLength(connections.length);
    const replied = threads.filter((t) => t.isLastMessageFromMe === false);
    expect(replied.length).toBeGreaterThan(0);
    expect(replied.length).toBeLessThan(threads.length);
    expect(replied[0]).toMatchObject({ lastMessageFromUrl: replied[0]!.profileUrl, threadUrl: expect.stringContaining('linkedin.com/messaging/thread/') });
  });

  it('scripted people do as told whatever the seed draws; everyone else as drawn', async () => {
    const [early, quiet, drawn] = people(3).map((p) => normaliseProfileUrl(p.url)!) as [string, string, string];
    // Nobody would accept or reply by the draws: only the script makes it happen.
    await start({ linkedin: { acceptRate: 0, replyRate: 0, scripted: { [early]: { acceptAfterDays: 1, replyAfterDays: 0.5 }, [quiet]: { acceptAfterDays: 2, replyAfterDays: false } } } });
    await connect({ spreadsheetUrl: sheet(people(3)) });
    expect(sandbox.invitations().map((i) => [i.fate, i.decidesAt - i.sentAt])).toEqual([['accept', DAY], ['accept', 2 * DAY], [expect.not.stringMatching('accept'), expect.any(Number)]]);
    clock.advance(2 * DAY);
    for (const to of [early, quiet]) await client.run(IDS.message, { argument: { spreadsheetUrl: to, message: 'Here is your report.' } });
    await client.run(IDS.message, { argument: { spreadsheetUrl: early, message: 'And again.' } });
    const replies = sandbox.messages('main').map((m) => [m.profileUrl, m.reply ? m.reply.at - m.sentAt : null]);
    // The first message is answered half a day later; the ones after it, and the quiet person's, never.
    expect(replies).toEqual([[early, DAY / 2], [quiet, null], [early, null]]);
    expect(sandbox.invitations().find((i) => i.person.profileUrl === drawn)?.state).not.toBe('accepted');
  });

  it('a person scripted later does as told from then on', async () => {
    const later = normaliseProfileUrl(people(1)[0]!.url)!;
    await start({ linkedin: { acceptRate: 0, replyRate: 0 } });
    sandbox.world.script(later, { acceptAfterDays: 3, replyAfterDays: 1 });
    await connect({ spreadsheetUrl: later });
    clock.advance(3 * DAY);
    await client.run(IDS.message, { argument: { spreadsheetUrl: later, message: 'Your report.' } });
    const [invitation] = sandbox.invitations();
    expect([invitation!.state, invitation!.decidesAt - invitation!.sentAt]).toEqual(['accepted', 3 * DAY]);
    const [message] = sandbox.messages('main');
    expect(message!.reply!.at - message!.sentAt).toBe(DAY);
  });

  it('withdraws pending invitations: named ones, or all but the newest kept', async () => {
    await start({ linkedin: { acceptRate: 0, declineRate: 0 } });
    await connect({ spreadsheetUrl: sheet(people(3)) });
    clock.advance(DAY);
    await connect({ spreadsheetUrl: sheet(people(2, 3)) });
    await client.run(IDS.withdraw, { argument: { spreadsheetUrl: normaliseProfileUrl(people(1, 4)[0]!.url) } });
    await client.run(IDS.withdraw, { argument: { numberOfInvitationsToKeep: 1 } });
    expect(sandbox.invitations().map((i) => i.state)).toEqual(['withdrawn', 'withdrawn', 'withdrawn', 'pending', 'withdrawn']);
  });

  it('finds a launch again whose container id was lost, and says while it runs', async () => {
    await start();
    await connect({ spreadsheetUrl: 'https://www.linkedin.com/in/before-the-crash-1/' });
    clock.advance(DAY);
    const since = clock.now();
    expect(await client.launchedSince(IDS.connect, since)).toEqual([]);
    const agent = client.agentFor('main', 'connect');
    const { containerId } = await client.launch(agent.id, { argument: { ...agent.argument, spreadsheetUrl: 'https://www.linkedin.com/in/after-the-crash-2/' } });
    // The process dies here, before it records containerId; the next attempt looks first.
    const [found, ...more] = await client.launchedSince(IDS.connect, since);
    expect(found?.id).toBe(containerId);
    expect(more).toEqual([]);
    expect(await client.isRunning(IDS.connect)).toBe(true);
    const overlap = await failure(client.launch(agent.id, { argument: agent.argument }));
    expect(overlap.message).toMatch(/already running/);
    const resumed = await client.wait(found!.id);
    expect(resumed.outcome.kind).toBe('ok');
    expect(await client.isRunning(IDS.connect)).toBe(false);
    expect((await client.containers(IDS.connect)).map((c) => c.id)[0]).toBe(containerId);
    expect(sandbox.launches).toHaveLength(2);
  });

  it('holds a launch answer for launchAnswerMs: a client gone meanwhile never gets the container id, which runs and is listed', async () => {
    await start({ launchAnswerMs: 200 });
    const agent = client.agentFor('main', 'connect');
    const gone = new AbortController();
    const launching = client.launch(agent.id, { argument: { ...agent.argument, spreadsheetUrl: 'https://www.linkedin.com/in/killed-while-waiting-1/' } }, { signal: gone.signal });
    await eventually(() => sandbox.requests.some((r) => r.route === 'agents/launch' && r.containerId), 'the launch to be made');
    gone.abort(new Error('the process died'));
    expect((await failure(launching)).message).toBe('the process died');
    const [request] = sandbox.requests.filter((r) => r.route === 'agents/launch');
    expect(request).toMatchObject({ method: 'POST', id: IDS.connect, containerId: sandbox.launches[0]!.containerId });
    await eventually(() => request!.status === 200, 'the held answer to be let go');
    expect(request!.answered).toBe(false);
    expect((await client.launchedSince(IDS.connect, new Date(clock.now().getTime() - 1))).map((c) => c.id)).toEqual([request!.containerId]);
    expect(sandbox.invitations().map((i) => i.person.profileUrl)).toEqual(['https://www.linkedin.com/in/killed-while-waiting-1/']);
    expect(sandbox.requests.filter((r) => r.route === 'containers/fetch-all').every((r) => r.answered && r.id === IDS.connect)).toBe(true);
  });

  it('gives up waiting at the configured timeout as a retriable error, leaving the launch running', async () => {
    await start({ runMs: 60 * 60_000 });
    const slow = new PhantombusterClient({ apiKey: KEY, baseUrl: sandbox.url, storageUrl: sandbox.storageUrl, accounts: ACCOUNTS, pollMs: 60_000, runTimeoutMs: 5 * 60_000, clock });
    const err = await failure(slow.run(IDS.connections, {}));
    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/still running after 300000ms/);
    expect(await slow.isRunning(IDS.connections)).toBe(true);
  });
});

describe('classify (pure)', () => {
  const finished = { status: 'finished', exitCode: 0, endType: 'finished' };
  it.each([
    [{ ...finished, exitCode: 87 }, 'anything', 'session_expired'],
    [{ ...finished, exitCode: 1 }, "Error: Can't connect to LinkedIn with this session cookie.", 'session_expired'],
    [{ ...finished, exitCode: 1 }, 'Your session cookie is expired or invalid', 'session_expired'],
    [{ ...finished, exitCode: 1 }, '❌ Disconnected by LinkedIn', 'disconnected'],
    [{ ...finished, exitCode: 1 }, 'Rate limited: too many requests', 'rate_limited'],
    [{ ...finished, exitCode: 1 }, 'Weekly invitation limit reached', 'weekly_invitation_limit'],
    [{ ...finished, exitCode: 1 }, "You've reached the weekly invitation limit", 'weekly_invitation_limit'],
    [{ ...finished, exitCode: 1 }, 'Error: Maximum run time reached', 'failed'],
    [{ ...finished, exitCode: 0, endType: 'agent timeout' }, '', 'failed'],
    [finished, 'Process finished', 'empty'],
  ] as const)('%j with %j is %s', (container, output, kind) => {
    expect(classify(container, output, null).kind).toBe(kind);
  });

  it('a finished run with rows is ok; the same with an empty array is empty', () => {
    expect(classify(finished, '', [{ profileUrl: 'x' }])).toEqual({ kind: 'ok' });
    expect(classify(finished, '', []).kind).toBe('empty');
  });
});

describe('the connector', () => {
  it('under the sandbox, registers the configured agents so their ids work', async () => {
    const deps = { clock, log: silentLogger, env: {}, projectDir: 'pipelines', stateDir: '/tmp', prices: {} };
    const opened = await openConnector<PhantombusterClient>(phantombusterConnector, { connectors: { phantombuster: { accounts: ACCOUNTS } } }, deps);
    try {
      expect(opened.mode).toBe('sandbox');
      const agent = opened.client.agentFor('main', 'connect');
      expect(agent.id).toBe(IDS.connect);
      const run = await opened.client.run(agent.id, { argument: { ...agent.argument, spreadsheetUrl: 'https://www.linkedin.com/in/via-connector-9/' } });
      expect(run.outcome.kind).toBe('ok');
    } finally {
      await opened.close();
    }
  });

  it('with no account configured, the sandbox makes one with every agent', async () => {
    const deps = { clock, log: silentLogger, env: {}, projectDir: 'pipelines', stateDir: '/tmp', prices: {} };
    const opened = await openConnector<PhantombusterClient>(phantombusterConnector, { connectors: {} }, deps);
    try {
      expect(Object.keys(opened.client.accounts)).toEqual(['sandbox']);
      expect((await opened.client.run(opened.client.agentFor('sandbox', 'connections').id, {})).outcome.kind).toBe('empty');
    } finally {
      await opened.close();
    }
  });
});

describe('normaliseProfileUrl', () => {
  it('gives the canonical https://www.linkedin.com/in/<slug>/ form', () => {
    expect(normaliseProfileUrl('linkedin.com/in/Jane-Doe-42?trk=x')).toBe('https://www.linkedin.com/in/jane-doe-42/');
    expect(normaliseProfileUrl('https://fr.linkedin.com/in/jane-doe-42/')).toBe('https://www.linkedin.com/in/jane-doe-42/');
    expect(normaliseProfileUrl('https://www.linkedin.com/company/acme/')).toBeUndefined();
  });
});
