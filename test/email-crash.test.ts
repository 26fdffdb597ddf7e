import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { type SmtpSandbox, startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { openDatabase } from '../engine/db/connect.ts';
import { businessMigrations } from '../steps/tables.ts';
import { cli, startCli } from './helpers/cli.ts';
import { createPostgresDatabase } from './helpers/db.ts';
import { processTag, survivors } from './helpers/processes.ts';

/**
 * email-daily as a real `flows run` process, SIGKILLed at random moments while it sends (as
 * crash-weekly does), against an SMTP server this test runs, then resumed until the run is
 * done. An email whose outcome a kill left unknown is in doubt: never sent again by itself,
 * its mailbox's slot still counted, and listed by `flows effects` with its Message-ID, until a
 * person looks it up at the server and resolves it. At the end every prospect has exactly one
 * teaser at the server (counted by RCPT) and no mailbox passed its cap.
 *
 * The config edit that makes it fast: the quota "mailbox" keeps its caps (50 a day, 50 in 24
 * hours) but loses its gap, window, weekdays and ramp, so 40 emails take a second, not a day;
 * two sends are in flight at once (production has 18), so a kill leaves at most two in doubt.
 */

const PROSPECTS = 40;
const KILLS = 3;
const CAP = 50;
const root = join(import.meta.dirname, '..');
const targets = [{ name: 'pglite' as const }, ...(process.env.TEST_DATABASE_URL ? [{ name: 'postgres' as const }] : [])];
/** Kill points come from this seed (printed): CRASH_SEED=<n> replays a failing sequence. */
const CRASH_SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 1e6));

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 0x1_0000_0000);
}

/** A project with email-daily sending to `smtp`. */
function project(smtp: SmtpSandbox): string {
  const dir = mkdtempSync(join(tmpdir(), 'flows-email-crash-'));
  cpSync(join(root, 'pipelines', 'templates'), join(dir, 'pipelines', 'templates'), { recursive: true });
  const config = parse(readFileSync(join(root, 'pipelines', 'flows.config.yaml'), 'utf8'));
  config.connectors.smtp = { host: smtp.host, port: smtp.port };
  config.public_url = 'https://reports.example.test';
  config.quotas.mailbox = { caps: config.quotas.mailbox.caps, per_key: 'mailbox', keys_from: 'email.mailboxes', pick: 'idle_longest' };
  writeFileSync(join(dir, 'pipelines', 'flows.config.yaml'), stringify(config));
  // Two sends in flight, not 18: each kill leaves at most two emails in doubt for the person (the test) to look up.
  writeFileSync(join(dir, 'pipelines', 'email-daily.yaml'), readFileSync(join(root, 'pipelines', 'email-daily.yaml'), 'utf8').replace('concurrency: 18', 'concurrency: 2'));
  return dir;
}

const env = { FLOWS_LINK_SECRET: 'link-secret-for-email-crash-0123456789' };
const messageIdOf = (key: string, mailbox: string) => `<${createHash('sha256').update(key).digest('hex').slice(0, 32)}@${mailbox.split('@')[1]}>`;

describe.each(targets)('email-daily killed mid-send on $name', ({ name }) => {
  let smtp: SmtpSandbox;
  let drop = async () => {};
  beforeAll(async () => {
    // A little latency before each DATA reply: kills land between a message taken and its 250 read.
    smtp = await startSmtpSandbox({ faults: { latencyMs: 15 } });
  });
  afterAll(async () => {
    await smtp?.close();
    await drop();
  });

  it('sends every teaser once: what a kill left unknown is held in doubt until a person resolves it', async () => {
    const dir = project(smtp);
    let dbArg = join(dir, 'db');
    if (name === 'postgres') {
      const created = await createPostgresDatabase(process.env.TEST_DATABASE_URL!, 'flows_email_crash');
      dbArg = created.url;
      drop = created.drop;
    }
    const open = () => openDatabase(name === 'postgres' ? { url: dbArg, migrations: businessMigrations } : { dataDir: dbArg, migrations: businessMigrations });
    const seeded = await open();
    for (let i = 0; i < PROSPECTS; i++) {
      await seeded.query(
        "INSERT INTO prospects (domain, company_name, contact_name, email, category, category_reason, metrics) VALUES ($1, $2, 'Pat', $3, 'growth', 'a reason', $4)",
        [`site-${i}.test`, `Company ${i}`, `owner${i}@site-${i}.test`, JSON.stringify({ organic_traffic: 1000 * (100 - i), paid_share: 0.1, competitor_gap: 1 })],
      );
    }
    await seeded.close();

    const args = ['--db', dbArg, '--log-level', 'warn'];
    const rand = random(CRASH_SEED + (name === 'pglite' ? 31 : 32));
    const { tag, env: marked } = processTag();
    let runId: string | undefined;
    let kills = 0;
    const resolved = { happened: 0, not: 0 };
    let result: { code: number | null; stdout: string; stderr: string } | undefined;
    for (let attempt = 0; attempt < 30 && !result; attempt++) {
      const child = startCli([...args, 'run', 'email-daily', '--json', ...(runId ? ['--resume', runId] : [])], { cwd: dir, env: { ...env, ...marked } });
      const target = smtp.messages.length + 1 + Math.floor(rand() * 8);
      const killed =
        kills < KILLS &&
        (await new Promise<boolean>((resolve) => {
          const check = setInterval(() => {
            if (smtp.messages.length < target) return;
            clearInterval(check);
            // Somewhere in the next message's exchange: before, during or after the server took it.
            setTimeout(() => resolve(true), Math.floor(rand() * 20));
          }, 1);
          void child.done.then(() => {
            clearInterval(check);
            resolve(false);
          });
        }));
      if (process.env.CRASH_DEBUG) console.error(`attempt ${attempt}: killed ${killed} at ${smtp.messages.length} messages`, child.output().slice(-500));
      if (killed) {
        child.child.kill('SIGKILL');
        await child.done;
        kills++;
        runId ??= JSON.parse((await cli([...args, 'runs', '--json'], { cwd: dir, env })).stdout)[0]?.id;
        continue;
      }
      const done = await child.done;
      runId ??= JSON.parse(done.stdout).run_id;
      if (done.code === 0) result = done;
      else {
        // An item whose email is in doubt fails the run, naming the key: a person resolves each.
        expect(done.code, done.stderr).toBe(1);
        const listed = JSON.parse((await cli([...args, 'effects', '--json'], { cwd: dir, env })).stdout) as { key: string; identity: Record<string, string>; status: string }[];
        expect(listed.length, done.stdout).toBeGreaterThan(0);
        await resolveInDoubt(listed);
      }
    }
    expect(await survivors(tag)).toEqual([]);
    expect(result, 'the run completed').toBeDefined();
    expect(JSON.parse(result!.stdout)).toMatchObject({ run_id: runId, status: 'completed' });

    // Exactly one teaser per prospect at the server, and every mailbox within its caps.
    const perRecipient = new Map<string, number>();
    for (const m of smtp.messages) for (const to of m.envelope.to) perRecipient.set(to, (perRecipient.get(to) ?? 0) + 1);
    expect(perRecipient.size).toBe(PROSPECTS);
    expect([...perRecipient].filter(([, n]) => n !== 1)).toEqual([]);
    const perMailbox = new Map<string, number>();
    for (const m of smtp.messages) perMailbox.set(m.envelope.from, (perMailbox.get(m.envelope.from) ?? 0) + 1);
    for (const [mailbox, n] of perMailbox) expect(n, mailbox).toBeLessThanOrEqual(CAP);
    const db = await open();
    try {
      const slots = await db.query<{ quota_key: string; n: number }>("SELECT quota_key, count(*)::int AS n FROM flow_quota_ledger WHERE quota = 'mailbox' GROUP BY 1");
      for (const s of slots) {
        expect(s.n, s.quota_key).toBeLessThanOrEqual(CAP);
        // Every email the server took from a mailbox is counted against it (a slot in doubt was never given back).
        expect(s.n, s.quota_key).toBeGreaterThanOrEqual(perMailbox.get(s.quota_key) ?? 0);
      }
      expect(await db.query("SELECT key FROM flow_effects WHERE status = 'reserved'")).toEqual([]);
    } finally {
      await db.close();
    }
    console.log(`email-daily on ${name} (CRASH_SEED=${CRASH_SEED}): ${kills} kills, ${resolved.happened} in doubt that had happened, ${resolved.not} that had not; ${smtp.messages.length} emails`);
    expect(kills).toBe(KILLS);

    /** A person's check of each email in doubt: at the server by its Message-ID, then resolved. */
    async function resolveInDoubt(listed: { key: string; identity: Record<string, string> }[]) {
      for (const effect of listed) {
        const db = await open();
        let slot: { quota_key: string } | undefined;
        try {
          // Held, not re-sent: its slot is still counted while it is in doubt.
          [slot] = await db.query<{ quota_key: string }>("SELECT quota_key FROM flow_quota_ledger WHERE quota = 'mailbox' AND effect_key = $1", [effect.key]);
        } finally {
          await db.close();
        }
        expect(slot, `${effect.key} keeps its slot`).toBeDefined();
        expect(effect.identity.to).toMatch(/^owner\d+@/);
        const at = smtp.messages.filter((m) => m.messageId === messageIdOf(effect.key.replace(/^send:/, ''), slot!.quota_key));
        expect(at.length, effect.key).toBeLessThanOrEqual(1);
        const happened = at.length === 1;
        if (happened) resolved.happened++;
        else resolved.not++;
        const out = await cli([...args, 'effects', 'resolve', effect.key, happened ? '--happened' : '--did-not-happen'], { cwd: dir, env });
        expect(out.code, out.stderr).toBe(0);
      }
    }
  }, 480_000);
});
