import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PhantombusterClient } from '../connectors/phantombuster/client.ts';
import { phantombusterConnector } from '../connectors/phantombuster/connector.ts';
import { type PhantombusterSandbox, SANDBOX_API_KEY, startPhantombusterSandbox } from '../connectors/phantombuster/sandbox.ts';
import { ManualClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import type { Database } from '../engine/db/connect.ts';
import { silentLogger } from '../engine/log.ts';
import { Resources } from '../engine/resources.ts';
import { RunStore } from '../engine/store/index.ts';
import { WEBHOOK_BODY_LIMIT } from '../steps/linkedin/webhook-page.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { testDatabases } from './helpers/db.ts';

/**
 * POST /hooks/phantombuster/<secret> through a real daemon, against the Phantombuster sandbox
 * on one manual clock: the secret in the path or a bare 404; each container recorded once,
 * as the API describes it and never as the posted body claims; an expired session pauses the
 * account's quotas at once. A container the API does not know answers 404 and records nothing.
 */

const SECRET = 'pb-webhook-secret-for-tests-7d3f1a9c';
const START = '2026-11-23T10:00:00Z';
const RUN_MS = 60_000;

/** The shipped config, with a per-account message quota beside linkedin-connect (one for all accounts). */
function config(env: Record<string, string>, sandbox: PhantombusterSandbox, agents: Record<string, { id: string }>): EngineConfig {
  const text = readFileSync('pipelines/flows.config.yaml', 'utf8').replace(/^( {2}linkedin-message:.*)$/m, '$1\n    per_key: account');
  const loaded = loadConfig(text, 'flows.config.yaml', env, createRegistry());
  expect(loaded.diagnostics).toEqual([]);
  const config = loaded.config!;
  const shipped = config.connectors?.phantombuster as Record<string, unknown>;
  config.connectors = { ...config.connectors, phantombuster: { ...shipped, api_key: SANDBOX_API_KEY, base_url: sandbox.url, storage_url: sandbox.storageUrl, accounts: { main: { agents } } } };
  return config;
}

/** What Phantombuster posts at a run's end; `claims` overrides fields, as a forger would. */
const notice = (containerId: string, agentId: string, claims: Record<string, unknown> = {}) =>
  JSON.stringify({
    agentId,
    agentName: 'LinkedIn Auto Connect',
    containerId,
    script: 'LinkedIn Auto Connect.js',
    scriptOrg: 'phantombuster',
    branch: 'master',
    launchDuration: 121,
    runDuration: 1850,
    resultObject: '[{"profileUrl":"https://www.linkedin.com/in/someone/","status":"Invitation sent"}]',
    exitMessage: 'finished',
    exitCode: 0,
    extraFieldPhantombusterMayAdd: true,
    ...claims,
  });

describe.each(testDatabases)('the Phantombuster webhook on $name', ({ open }) => {
  let db: Database;
  let sandbox: PhantombusterSandbox;
  let clock: ManualClock;
  let daemon: Daemon;
  let closed: Daemon;
  let resources: Resources;
  let state: string;
  let agents: Record<'connect' | 'message' | 'connections' | 'inbox', { id: string }>;
  let strangerAgent: string;
  /** API requests the daemon's client made. */
  let calls = 0;

  beforeAll(async () => {
    db = await open();
    state = mkdtempSync(join(tmpdir(), 'flows-pb-webhook-'));
    clock = new ManualClock(new Date(START));
    sandbox = await startPhantombusterSandbox({ now: () => clock.now(), runMs: RUN_MS });
    agents = Object.fromEntries((['connect', 'message', 'connections', 'inbox'] as const).map((kind) => [kind, { id: sandbox.addAgent({ kind, account: 'main' }) }])) as typeof agents;
    strangerAgent = sandbox.addAgent({ kind: 'connect', account: 'stranger' });
    const open_ = config({ PHANTOMBUSTER_WEBHOOK_SECRET: SECRET }, sandbox, agents);
    const shut = config({}, sandbox, agents);
    expect((open_.connectors?.phantombuster as { webhook_secret?: string }).webhook_secret).toBe(SECRET);
    const client = new PhantombusterClient({
      apiKey: SANDBOX_API_KEY,
      baseUrl: sandbox.url,
      storageUrl: sandbox.storageUrl,
      accounts: { main: { agents } },
      clock,
      fetch: (input, init) => {
        calls++;
        return fetch(input, init);
      },
    });
    resources = new Resources({ config: open_, env: {}, log: silentLogger, clock, projectDir: 'pipelines', stateDir: state }).provide(phantombusterConnector, client);
    daemon = new Daemon({ db, config: open_, pipelines: [], pages: builtinPages, clock, loops: false, resources, port: 0 });
    closed = new Daemon({ db, config: shut, pipelines: [], pages: builtinPages, clock, loops: false, resources, port: 0 });
    await daemon.start();
    await closed.start();
  }, 60_000);

  afterAll(async () => {
    await closed?.stop();
    await daemon?.stop();
    await resources?.close();
    await sandbox?.close();
    await db?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  beforeEach(async () => {
    await db.query('DELETE FROM flow_quota_pauses');
  });

  const post = (body: string | Buffer, token: string = SECRET, to: Daemon = daemon) =>
    fetch(`${to.url}/hooks/phantombuster/${encodeURIComponent(token)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const runs = () =>
    db.query<{ container_id: string; agent_id: string; account: string | null; kind: string | null; status: string; exit_code: number | null; outcome: string }>(
      'SELECT container_id, agent_id, account, kind, status, exit_code, outcome FROM phantombuster_runs ORDER BY received_at, container_id',
    );
  const events = () => db.query<{ key: string; payload: unknown }>("SELECT key, payload FROM flow_events WHERE type = 'linkedin.run_finished' ORDER BY occurred_at");
  const pauses = () => new RunStore(db).quotas.pauses(clock.now());
  /** A run of the agent, launched in the sandbox and left to end on the clock. */
  async function ended(agentId: string, bonusArgument?: Record<string, unknown>): Promise<string> {
    const launch = await fetch(new URL('agents/launch', sandbox.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-phantombuster-key': SANDBOX_API_KEY },
      body: JSON.stringify({ id: agentId, ...(bonusArgument ? { bonusArgument } : {}) }),
    });
    const { containerId } = (await launch.json()) as { containerId: string };
    clock.advance(RUN_MS + 1_000);
    return containerId;
  }

  it('answers a bare 404 to a wrong or missing secret, or when no secret is configured, and asks the API nothing', async () => {
    const containerId = await ended(agents.connections.id);
    const before = calls;
    for (const token of ['wrong', SECRET.slice(0, -1), `${SECRET}x`, SECRET.toUpperCase(), ' ']) {
      const answer = await post(notice(containerId, agents.connections.id), token);
      expect(answer.status, token).toBe(404);
      expect(await answer.text()).toBe('Not found\n');
    }
    expect((await fetch(`${daemon.url}/hooks/phantombuster/`, { method: 'POST', body: notice(containerId, agents.connections.id) })).status).toBe(404);
    expect((await post(notice(containerId, agents.connections.id), SECRET, closed)).status).toBe(404);
    expect(calls).toBe(before);
    expect(await runs()).toEqual([]);
    expect(await events()).toEqual([]);
  });

  it('refuses a body that is not JSON, names no container or is over the limit, and records nothing', async () => {
    for (const body of ['not json', '[1,2]', '{"agentId":"1"}', '{"containerId":""}', '{"containerId":"../../agents/launch"}', '{"containerId":{"id":1}}']) {
      const answer = await post(body);
      expect(answer.status, body).toBe(400);
      expect(await answer.json()).toMatchObject({ status: 'rejected' });
    }
    const big = notice('7000000000000001', agents.connect.id, { resultObject: 'x'.repeat(WEBHOOK_BODY_LIMIT) });
    expect((await post(big)).status).toBe(413);
    expect(await runs()).toEqual([]);
    expect(await events()).toEqual([]);
  });

  it('records a run once, as the API gives it, with its linkedin.run_finished event; a second POST is seen', async () => {
    sandbox.addConnections('main', [{ profileUrl: 'https://www.linkedin.com/in/ada-lovelace/', firstName: 'Ada', lastName: 'Lovelace', connectedAt: new Date('2026-11-20T10:00:00Z') }]);
    const containerId = await ended(agents.connections.id);
    // The body claims an expired session: the API says the run went well, and nothing is paused.
    const answer = await post(notice(containerId, agents.connections.id, { exitCode: 87, exitMessage: 'killed', resultObject: null }));
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ status: 'recorded', container_id: containerId, account: 'main', kind: 'connections', outcome: 'ok', paused: [] });
    expect(await runs()).toEqual([{ container_id: containerId, agent_id: agents.connections.id, account: 'main', kind: 'connections', status: 'finished', exit_code: 0, outcome: 'ok' }]);
    expect(await events()).toEqual([{ key: containerId, payload: { account: 'main', kind: 'connections', agent_id: agents.connections.id, outcome: 'ok', message: null } }]);
    expect(await pauses()).toEqual([]);

    const before = calls;
    const again = await post(notice(containerId, agents.connections.id));
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ status: 'seen', container_id: containerId });
    expect(calls).toBe(before);
    expect(await runs()).toHaveLength(1);
    expect(await events()).toHaveLength(1);
  });

  it('pauses the account when the API says its session expired, whatever the body claims; nothing more once seen', async () => {
    sandbox.expireSession('main');
    try {
      const containerId = await ended(agents.connect.id, { spreadsheetUrl: 'https://www.linkedin.com/in/grace-hopper/', message: 'Hello Grace' });
      // A forged body: a clean finish with a result.
      const answer = await post(notice(containerId, agents.connect.id));
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual({ status: 'recorded', container_id: containerId, account: 'main', kind: 'connect', outcome: 'session_expired', paused: ['linkedin-connect', 'linkedin-message:main'] });
      expect((await runs()).find((r) => r.container_id === containerId)).toEqual({
        container_id: containerId,
        agent_id: agents.connect.id,
        account: 'main',
        kind: 'connect',
        status: 'finished',
        exit_code: 87,
        outcome: 'session_expired',
      });
      const paused = await pauses();
      expect(paused.map((p) => [p.quota, p.key, p.until])).toEqual([
        ['linkedin-connect', '', null],
        ['linkedin-message', 'main', null],
      ]);
      for (const p of paused) {
        expect(p.reason).toMatch(/^LinkedIn account "main": the session cookie is expired or invalid \(.*container \d+, from Phantombuster's webhook\); a person must renew the session cookie$/);
        expect(p.by).toBe(`phantombuster webhook (container ${containerId})`);
      }
      // What launchOnce reads before any launch: the account's quota is paused.
      expect((await new RunStore(db).quotas.pauseAt('linkedin-connect', '', clock.now()))?.reason).toContain('a person must renew the session cookie');
      expect((await events()).filter((e) => e.key === containerId)).toEqual([{
        key: containerId,
        payload: { account: 'main', kind: 'connect', agent_id: agents.connect.id, outcome: 'session_expired', message: expect.stringContaining('session cookie') },
      }]);

      // Resumed by a person, the same container posted again pauses nothing.
      await new RunStore(db).quotas.resume('linkedin-connect', '', { by: 'test', now: new Date() });
      await new RunStore(db).quotas.resume('linkedin-message', 'main', { by: 'test', now: new Date() });
      expect(await (await post(notice(containerId, agents.connect.id))).json()).toEqual({ status: 'seen', container_id: containerId });
      expect(await pauses()).toEqual([]);
    } finally {
      sandbox.renewSession('main');
    }
  });

  it("keeps a person's pause and its reason; a disconnection pauses the rest", async () => {
    await new RunStore(db).quotas.pause({ quota: 'linkedin-connect', key: '', reason: 'holiday week', by: 'cli', until: null, now: clock.now() });
    sandbox.disconnect('main');
    try {
      const containerId = await ended(agents.message.id, { spreadsheetUrl: 'https://www.linkedin.com/in/ada-lovelace/', message: 'Hi' });
      expect(await (await post(notice(containerId, agents.message.id))).json()).toMatchObject({ status: 'recorded', kind: 'message', outcome: 'disconnected', paused: ['linkedin-message:main'] });
      const paused = await pauses();
      expect(paused.find((p) => p.quota === 'linkedin-connect')?.reason).toBe('holiday week');
      expect(paused.find((p) => p.quota === 'linkedin-message')?.reason).toMatch(/^LinkedIn account "main": disconnected by LinkedIn \(/);
    } finally {
      sandbox.reconnect('main');
    }
  });

  it('records a run of an agent no account names with account null, and pauses nothing', async () => {
    sandbox.expireSession('stranger');
    try {
      const containerId = await ended(strangerAgent);
      expect(await (await post(notice(containerId, agents.connect.id))).json()).toEqual({ status: 'recorded', container_id: containerId, account: null, kind: null, outcome: 'session_expired', paused: [] });
      expect((await runs()).find((r) => r.container_id === containerId)).toMatchObject({ agent_id: strangerAgent, account: null, kind: null });
      expect(await pauses()).toEqual([]);
    } finally {
      sandbox.renewSession('stranger');
    }
  });

  it('answers 404 for a container the API does not know, and 202 for one still running, recording neither', async () => {
    const unknown = await post(notice('7999999999999999', agents.connect.id));
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ status: 'unknown', error: 'Phantombuster has no container 7999999999999999' });
    expect((await runs()).map((r) => r.container_id)).not.toContain('7999999999999999');

    const launch = await fetch(new URL('agents/launch', sandbox.url), { method: 'POST', headers: { 'content-type': 'application/json', 'x-phantombuster-key': SANDBOX_API_KEY }, body: JSON.stringify({ id: agents.inbox.id }) });
    const { containerId } = (await launch.json()) as { containerId: string };
    const early = await post(notice(containerId, agents.inbox.id));
    expect(early.status).toBe(202);
    expect(await early.json()).toEqual({ status: 'running', container_id: containerId });
    expect((await runs()).map((r) => r.container_id)).not.toContain(containerId);
    clock.advance(RUN_MS + 1_000);
    expect(await (await post(notice(containerId, agents.inbox.id))).json()).toMatchObject({ status: 'recorded', kind: 'inbox' });
  });

  it('counts its answers in /metrics', async () => {
    const text = await (await fetch(`${daemon.url}/metrics`)).text();
    const count = (labels: string) => Number(new RegExp(`^flows_phantombuster_webhooks_total\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    expect(count('answer="not_found",outcome=""')).toBe(6);
    expect(count('answer="rejected",outcome=""')).toBe(7);
    expect(count('answer="recorded",outcome="ok"')).toBe(1);
    expect(count('answer="recorded",outcome="session_expired"')).toBe(2);
    expect(count('answer="seen",outcome=""')).toBe(2);
    expect(count('answer="unknown_container",outcome=""')).toBe(1);
    expect(count('answer="running",outcome=""')).toBe(1);
    expect(count('answer="recorded",outcome="disconnected"')).toBe(1);
    expect(count('answer="recorded",outcome="empty"')).toBe(1);
  });
});
