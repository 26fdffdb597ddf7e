import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse as parseCsv } from 'csv-parse/sync';
import type { AgentKind } from './client.ts';
import { PHANTOM_MESSAGES, SESSION_EXIT_CODE } from './classify.ts';
import { normaliseProfileUrl } from './profile-url.ts';
import { fillTags, type Invitation, type InvitationState, LinkedInWorld, type LinkedInWorldOptions, type Person, personOf, type SentMessage } from './sandbox-linkedin.ts';
import type { FaultControl } from '../sandbox/faults.ts';
import { type HttpFaultOptions, httpFaults } from '../sandbox/http-faults.ts';

/**
 * Phantombuster's API v2 on loopback, simulating LinkedIn (sandbox-linkedin.ts) on an
 * injected clock: the paths, the X-Phantombuster-Key header, the JSON shapes and the result
 * files of client.ts's notes. A launch runs at once (its effects happen at launch time) and
 * its container reports "running" until `runMs` later on the clock, then "finished" with
 * its exit code, console output and result object.
 *
 *   POST /api/v2/agents/launch            GET /api/v2/agents/fetch?id=
 *   GET  /api/v2/containers/fetch?id=     GET /api/v2/containers/fetch-all?agentId=
 *   GET  /api/v2/containers/fetch-output?id=   GET /api/v2/containers/fetch-result-object?id=
 *   GET  /s3/<orgS3Folder>/<s3Folder>/<csvName>.csv|.json   (the result files)
 *   GET  /sheets/<n>.csv                  (inputs put there with hostCsv)
 *
 * The phantoms, by kind, read these argument fields:
 * - connect (LinkedIn Auto Connect): spreadsheetUrl (one or more profile URLs, or the URL
 *   of a CSV it fetches), columnName (default: the profileUrl column, else the first one),
 *   message (the note, #tags# filled from the row), numberOfAddsPerLaunch (default 10).
 *   Rows already in its result file are skipped; a note over the limit fails that row
 *   ("Message too long"); the weekly invitation limit stops the run.
 * - message (LinkedIn Message Sender): spreadsheetUrl, columnName, message, profilesPerLaunch
 *   (default 10); a profile that is not a connection fails its row.
 * - connections (LinkedIn Connections Export): numberOfProfiles (default all), recently
 *   added first; its file is the latest export.
 * - inbox (LinkedIn Inbox Scraper): numberOfThreadsToScrape (default all); one row a thread.
 * - withdraw (LinkedIn Auto Invitation Withdrawer): spreadsheetUrl (these profiles), else
 *   numberOfInvitationsToKeep (default 1000: the newest kept, older pending ones withdrawn).
 */
export interface PhantombusterSandboxOptions {
  /** The key accepted in X-Phantombuster-Key (default "sandbox-key"). */
  apiKey?: string;
  /** The simulated time; the tests pass a ManualClock's. */
  now?: () => Date;
  /** How long a launch runs on that clock (default 60 s). */
  runMs?: number;
  /**
   * How long agents/launch holds its answer once the launch is made, in real milliseconds
   * (default 0). The container exists and runs meanwhile, so a client that dies while it waits
   * (a crash test's SIGKILL) never learns its id and must find it again among the agent's containers.
   */
  launchAnswerMs?: number;
  /** LinkedIn's behaviour: acceptance and reply rates, the note and weekly limits, the seed. */
  linkedin?: LinkedInWorldOptions;
  /** Agents there from the start. */
  agents?: SandboxAgentSpec[];
  /** Latency, 429s, 500s, silence, garbled bodies on the API (not the files). */
  faults?: HttpFaultOptions;
}

export interface SandboxAgentSpec {
  /** Default: a new numeric id. */
  id?: string;
  kind: AgentKind;
  /** The LinkedIn account it acts as (default "sandbox"). */
  account?: string;
  name?: string;
  /** Its saved argument. */
  argument?: Record<string, unknown>;
}

export interface SandboxLaunch {
  agentId: string;
  containerId: string;
  at: Date;
  /** What the run used: the launch's argument (or the saved one) with the bonus argument over it. */
  argument: Record<string, unknown>;
  bonusArgument?: Record<string, unknown>;
}

/** One API request as the sandbox saw it (the result files and hosted sheets are not counted). */
export interface SandboxRequest {
  method: string;
  /** Below /api/v2/, like "containers/fetch". */
  route: string;
  /** What it names: ?id=, else ?agentId=, else a launch's agent. */
  id: string;
  /** The container a launch made. */
  containerId?: string;
  /** The status answered; 0 until then. */
  status: number;
  /** Whether the answer reached the connection: false when the client went away first (killed while it waited). */
  answered: boolean;
  at: Date;
}

export interface SandboxContainer {
  id: string;
  agentId: string;
  createdAt: number;
  endsAt: number;
  exitCode: number;
  output: string;
  resultObject: unknown[] | null;
}

export interface PhantombusterSandbox {
  /** Base URL of API v2 (…/api/v2/). */
  readonly url: string;
  /** Root of the result files, for the client's storage_url. */
  readonly storageUrl: string;
  readonly world: LinkedInWorld;
  readonly faults: FaultControl<HttpFaultOptions>;
  /** Registers an agent and returns its id. */
  addAgent(spec: SandboxAgentSpec): string;
  /** Serves `csv` and returns its URL, for a spreadsheetUrl. */
  hostCsv(csv: string): string;
  /** The next launches of the account end with exit code 87 and the session cookie message, until renewSession. */
  expireSession(account?: string): void;
  renewSession(account?: string): void;
  /** The next launches of the account end "Disconnected by LinkedIn", until reconnect. */
  disconnect(account?: string): void;
  reconnect(account?: string): void;
  /** LinkedIn rate-limits the account until this time (epoch ms). */
  rateLimit(untilMs: number, account?: string): void;
  /** The next `n` launches finish with nothing done (exit 0, no result). */
  emptyRuns(n: number): void;
  /** People the account is connected with already. */
  addConnections(account: string, people: { profileUrl: string; firstName?: string; lastName?: string; connectedAt: Date }[]): void;
  /** Invitations with their state now. */
  invitations(account?: string): (Invitation & { state: InvitationState })[];
  messages(account?: string): SentMessage[];
  readonly launches: readonly SandboxLaunch[];
  readonly containers: readonly SandboxContainer[];
  /** Every API request, in the order they came. */
  readonly requests: readonly SandboxRequest[];
  /**
   * Calls `listener` as each API request arrives and as it is answered (a test that must act at
   * an exact moment, between two requests, sees every one); returns the unsubscribe.
   */
  onRequest(listener: (request: SandboxRequest) => void): () => void;
  /** Launches refused because the agent was running. */
  readonly overlaps: number;
  close(): Promise<void>;
}

/** The key the sandbox accepts unless told another. */
export const SANDBOX_API_KEY = 'sandbox-key';
export const SANDBOX_ORG_FOLDER = 'sandbox-org';

interface Agent {
  id: string;
  kind: AgentKind;
  account: string;
  name: string;
  s3Folder: string;
  argument: Record<string, unknown>;
  /** The cumulative result file's rows. */
  file: Record<string, unknown>[];
  /** The latest run's rows (the JSON file). */
  latest: Record<string, unknown>[];
}

interface AccountFlags {
  sessionExpired?: boolean;
  disconnected?: boolean;
  rateLimitedUntil?: number;
}

const DEFAULT_ACCOUNT = 'sandbox';

export async function startPhantombusterSandbox(options: PhantombusterSandboxOptions = {}): Promise<PhantombusterSandbox> {
  const apiKey = options.apiKey ?? SANDBOX_API_KEY;
  const now = () => (options.now ?? (() => new Date()))().getTime();
  const runMs = options.runMs ?? 60_000;
  const launchAnswerMs = options.launchAnswerMs ?? 0;
  const world = new LinkedInWorld(options.linkedin);
  const agents = new Map<string, Agent>();
  const flags = new Map<string, AccountFlags>();
  const sheets: string[] = [];
  const launches: SandboxLaunch[] = [];
  const containers: SandboxContainer[] = [];
  const requests: SandboxRequest[] = [];
  /** Answers held back by launchAnswerMs, let go at close. */
  const heldAnswers = new Set<() => void>();
  const listeners = new Set<(request: SandboxRequest) => void>();
  const notify = (request: SandboxRequest) => {
    for (const listener of [...listeners]) listener(request);
  };
  let overlaps = 0;
  let empties = 0;
  let nextAgent = 4_000_000_000_000_001;
  let nextContainer = 7_000_000_000_000_001;
  let url = '';

  const flagsOf = (account: string) => flags.get(account) ?? (flags.set(account, {}), flags.get(account)!);
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) => ({
    status,
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
  const faults = httpFaults(options.faults, {
    throttled: (seconds) => json(429, { status: 'error', error: 'Too many requests, please slow down' }, { 'retry-after': String(seconds) }),
    failed: (status) => json(status, { status: 'error', error: 'Internal server error' }),
  });

  const addAgent = (spec: SandboxAgentSpec): string => {
    const id = spec.id ?? String(nextAgent++);
    agents.set(id, {
      id,
      kind: spec.kind,
      account: spec.account ?? DEFAULT_ACCOUNT,
      name: spec.name ?? `${spec.kind} (${spec.account ?? DEFAULT_ACCOUNT})`,
      s3Folder: `agent-${id}`,
      argument: { ...spec.argument },
      file: [],
      latest: [],
    });
    return id;
  };
  for (const spec of options.agents ?? []) addAgent(spec);

  /** The input rows of a spreadsheetUrl: profile URLs written inline, or a CSV fetched over HTTP. */
  async function inputRows(argument: Record<string, unknown>): Promise<Record<string, unknown>[]> {
    const source = typeof argument.spreadsheetUrl === 'string' ? argument.spreadsheetUrl.trim() : '';
    if (!source) return [];
    const inline = source.split(/[\n,]+/).map((s) => s.trim()).filter(Boolean);
    if (inline.every((s) => normaliseProfileUrl(s))) return inline.map((s) => ({ profileUrl: s }));
    const response = await fetch(source);
    if (!response.ok) throw new Error(`Can't access input spreadsheet (${response.status})`);
    const rows = parseCsv(await response.text(), { columns: true, skip_empty_lines: true, bom: true, relax_column_count: true }) as Record<string, unknown>[];
    const column = typeof argument.columnName === 'string' && argument.columnName ? argument.columnName : rows[0] && 'profileUrl' in rows[0] ? 'profileUrl' : Object.keys(rows[0] ?? {})[0];
    return rows.map((row) => ({ ...row, profileUrl: column ? row[column] : undefined }));
  }

  const iso = (ms: number) => new Date(ms).toISOString();
  const personRow = (p: Person) => ({ profileUrl: p.profileUrl, fullName: p.fullName, firstName: p.firstName, lastName: p.lastName });

  /** One run of an agent at `at`: exit code, console lines, this run's rows. */
  async function execute(agent: Agent, argument: Record<string, unknown>, at: number): Promise<{ exitCode: number; lines: string[]; rows: Record<string, unknown>[] }> {
    const f = flagsOf(agent.account);
    const lines = [`ℹ️ Phantom ${agent.name} started`, 'ℹ️ Connecting to LinkedIn...'];
    if (f.sessionExpired) return { exitCode: SESSION_EXIT_CODE, lines: [...lines, `❌ ${PHANTOM_MESSAGES.sessionExpired}`], rows: [] };
    if (f.disconnected) return { exitCode: 1, lines: [...lines, `❌ ${PHANTOM_MESSAGES.disconnected}`], rows: [] };
    if (f.rateLimitedUntil !== undefined && at < f.rateLimitedUntil) return { exitCode: 1, lines: [...lines, `❌ ${PHANTOM_MESSAGES.rateLimited}`], rows: [] };
    if (empties > 0) {
      empties--;
      return { exitCode: 0, lines: [...lines, `⚠️ ${PHANTOM_MESSAGES.nothingToDo}`], rows: [] };
    }
    lines.push('✅ Connected to LinkedIn');
    let input: Record<string, unknown>[] = [];
    try {
      input = await inputRows(argument);
    } catch (err) {
      return { exitCode: 1, lines: [...lines, `❌ Error: ${(err as Error).message}`], rows: [] };
    }
    const rows: Record<string, unknown>[] = [];
    const stamp = { timestamp: iso(at) };
    const limit = (name: string, fallback: number) => (Number.isInteger(argument[name]) && (argument[name] as number) > 0 ? (argument[name] as number) : fallback);
    let exitCode = 0;

    switch (agent.kind) {
      case 'connect': {
        const done = new Set(agent.file.map((r) => String(r.profileUrl)));
        const todo = input.map((row) => ({ row, person: personOf(row) })).filter(({ person }) => !done.has(person.profileUrl));
        for (const { row, person } of todo.slice(0, limit('numberOfAddsPerLaunch', 10))) {
          if (!normaliseProfileUrl(person.profileUrl)) {
            rows.push({ ...personRow(person), error: 'Invalid URL', ...stamp });
            continue;
          }
          if (world.weeklyLimitReached(agent.account, at)) {
            lines.push(`❌ ${PHANTOM_MESSAGES.weeklyLimit}: LinkedIn allows no more invitations this week.`);
            exitCode = 1;
            break;
          }
          const note = typeof argument.message === 'string' ? fillTags(argument.message, row, person) : '';
          const refused = world.invite(agent.account, person, note, at);
          rows.push(refused ? { ...personRow(person), message: note, error: refused, ...stamp } : { ...personRow(person), message: note, status: 'Invitation sent', ...stamp });
          lines.push(refused ? `⚠️ ${person.profileUrl}: ${refused}` : `✅ Invitation sent to ${person.fullName}`);
        }
        break;
      }
      case 'message': {
        for (const row of input.slice(0, limit('profilesPerLaunch', 10))) {
          const person = personOf(row);
          const text = typeof argument.message === 'string' ? fillTags(argument.message, row, person) : '';
          const refused = world.message(agent.account, person.profileUrl, text, at);
          rows.push(refused ? { ...personRow(person), message: text, error: refused, ...stamp } : { ...personRow(person), message: text, status: 'Message sent', ...stamp });
          lines.push(refused ? `⚠️ ${person.profileUrl}: ${refused}` : `✅ Message sent to ${person.fullName}`);
        }
        break;
      }
      case 'connections': {
        for (const c of world.connections(agent.account, at).slice(0, limit('numberOfProfiles', Number.MAX_SAFE_INTEGER))) {
          rows.push({ ...personRow(c.person), connectedAt: iso(c.connectedAt), connectionSince: iso(c.connectedAt), ...stamp });
        }
        lines.push(`✅ ${rows.length} connections exported (recently added first)`);
        break;
      }
      case 'inbox': {
        for (const t of world.threads(agent.account, at).slice(0, limit('numberOfThreadsToScrape', Number.MAX_SAFE_INTEGER))) {
          rows.push({
            ...personRow(t.person),
            threadUrl: `https://www.linkedin.com/messaging/thread/${Buffer.from(`${agent.account}|${t.person.profileUrl}`).toString('base64url')}/`,
            lastMessage: t.lastMessage,
            lastMessageDate: iso(t.lastMessageAt),
            lastMessageFromUrl: t.fromMe ? `https://www.linkedin.com/in/${agent.account}/` : t.person.profileUrl,
            isLastMessageFromMe: t.fromMe,
            ...stamp,
          });
        }
        lines.push(`✅ ${rows.length} threads scraped`);
        break;
      }
      case 'withdraw': {
        const targets = input.length
          ? input.map((row) => personOf(row).profileUrl)
          : world
              .pending(agent.account, at)
              .sort((a, b) => b.sentAt - a.sentAt)
              .slice(limit('numberOfInvitationsToKeep', 1000))
              .map((i) => i.person.profileUrl);
        for (const profileUrl of targets) {
          const withdrawn = world.withdraw(agent.account, profileUrl, at);
          rows.push(withdrawn ? { profileUrl, status: 'Invitation withdrawn', ...stamp } : { profileUrl, error: 'No pending invitation', ...stamp });
        }
        break;
      }
    }
    if (rows.length === 0 && exitCode === 0) lines.push(`⚠️ ${PHANTOM_MESSAGES.nothingToDo}`);
    return { exitCode, lines: [...lines, exitCode === 0 ? '✅ Process finished successfully' : '❌ Process finished with an error'], rows };
  }

  const view = (c: SandboxContainer, at: number) => {
    const finished = at >= c.endsAt;
    return {
      id: c.id,
      agentId: c.agentId,
      status: finished ? 'finished' : 'running',
      createdAt: c.createdAt,
      launchedAt: c.createdAt,
      launchType: 'manual',
      ...(finished ? { endedAt: c.endsAt, endType: 'finished', exitCode: c.exitCode, exitMessage: 'finished' } : {}),
      retryNumber: 0,
    };
  };

  async function launch(body: Record<string, unknown>, at: number): Promise<{ status: number; body: unknown }> {
    const agent = agents.get(String(body.id ?? ''));
    if (!agent) return { status: 404, body: { status: 'error', error: 'Agent not found' } };
    if (containers.some((c) => c.agentId === agent.id && at < c.endsAt)) {
      overlaps++;
      return { status: 400, body: { status: 'error', error: 'Maximum parallel executions reached: the agent is already running' } };
    }
    const parse = (v: unknown) => (typeof v === 'string' ? (JSON.parse(v) as Record<string, unknown>) : (v as Record<string, unknown> | undefined));
    const given = parse(body.argument ?? body.arguments);
    const bonus = parse(body.bonusArgument);
    const argument = { ...(given ?? agent.argument), ...bonus };
    if (body.saveArgument === true && given) agent.argument = given;
    const id = String(nextContainer++);
    launches.push({ agentId: agent.id, containerId: id, at: new Date(at), argument, ...(bonus ? { bonusArgument: bonus } : {}) });
    const run = await execute(agent, argument, at);
    if (run.rows.length) {
      agent.latest = run.rows;
      agent.file = agent.kind === 'connections' || agent.kind === 'inbox' ? run.rows : [...agent.file, ...run.rows];
    }
    containers.push({ id, agentId: agent.id, createdAt: at, endsAt: at + runMs, exitCode: run.exitCode, output: run.lines.join('\n'), resultObject: run.rows.length ? run.rows : null });
    return { status: 200, body: { containerId: id } };
  }

  const readBody = (req: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });

  const csvOf = (rows: Record<string, unknown>[]) => {
    const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    const cell = (v: unknown) => {
      const s = v === undefined || v === null ? '' : String(v);
      return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
    };
    return [columns.join(','), ...rows.map((r) => columns.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
  };

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const u = new URL(req.url ?? '/', 'http://sandbox');
    const plain = (status: number, text: string, type = 'text/plain') => {
      res.writeHead(status, { 'content-type': type });
      res.end(text);
    };
    const sheet = /^\/sheets\/(\d+)\.csv$/.exec(u.pathname);
    if (sheet) return sheets[Number(sheet[1])] === undefined ? plain(404, 'Not found') : plain(200, sheets[Number(sheet[1])]!, 'text/csv');
    const file = /^\/s3\/([^/]+)\/([^/]+)\/([^/]+)\.(csv|json)$/.exec(u.pathname);
    if (file) {
      const agent = [...agents.values()].find((a) => a.s3Folder === decodeURIComponent(file[2]!));
      const name = agent && (typeof agent.argument.csvName === 'string' && agent.argument.csvName ? agent.argument.csvName : 'result');
      if (!agent || decodeURIComponent(file[1]!) !== SANDBOX_ORG_FOLDER || decodeURIComponent(file[3]!) !== name || agent.file.length === 0) {
        // S3 answers 403 to a missing key of a bucket one may not list.
        return plain(403, '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>', 'application/xml');
      }
      return file[4] === 'csv' ? plain(200, csvOf(agent.file), 'text/csv') : plain(200, JSON.stringify(agent.latest), 'application/json');
    }

    const route = u.pathname.replace(/^\/api\/v2\//, '');
    const seen: SandboxRequest = { method: req.method ?? 'GET', route, id: u.searchParams.get('id') ?? u.searchParams.get('agentId') ?? '', status: 0, answered: false, at: new Date(now()) };
    requests.push(seen);
    res.on('finish', () => {
      seen.answered = true;
      notify(seen);
    });
    notify(seen);
    const reply = (status: number, body: unknown, fault?: ReturnType<typeof faults.decide>) => {
      seen.status = status;
      faults.send(res, json(status, body), fault);
    };
    const key = req.headers['x-phantombuster-key'] ?? req.headers['x-phantombuster-key-1'];
    if (!key) return reply(401, { status: 'error', error: 'Missing API key: set the X-Phantombuster-Key header' });
    if (key !== apiKey) return reply(401, { status: 'error', error: 'Invalid API key' });
    const fault = faults.decide({ identity: `${req.method} ${route}${u.search}` });
    if (faults.intercept(res, fault)) return;
    const at = now();
    const id = u.searchParams.get('id') ?? '';
    const container = containers.find((c) => c.id === id);

    if (req.method === 'POST' && route === 'agents/launch') {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse((await readBody(req)) || '{}') as Record<string, unknown>;
      } catch {
        return reply(400, { status: 'error', error: 'Body is not valid JSON' });
      }
      seen.id = String(body.id ?? '');
      const answer = await launch(body, at);
      if (answer.status === 200) seen.containerId = (answer.body as { containerId: string }).containerId;
      if (launchAnswerMs > 0) await holdAnswer(launchAnswerMs);
      return reply(answer.status, answer.body, fault);
    }
    if (req.method !== 'GET') return reply(405, { status: 'error', error: `${req.method} not allowed` });
    switch (route) {
      case 'agents/fetch': {
        const agent = agents.get(id);
        if (!agent) return reply(404, { status: 'error', error: 'Agent not found' });
        return reply(200, { id: agent.id, name: agent.name, scriptId: agent.kind, s3Folder: agent.s3Folder, orgS3Folder: SANDBOX_ORG_FOLDER, argument: JSON.stringify(agent.argument), launchType: 'manually' }, fault);
      }
      case 'containers/fetch':
        return container ? reply(200, view(container, at), fault) : reply(404, { status: 'error', error: 'Container not found' });
      case 'containers/fetch-output':
        if (!container) return reply(404, { status: 'error', error: 'Container not found' });
        return reply(200, { output: container.output, status: view(container, at).status }, fault);
      case 'containers/fetch-result-object':
        if (!container) return reply(404, { status: 'error', error: 'Container not found' });
        return reply(200, { resultObject: at >= container.endsAt && container.resultObject ? JSON.stringify(container.resultObject) : null }, fault);
      case 'containers/fetch-all': {
        const agentId = u.searchParams.get('agentId') ?? '';
        if (!agents.has(agentId)) return reply(404, { status: 'error', error: 'Agent not found' });
        const list = containers.filter((c) => c.agentId === agentId).sort((a, b) => b.createdAt - a.createdAt).map((c) => view(c, at));
        const limit = Number(u.searchParams.get('limit') ?? 0);
        return reply(200, { containers: limit > 0 ? list.slice(0, limit) : list, maxLimitReached: limit > 0 && list.length > limit }, fault);
      }
      default:
        return reply(404, { status: 'error', error: `No endpoint at ${u.pathname}` });
    }
  }

  const holdAnswer = (ms: number) =>
    new Promise<void>((resolve) => {
      const release = () => {
        clearTimeout(timer);
        heldAnswers.delete(release);
        resolve();
      };
      const timer = setTimeout(release, ms);
      heldAnswers.add(release);
    });

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'error', error: err.message }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}`;
  const forAccount = <T extends { account: string }>(list: T[], account?: string) => (account ? list.filter((x) => x.account === account) : [...list]);

  return {
    url: `${url}/api/v2/`,
    storageUrl: `${url}/s3/`,
    world,
    faults: faults.control,
    addAgent,
    hostCsv(csv) {
      sheets.push(csv);
      return `${url}/sheets/${sheets.length - 1}.csv`;
    },
    expireSession: (account = DEFAULT_ACCOUNT) => void (flagsOf(account).sessionExpired = true),
    renewSession: (account = DEFAULT_ACCOUNT) => void (flagsOf(account).sessionExpired = false),
    disconnect: (account = DEFAULT_ACCOUNT) => void (flagsOf(account).disconnected = true),
    reconnect: (account = DEFAULT_ACCOUNT) => void (flagsOf(account).disconnected = false),
    rateLimit: (untilMs, account = DEFAULT_ACCOUNT) => void (flagsOf(account).rateLimitedUntil = untilMs),
    emptyRuns: (n) => void (empties = n),
    addConnections(account, people) {
      world.addConnections(account, people.map((p) => ({ person: personOf(p), connectedAt: p.connectedAt.getTime() })));
    },
    invitations: (account) => forAccount(world.invitations, account).map((i) => ({ ...i, state: world.stateOf(i, now()) })),
    messages: (account) => forAccount(world.messages, account),
    launches,
    containers,
    requests,
    onRequest(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    get overlaps() {
      return overlaps;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const release of [...heldAnswers]) release();
        faults.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
