import { type Static, Type } from '@sinclair/typebox';
import { parse as parseCsv } from 'csv-parse/sync';
import { DURATION_PATTERN, NonRetriableError, parseDuration, RetryAfterError, retryAfterMs } from '../../engine/sdk.ts';
import { classify, type RunOutcome } from './classify.ts';

/**
 * Phantombuster's API v2, as the LinkedIn outreach needs it: launch a phantom (an "agent")
 * with this launch's arguments, follow its run (a "container") to the end, read what it
 * printed and produced, and classify the end (classify.ts).
 *
 * The wire format, as Phantombuster documents it (hub.phantombuster.com "API" and the API v2
 * reference; its assistant's notes in phantombuster/mcp-skill-public):
 *
 * - Base https://api.phantombuster.com/api/v2/; the key in the `X-Phantombuster-Key` header
 *   (older clients send `X-Phantombuster-Key-1`); JSON bodies; v2 times are epoch milliseconds.
 * - POST agents/launch { id, argument?, bonusArgument?, manualLaunch? } -> { containerId }.
 *   `argument` replaces the saved one for this launch (saveArgument not set, so it is not
 *   kept); `bonusArgument` is single-use, merged for this launch only.
 * - GET containers/fetch?id= -> { id, agentId?, status ("starting" | "running" |
 *   "finished" ...), createdAt, launchedAt?, endedAt?, endType?, exitCode?, ... }.
 * - GET containers/fetch-output?id= -> { output } (the console text).
 * - GET containers/fetch-result-object?id= -> { resultObject } (a JSON string, or null).
 * - GET containers/fetch-all?agentId=&limit= -> { containers: [...], maxLimitReached }.
 * - GET agents/fetch?id= -> { id, name, scriptId?, s3Folder, orgS3Folder, argument? (a JSON
 *   string) ... }. The cumulative results are files at
 *   https://phantombuster.s3.amazonaws.com/{orgS3Folder}/{s3Folder}/{csvName}.csv
 *   (result.csv without csvName): the CSV accumulates across launches (fileMgmt "mix", the
 *   default), the JSON beside it holds the latest run only, so the CSV is read first.
 * - A bad key: 401 (or 403) with { error } or { message }. Too many calls: 429.
 *
 * Every object is parsed by the documented names and extra fields are kept, not refused.
 *
 * Two launches on one LinkedIn account must never overlap. This client gives the primitives
 * (`isRunning`, `launchedSince`); holding a lock across processes is the caller's job
 * (the linkedin steps hold a database lock around a launch): an in-process mutex would not
 * stop a second worker.
 */

export const PHANTOMBUSTER_API_URL = 'https://api.phantombuster.com/api/v2/';
export const PHANTOMBUSTER_STORAGE_URL = 'https://phantombuster.s3.amazonaws.com/';

/** A webhook secret shorter than this keeps the route closed: it is all that guards the URL. */
export const WEBHOOK_SECRET_MIN_LENGTH = 16;

export const AGENT_KINDS = ['connect', 'message', 'connections', 'inbox', 'withdraw'] as const;
export type AgentKind = (typeof AGENT_KINDS)[number];

/** One phantom of an account: its agent id and its launch argument. */
const agentSchema = (what: string) =>
  Type.Object(
    {
      id: Type.String({ minLength: 1, description: "The agent's id (the number in its phantombuster.com URL)." }),
      arguments: Type.Optional(
        Type.Record(Type.String(), Type.Unknown(), { description: "This phantom's launch argument (its manifest's field names), merged under each launch's own." }),
      ),
    },
    { additionalProperties: false, description: what },
  );

const AccountSchema = Type.Object(
  {
    session_cookie: Type.Optional(
      Type.String({ minLength: 1, description: "The account's li_at cookie, through ${{ env.LINKEDIN_SESSION_COOKIE }}; sent as sessionCookie in each launch when set (else the agent's connected identity is used)." }),
    ),
    agents: Type.Object(
      {
        connect: agentSchema('LinkedIn Auto Connect: invitations with a note (spreadsheetUrl, message, numberOfAddsPerLaunch).'),
        message: agentSchema('LinkedIn Message Sender: a message to a 1st-degree connection (spreadsheetUrl, message, profilesPerLaunch).'),
        connections: agentSchema('LinkedIn Connections Export: the connections, recently added first.'),
        inbox: agentSchema('LinkedIn Inbox Scraper: the threads, with their last message and who sent it.'),
        withdraw: Type.Optional(agentSchema('LinkedIn Auto Invitation Withdrawer: withdraws pending invitations.')),
      },
      { additionalProperties: false, description: "The account's phantoms, by what they do." },
    ),
  },
  { additionalProperties: false, description: 'One LinkedIn identity and its phantoms.' },
);
export type PhantombusterAccount = Static<typeof AccountSchema>;

/** `connectors.phantombuster` in the engine config. */
export const PhantombusterConfigSchema = Type.Object(
  {
    api_key: Type.Optional(Type.String({ minLength: 1, description: 'The workspace API key, through ${{ env.PHANTOMBUSTER_API_KEY }}; never logged. Unset, the sandbox answers.' })),
    base_url: Type.String({ pattern: '^https?://', default: PHANTOMBUSTER_API_URL, description: "Root of API v2; the sandbox's url in tests." }),
    storage_url: Type.String({ pattern: '^https?://', default: PHANTOMBUSTER_STORAGE_URL, description: "Where the agents' result files are served (their org and agent folders below it)." }),
    poll: Type.String({ pattern: DURATION_PATTERN, default: '10s', description: "How often a running launch's container is checked, like \"10s\"." }),
    timeout: Type.String({ pattern: DURATION_PATTERN, default: '30m', description: 'How long a launch may run before the wait gives up (the launch goes on; it is found again by its container).' }),
    request_timeout: Type.String({ pattern: DURATION_PATTERN, default: '30s', description: 'How long one API request may take.' }),
    webhook_secret: Type.Optional(
      Type.String({
        description: `The secret in the path of the daemon's POST /hooks/phantombuster/<secret>, the URL set as each agent's webhook, through \${{ env.PHANTOMBUSTER_WEBHOOK_SECRET }}: a long random string (at least ${WEBHOOK_SECRET_MIN_LENGTH} characters). Unset or shorter: the route answers 404.`,
      }),
    ),
    accounts: Type.Record(Type.String({ pattern: '^[a-z0-9_-]+$' }), AccountSchema, {
      default: {},
      description: 'LinkedIn identities by name, each with its session cookie and its phantoms; the sandbox makes one ("sandbox") when none is set.',
    }),
  },
  { additionalProperties: false },
);
export type PhantombusterConfig = Static<typeof PhantombusterConfigSchema>;

/** A run as containers/fetch describes it (extra fields kept). */
export interface Container {
  id: string;
  agentId?: string;
  status: string;
  exitCode?: number | null;
  endType?: string | null;
  exitMessage?: string | null;
  /** Epoch ms. */
  createdAt: number;
  launchedAt?: number | null;
  endedAt?: number | null;
  [field: string]: unknown;
}

/** An agent as agents/fetch describes it (extra fields kept). */
export interface AgentRecord {
  id: string;
  name?: string;
  s3Folder: string;
  orgS3Folder: string;
  /** The saved launch argument, parsed. */
  argument: Record<string, unknown>;
  [field: string]: unknown;
}

export interface LaunchArguments {
  /** This launch's argument (replaces the saved one for this launch). */
  argument?: Record<string, unknown>;
  /** Single-use additions for this launch only. */
  bonusArgument?: Record<string, unknown>;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface RunOptions extends CallOptions {
  /** Called with the container id as soon as the launch answers, before any wait: record it. */
  onLaunched?(containerId: string): void | Promise<void>;
}

export interface RunResult {
  containerId: string;
  container: Container;
  output: string;
  /** The parsed result object (JSON), or null. */
  result: unknown;
  outcome: RunOutcome;
}

/** What the linkedin steps get from `ctx.use(phantombusterConnector)`. */
export interface PhantombusterApi {
  /** The configured accounts by name. */
  readonly accounts: Readonly<Record<string, PhantombusterAccount>>;
  /** The agent of one kind of an account, and its launch argument: configured arguments plus the session cookie. */
  agentFor(account: string, kind: AgentKind): { id: string; argument: Record<string, unknown> };
  launch(agentId: string, args?: LaunchArguments, options?: CallOptions): Promise<{ containerId: string }>;
  container(containerId: string, options?: CallOptions): Promise<Container>;
  output(containerId: string, options?: CallOptions): Promise<string>;
  resultObject(containerId: string, options?: CallOptions): Promise<unknown>;
  /** The agent's containers, newest first. */
  containers(agentId: string, options?: CallOptions & { limit?: number }): Promise<Container[]>;
  /** The newest container created at or after `since`: a launch whose id was lost before it was recorded. */
  launchedSince(agentId: string, since: Date, options?: CallOptions): Promise<Container[]>;
  /** Whether one of the agent's containers is starting or running. */
  isRunning(agentId: string, options?: CallOptions): Promise<boolean>;
  agent(agentId: string, options?: CallOptions): Promise<AgentRecord>;
  /** The rows of the agent's cumulative result file (CSV, else JSON); [] before its first run. */
  resultFile(agentId: string, options?: CallOptions): Promise<Record<string, unknown>[]>;
  /** Polls a launched container to its end (on the injected clock), then reads and classifies it. */
  wait(containerId: string, options?: CallOptions): Promise<RunResult>;
  /** launch, then wait. */
  run(agentId: string, args: LaunchArguments, options?: RunOptions): Promise<RunResult>;
}

export interface PhantombusterClientOptions {
  apiKey: string;
  baseUrl?: string;
  storageUrl?: string;
  accounts?: Record<string, PhantombusterAccount>;
  pollMs?: number;
  /** How long wait() follows a container. */
  runTimeoutMs?: number;
  requestTimeoutMs?: number;
  fetch?: typeof fetch;
  clock?: { now(): Date; sleep(ms: number, signal?: AbortSignal): Promise<void> };
}

/** Phantombuster answered 404: no such container or agent in this workspace. */
export class PhantombusterNotFoundError extends NonRetriableError {
  override readonly name: string = 'PhantombusterNotFoundError';
}

const FINAL_STATUSES = new Set(['finished', 'launch error', 'never launched', 'unknown']);
/** Whether the container's run has ended (what wait() polls for). */
export const isFinal = (c: Container) => FINAL_STATUSES.has(c.status) || (c.endedAt != null && c.status !== 'running' && c.status !== 'starting');

export class PhantombusterClient implements PhantombusterApi {
  readonly accounts: Readonly<Record<string, PhantombusterAccount>>;
  private readonly baseUrl: string;
  private readonly storageUrl: string;
  private readonly fetch: typeof fetch;
  private readonly clock: NonNullable<PhantombusterClientOptions['clock']>;
  private readonly secrets: string[];

  constructor(private readonly options: PhantombusterClientOptions) {
    this.baseUrl = (options.baseUrl ?? PHANTOMBUSTER_API_URL).replace(/\/?$/, '/');
    this.storageUrl = (options.storageUrl ?? PHANTOMBUSTER_STORAGE_URL).replace(/\/?$/, '/');
    this.accounts = options.accounts ?? {};
    this.fetch = options.fetch ?? globalThis.fetch;
    this.clock = options.clock ?? { now: () => new Date(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };
    const cookies = Object.values(this.accounts).map((a) => a.session_cookie ?? '');
    this.secrets = [options.apiKey, ...cookies].filter((s) => s.length > 0);
  }

  agentFor(account: string, kind: AgentKind): { id: string; argument: Record<string, unknown> } {
    const found = this.accounts[account];
    if (!found) throw new NonRetriableError(`Phantombuster: no account "${account}" under connectors.phantombuster.accounts (have: ${Object.keys(this.accounts).join(', ') || 'none'})`);
    const agent = found.agents[kind];
    if (!agent) throw new NonRetriableError(`Phantombuster: account "${account}" has no ${kind} agent (set connectors.phantombuster.accounts.${account}.agents.${kind}.id)`);
    const argument = { ...agent.arguments, ...(found.session_cookie ? { sessionCookie: found.session_cookie } : {}) };
    return { id: agent.id, argument };
  }

  async launch(agentId: string, args: LaunchArguments = {}, options: CallOptions = {}): Promise<{ containerId: string }> {
    const body: Record<string, unknown> = { id: agentId, manualLaunch: true };
    if (args.argument) body.argument = args.argument;
    if (args.bonusArgument) body.bonusArgument = args.bonusArgument;
    const answer = await this.call('POST', 'agents/launch', `launch of agent ${agentId}`, { body, signal: options.signal });
    const containerId = field(answer, 'containerId', `launch of agent ${agentId}`);
    return { containerId: String(containerId) };
  }

  async container(containerId: string, options: CallOptions = {}): Promise<Container> {
    const where = `container ${containerId}`;
    return toContainer(await this.call('GET', 'containers/fetch', where, { query: { id: containerId }, signal: options.signal }), where);
  }

  async output(containerId: string, options: CallOptions = {}): Promise<string> {
    const answer = await this.call('GET', 'containers/fetch-output', `output of container ${containerId}`, { query: { id: containerId }, signal: options.signal });
    const output = (answer as { output?: unknown }).output;
    return typeof output === 'string' ? output : '';
  }

  async resultObject(containerId: string, options: CallOptions = {}): Promise<unknown> {
    const where = `result object of container ${containerId}`;
    const answer = await this.call('GET', 'containers/fetch-result-object', where, { query: { id: containerId }, signal: options.signal });
    const raw = (answer as { resultObject?: unknown }).resultObject;
    if (raw === null || raw === undefined || raw === '') return null;
    if (typeof raw !== 'string') return raw;
    try {
      return JSON.parse(raw);
    } catch {
      throw new NonRetriableError(`Phantombuster ${where}: resultObject is not JSON: ${this.scrub(raw.slice(0, 120))}`);
    }
  }

  async containers(agentId: string, options: CallOptions & { limit?: number } = {}): Promise<Container[]> {
    const where = `containers of agent ${agentId}`;
    const query: Record<string, string> = { agentId, mode: 'all' };
    if (options.limit) query.limit = String(options.limit);
    const answer = await this.call('GET', 'containers/fetch-all', where, { query, signal: options.signal });
    const list = (answer as { containers?: unknown }).containers;
    if (!Array.isArray(list)) throw new NonRetriableError(`Phantombuster ${where}: expected { containers: [...] }, got ${this.scrub(JSON.stringify(answer).slice(0, 120))}`);
    return list.map((c) => toContainer(c, where)).sort((a, b) => b.createdAt - a.createdAt);
  }

  /** The agent's containers created at or after `since`, oldest first: where a launch whose id was lost is found again. */
  async launchedSince(agentId: string, since: Date, options: CallOptions = {}): Promise<Container[]> {
    return (await this.containers(agentId, options)).filter((c) => c.createdAt >= since.getTime()).sort((a, b) => a.createdAt - b.createdAt);
  }

  async isRunning(agentId: string, options: CallOptions = {}): Promise<boolean> {
    return (await this.containers(agentId, options)).some((c) => !isFinal(c));
  }

  async agent(agentId: string, options: CallOptions = {}): Promise<AgentRecord> {
    const where = `agent ${agentId}`;
    const answer = (await this.call('GET', 'agents/fetch', where, { query: { id: agentId }, signal: options.signal })) as Record<string, unknown>;
    for (const name of ['s3Folder', 'orgS3Folder'] as const) {
      if (typeof answer[name] !== 'string' || !answer[name]) throw new NonRetriableError(`Phantombuster ${where}: expected ${name} (a folder name), got ${JSON.stringify(answer[name])}`);
    }
    let argument: Record<string, unknown> = {};
    if (typeof answer.argument === 'string' && answer.argument.trim()) {
      try {
        argument = JSON.parse(answer.argument) as Record<string, unknown>;
      } catch {
        argument = {};
      }
    } else if (answer.argument && typeof answer.argument === 'object') argument = answer.argument as Record<string, unknown>;
    return { ...answer, id: String(answer.id ?? agentId), s3Folder: answer.s3Folder as string, orgS3Folder: answer.orgS3Folder as string, argument };
  }

  async resultFile(agentId: string, options: CallOptions = {}): Promise<Record<string, unknown>[]> {
    const agent = await this.agent(agentId, options);
    const name = typeof agent.argument.csvName === 'string' && agent.argument.csvName ? agent.argument.csvName : 'result';
    const folder = `${encodeURIComponent(agent.orgS3Folder)}/${encodeURIComponent(agent.s3Folder)}/${encodeURIComponent(name)}`;
    const csv = await this.file(`${folder}.csv`, options);
    if (csv !== undefined) {
      try {
        return parseCsv(csv, { columns: true, skip_empty_lines: true, bom: true, relax_column_count: true }) as Record<string, unknown>[];
      } catch (err) {
        throw new NonRetriableError(`Phantombuster result file of agent ${agentId}: not CSV: ${(err as Error).message}`);
      }
    }
    const json = await this.file(`${folder}.json`, options);
    if (json === undefined) return [];
    try {
      const rows = JSON.parse(json) as unknown;
      return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [rows as Record<string, unknown>];
    } catch {
      throw new NonRetriableError(`Phantombuster result file of agent ${agentId}: not JSON`);
    }
  }

  async wait(containerId: string, options: CallOptions = {}): Promise<RunResult> {
    const pollMs = this.options.pollMs ?? 10_000;
    const limitMs = this.options.runTimeoutMs ?? 30 * 60_000;
    const started = this.clock.now().getTime();
    let container = await this.container(containerId, options);
    while (!isFinal(container)) {
      if (this.clock.now().getTime() - started >= limitMs) {
        // Retriable: the launch goes on, and the next attempt finds it again by its id.
        throw new Error(`Phantombuster container ${containerId}: still ${container.status} after ${limitMs}ms (connectors.phantombuster.timeout); it is not stopped`);
      }
      await this.clock.sleep(pollMs, options.signal);
      container = await this.container(containerId, options);
    }
    const [output, result] = await Promise.all([this.output(containerId, options), this.resultObject(containerId, options)]);
    return { containerId, container, output, result, outcome: classify(container, output, result) };
  }

  async run(agentId: string, args: LaunchArguments, options: RunOptions = {}): Promise<RunResult> {
    const { containerId } = await this.launch(agentId, args, options);
    await options.onLaunched?.(containerId);
    return this.wait(containerId, options);
  }

  /** A result file's text, or undefined when there is none yet (S3 answers 403 or 404). */
  private async file(path: string, options: CallOptions): Promise<string | undefined> {
    const { status, text } = await this.send(new URL(path, this.storageUrl), { method: 'GET', headers: {} }, `result file ${path}`, options.signal);
    if (status === 403 || status === 404) return undefined;
    if (status >= 500) throw new Error(`Phantombuster result file ${path}: ${status}`);
    if (status >= 400) throw new NonRetriableError(`Phantombuster result file ${path}: ${status}: ${this.scrub(text.slice(0, 200))}`);
    return text;
  }

  private async call(
    method: 'GET' | 'POST',
    path: string,
    what: string,
    request: { query?: Record<string, string>; body?: unknown; signal?: AbortSignal },
  ): Promise<unknown> {
    const where = `Phantombuster ${what}`;
    const url = new URL(path, this.baseUrl);
    for (const [name, value] of Object.entries(request.query ?? {})) url.searchParams.set(name, value);
    const headers: Record<string, string> = { accept: 'application/json', 'x-phantombuster-key': this.options.apiKey };
    if (request.body !== undefined) headers['content-type'] = 'application/json';
    const init = { method, headers, body: request.body === undefined ? undefined : JSON.stringify(request.body) };
    const { status, text, retryAfter } = await this.send(url, init, where, request.signal);
    const snippet = this.scrub(text.slice(0, 200));
    if (status === 429) {
      const afterMs = retryAfterMs(retryAfter, this.clock.now().getTime()) ?? 10_000;
      throw new RetryAfterError(`${where}: 429 Too Many Requests (the API's rate limit); retry after ${afterMs}ms`, afterMs);
    }
    if (status >= 500 || status === 408) throw new Error(`${where}: ${status} from Phantombuster: ${snippet}`);
    if (status === 401 || status === 403) {
      throw new NonRetriableError(`${where}: ${status}, Phantombuster refused the API key: check connectors.phantombuster.api_key (Workspace settings -> API keys): ${snippet}`);
    }
    if (status === 404) throw new PhantombusterNotFoundError(`${where}: 404 from Phantombuster: ${snippet}`);
    if (status >= 400) throw new NonRetriableError(`${where}: ${status} from Phantombuster: ${snippet}`);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new NonRetriableError(`${where}: the response is not JSON: ${snippet}`);
    }
  }

  private async send(url: URL, init: RequestInit, where: string, signal?: AbortSignal): Promise<{ status: number; text: string; retryAfter: string | null }> {
    const timeoutMs = this.options.requestTimeoutMs ?? 30_000;
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), timeoutMs);
    try {
      const response = await this.fetch(url, { ...init, signal: signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal });
      return { status: response.status, text: await response.text(), retryAfter: response.headers.get('retry-after') };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (timeout.signal.aborted) throw new Error(`${where}: no answer within ${timeoutMs}ms (timeout)`);
      throw new Error(`${where}: request failed: ${this.scrub(causeChain(err))}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private scrub(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join('[redacted]');
    return out;
  }
}

function field(answer: unknown, name: string, what: string): unknown {
  const value = (answer as Record<string, unknown> | null)?.[name];
  if (value === undefined || value === null || value === '') throw new NonRetriableError(`Phantombuster ${what}: expected ${name} in the answer, got ${JSON.stringify(answer)?.slice(0, 120)}`);
  return value;
}

const timeOf = (value: unknown): number | null => (typeof value === 'number' ? value : typeof value === 'string' && value ? Date.parse(value) : null);

function toContainer(value: unknown, where: string): Container {
  const c = value as Record<string, unknown> | null;
  if (!c || typeof c !== 'object' || (typeof c.id !== 'string' && typeof c.id !== 'number') || typeof c.status !== 'string') {
    throw new NonRetriableError(`Phantombuster ${where}: expected a container with id and status, got ${JSON.stringify(value)?.slice(0, 120)}`);
  }
  return {
    ...c,
    id: String(c.id),
    status: c.status,
    createdAt: timeOf(c.createdAt) ?? 0,
    launchedAt: timeOf(c.launchedAt),
    endedAt: timeOf(c.endedAt),
    exitCode: typeof c.exitCode === 'number' ? c.exitCode : null,
    endType: typeof c.endType === 'string' ? c.endType : null,
    exitMessage: typeof c.exitMessage === 'string' ? c.exitMessage : null,
  };
}

function causeChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 3; e = e.cause) parts.push(e.message);
  return parts.length ? parts.join(': ') : String(err);
}

/** A client from checked `connectors.phantombuster` settings (defaults applied, the key set). */
export function createPhantombusterClient(config: PhantombusterConfig & { api_key: string }, deps: Pick<PhantombusterClientOptions, 'fetch' | 'clock'> = {}): PhantombusterClient {
  const duration = (name: 'poll' | 'timeout' | 'request_timeout') => {
    const ms = parseDuration(config[name]);
    if (ms === undefined) throw new NonRetriableError(`connectors.phantombuster.${name}: expected a duration like "10s", got "${config[name]}"`);
    return ms;
  };
  return new PhantombusterClient({
    apiKey: config.api_key,
    baseUrl: config.base_url,
    storageUrl: config.storage_url,
    accounts: config.accounts,
    pollMs: duration('poll'),
    runTimeoutMs: duration('timeout'),
    requestTimeoutMs: duration('request_timeout'),
    ...deps,
  });
}
