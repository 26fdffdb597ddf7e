import { createHash, timingSafeEqual } from 'node:crypto';
import { type PhantombusterApi, PhantombusterNotFoundError, WEBHOOK_SECRET_MIN_LENGTH, isFinal } from '../../connectors/phantombuster/client.ts';
import { classify, type RunOutcome } from '../../connectors/phantombuster/classify.ts';
import { phantombusterConnector } from '../../connectors/phantombuster/connector.ts';
import { type EngineConfig, errorMessage, type Page, type PageAnswer, type PageContext } from '../../engine/sdk.ts';
import { accountPauseCtes, accountQuotas, keyFor } from './launch.ts';

/**
 * POST /hooks/phantombuster/<secret>: Phantombuster's end-of-run webhook, the URL set as each
 * agent's "webhook" (Advanced Notification Settings). Phantombuster posts a JSON body when a
 * run ends (agentId, agentName, containerId, script, scriptOrg, branch, launchDuration,
 * runDuration, exitCode, exitMessage, resultObject) and can neither sign it nor add a header,
 * so the secret (connectors.phantombuster.webhook_secret) is the last part of the path,
 * compared in constant time. A wrong or missing secret, or none configured, is a bare 404 that
 * records nothing.
 *
 * Only the body's containerId is read. Anyone holding the URL could post a body claiming
 * anything, so the container is fetched again through the API (containers/fetch, its output
 * and result object) and classified as a launch's end is; what the API says is recorded.
 * Each container once (phantombuster_runs, its id the key), with a linkedin.run_finished event
 * in the same statement; a second POST for it answers "seen" and does nothing. A container
 * the API does not know answers 404 and records nothing (a row for it would only let the
 * holder of the URL fill the table); one still running answers 202 and records nothing, so
 * the next POST for it counts.
 *
 * What the webhook adds is speed on a run nobody waits for (a phantom launched on
 * Phantombuster's own schedule, a run whose step died): an expired session cookie or a
 * disconnection pauses the account's quotas (linkedin.account_quotas) at once, as a launch
 * that sees it does, so nothing more is launched on it until a person renews the cookie and
 * runs `flows quotas resume`. Polling stays what launches rely on: a launch waits for its own
 * container with client.wait and never for this route, which may be unset, unreachable or
 * late.
 */

/** A body over this is refused: the container id is all that is read, and a run that ends badly posts a few hundred bytes (a large export's result object is read by polling). */
export const WEBHOOK_BODY_LIMIT = 64 * 1024;

const CONTAINER_ID = /^[A-Za-z0-9_-]{1,64}$/;

type Client = Pick<PhantombusterApi, 'accounts' | 'container' | 'output' | 'resultObject'>;

const json = (status: number, body: Record<string, unknown>): PageAnswer => ({ status, type: 'application/json; charset=utf-8', body: `${JSON.stringify(body)}\n`, headers: { 'cache-control': 'no-store' } });
const notFound = (): PageAnswer => ({ status: 404, type: 'text/plain; charset=utf-8', body: 'Not found\n', headers: { 'cache-control': 'no-store' } });

/** The configured secret, or undefined while unset or too short to guard the route (which then stays closed). */
export function webhookSecret(config: EngineConfig): string | undefined {
  const secret = (config.connectors?.phantombuster as { webhook_secret?: unknown } | undefined)?.webhook_secret;
  return typeof secret === 'string' && secret.length >= WEBHOOK_SECRET_MIN_LENGTH ? secret : undefined;
}

/** Compared as digests, so neither the time taken nor a length check tells a guesser anything. */
export function sameSecret(secret: string, given: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(secret), digest(given));
}

/** The container id a webhook body names, or why the body is refused. Nothing else of it is believed. */
export function noticedContainer(body: Buffer): { containerId: string } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return { error: 'the body is not JSON (Phantombuster posts a JSON object with containerId)' };
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return { error: 'expected a JSON object with containerId' };
  const id = (parsed as { containerId?: unknown }).containerId;
  const containerId = typeof id === 'number' && Number.isSafeInteger(id) ? String(id) : id;
  if (typeof containerId !== 'string' || !CONTAINER_ID.test(containerId)) return { error: `containerId: expected a container id, got ${JSON.stringify(id)?.slice(0, 80) ?? 'none'}` };
  return { containerId };
}

/** The account and kind whose configured agent this is; undefined for an agent no account names. */
export function agentOwner(accounts: Client['accounts'], agentId: string | undefined): { account: string; kind: string } | undefined {
  if (!agentId) return undefined;
  for (const [account, settings] of Object.entries(accounts)) {
    const kind = Object.entries(settings.agents).find(([, agent]) => agent?.id === agentId)?.[0];
    if (kind) return { account, kind };
  }
  return undefined;
}

interface FetchedRun {
  containerId: string;
  agentId: string | null;
  status: string;
  exitCode: number | null;
  outcome: RunOutcome;
}

/** The run as the API tells it: 'unknown' when it has no such container, 'running' before its end. */
async function refetch(client: Client, containerId: string): Promise<FetchedRun | 'unknown' | 'running'> {
  let container;
  try {
    container = await client.container(containerId);
  } catch (err) {
    if (err instanceof PhantombusterNotFoundError) return 'unknown';
    throw err;
  }
  if (!isFinal(container)) return 'running';
  const [output, result] = await Promise.all([client.output(containerId), client.resultObject(containerId)]);
  return { containerId, agentId: container.agentId ?? null, status: container.status, exitCode: container.exitCode ?? null, outcome: classify(container, output, result) };
}

const needsPerson = (outcome: RunOutcome): outcome is Extract<RunOutcome, { kind: 'session_expired' | 'disconnected' }> => outcome.kind === 'session_expired' || outcome.kind === 'disconnected';

/** The quota pauses an ended run calls for: every account quota of its account, when its session is gone. */
function pausesFor(config: EngineConfig, run: FetchedRun, account: string | undefined): { quota: string; key: string; reason: string }[] {
  const { outcome } = run;
  if (!account || !needsPerson(outcome)) return [];
  const why = outcome.kind === 'disconnected' ? 'disconnected by LinkedIn' : 'the session cookie is expired or invalid';
  const reason = `LinkedIn account "${account}": ${why} (${outcome.message}; container ${run.containerId}, from Phantombuster's webhook); a person must renew the session cookie`;
  return accountQuotas({ config }).map((quota) => ({ quota, key: keyFor({ config }, quota, account), reason }));
}

// One statement, so the row, its event and the pauses commit together; the pauses join
// `run`, so a container recorded before (no row inserted) changes nothing.
const RECORD = `
WITH run AS (
  INSERT INTO phantombuster_runs (container_id, agent_id, account, kind, status, exit_code, outcome, received_at, fetched_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
  ON CONFLICT (container_id) DO NOTHING
  RETURNING container_id
), event AS (
  INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
  SELECT 'linkedin.run_finished', container_id, $10::jsonb, NULL, $9 FROM run
  RETURNING id
), ${accountPauseCtes({ account: '$3', reason: '$11', by: '$12', at: '$9', quotas: '$13', keys: '$14', runId: 'NULL', payload: "jsonb_build_object('container_id', $1::text)", after: 'run' })}
SELECT (SELECT count(*) FROM run)::int AS recorded, (SELECT count(*) FROM event)::int AS events,
       ARRAY(SELECT CASE WHEN quota_key = '' THEN quota ELSE quota || ':' || quota_key END FROM paused ORDER BY 1) AS paused`;

interface Recorded {
  recorded: boolean;
  /** The quotas (quota or quota:key) this run paused. */
  paused: string[];
}

async function record(context: PageContext, run: FetchedRun, owner: { account: string; kind: string } | undefined, receivedAt: Date): Promise<Recorded> {
  const fetchedAt = context.clock.now();
  const message = 'message' in run.outcome ? run.outcome.message : null;
  const payload = { account: owner?.account ?? null, kind: owner?.kind ?? null, agent_id: run.agentId, outcome: run.outcome.kind, message };
  const pauses = pausesFor(context.config, run, owner?.account);
  const [row] = await context.db.query<{ recorded: number; paused: string[] }>(RECORD, [
    run.containerId,
    run.agentId,
    owner?.account ?? null,
    owner?.kind ?? null,
    run.status,
    run.exitCode,
    run.outcome.kind,
    receivedAt,
    fetchedAt,
    JSON.stringify(payload),
    pauses[0]?.reason ?? '',
    `phantombuster webhook (container ${run.containerId})`,
    pauses.map((p) => p.quota),
    pauses.map((p) => p.key),
  ]);
  return { recorded: Number(row?.recorded ?? 0) > 0, paused: row?.paused ?? [] };
}

type Answer = 'recorded' | 'seen' | 'not_found' | 'rejected' | 'unknown_container' | 'running' | 'unavailable';

export const phantombusterWebhookPage: Page = {
  path: '/hooks/phantombuster/:token',
  methods: ['POST'],
  async handle(request, context) {
    const counted = (answer: Answer, reply: PageAnswer, outcome = ''): PageAnswer => {
      context
        .counter('flows_phantombuster_webhooks_total', "Phantombuster end-of-run webhooks answered, by answer (recorded, seen, not_found ...) and the run's outcome as the API gave it.", ['answer', 'outcome'])
        .inc({ answer, outcome });
      return reply;
    };
    const receivedAt = context.clock.now();
    const secret = webhookSecret(context.config);
    if (!secret || !sameSecret(secret, request.params.token ?? '')) return counted('not_found', notFound());
    if (request.body.length > WEBHOOK_BODY_LIMIT) return counted('rejected', json(413, { status: 'rejected', error: `the body is over ${WEBHOOK_BODY_LIMIT} bytes` }));
    const notice = noticedContainer(request.body);
    if ('error' in notice) return counted('rejected', json(400, { status: 'rejected', error: notice.error }));
    const { containerId } = notice;
    const { log, db } = context;
    if ((await db.query('SELECT 1 FROM phantombuster_runs WHERE container_id = $1', [containerId])).length) {
      return counted('seen', json(200, { status: 'seen', container_id: containerId }));
    }

    let run: Awaited<ReturnType<typeof refetch>>;
    let client: Client;
    try {
      client = await context.resources.use(phantombusterConnector);
      run = await refetch(client, containerId);
    } catch (err) {
      log.warn({ container: containerId, err: errorMessage(err) }, 'Phantombuster webhook: could not fetch the container from the API (polling still reads the runs we launched)');
      return counted('unavailable', json(503, { status: 'unavailable', error: 'could not fetch the container from Phantombuster; send again later' }));
    }
    if (run === 'unknown') return counted('unknown_container', json(404, { status: 'unknown', error: `Phantombuster has no container ${containerId}` }));
    if (run === 'running') return counted('running', json(202, { status: 'running', container_id: containerId }));

    const owner = agentOwner(client.accounts, run.agentId ?? undefined);
    const done = await record(context, run, owner, receivedAt);
    if (!done.recorded) return counted('seen', json(200, { status: 'seen', container_id: containerId }));
    const about = { container: containerId, agent: run.agentId, account: owner?.account ?? null, outcome: run.outcome.kind };
    if (!owner) log.warn(about, 'Phantombuster webhook: a run of an agent no account under connectors.phantombuster.accounts names');
    if (done.paused.length) {
      log.warn({ ...about, paused: done.paused }, `LinkedIn account "${owner?.account}" paused: ${run.outcome.kind}; a person must renew the session cookie, then run: ${done.paused.map((q) => `flows quotas resume ${q}`).join(' and ')}`);
    } else log.info(about, 'Phantombuster run finished (webhook)');
    return counted(
      'recorded',
      json(200, { status: 'recorded', container_id: containerId, account: owner?.account ?? null, kind: owner?.kind ?? null, outcome: run.outcome.kind, paused: done.paused }),
      run.outcome.kind,
    );
  },
};
