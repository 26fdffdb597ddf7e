import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseSpacing } from '../engine/flow-control/quota-spec.ts';
import { formatDuration, parseDuration } from '../engine/duration.ts';
import { createLogger } from '../engine/log.ts';
import { createScrubber, secretValues } from '../engine/secrets.ts';
import { closest } from '../engine/suggest.ts';
import { backoffMs } from '../engine/executor/attempt.ts';
import { retryAfterMs } from '../engine/errors.ts';


describe('durations', () => {
  it('parses the forms users write', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5d')).toBe(129_600_000);
    for (const bad of ['', '30', '30 s', 'soon', '5x', '-1s']) expect(parseDuration(bad)).toBeUndefined();
    expect(parseSpacing('60s..180s')).toEqual({ minMs: 60_000, maxMs: 180_000 });
    expect(parseSpacing('3m..1m')).toBeUndefined();
    expect(formatDuration(65_000)).toBe('1m5s');
  });
});

describe('backoff', () => {
  it('doubles from the base with equal jitter and stops at the cap', () => {
    const policy = { attempts: 10, backoffMs: 1000, maxBackoffMs: 10_000 };
    expect([1, 2, 3, 4, 5].map((a) => backoffMs(policy, a, () => 0))).toEqual([500, 1000, 2000, 4000, 5000]);
    expect([1, 2, 3, 4, 5].map((a) => backoffMs(policy, a, () => 1))).toEqual([1000, 2000, 4000, 8000, 10000]);
  });
  it('reads Retry-After as seconds or as a date', () => {
    const now = new Date('2026-11-25T10:00:00Z');
    expect(retryAfterMs('3', now.getTime())).toBe(3000);
    expect(retryAfterMs(' 1.5 ', now.getTime())).toBe(1500);
    expect(retryAfterMs('Wed, 25 Nov 2026 10:00:10 GMT', now.getTime())).toBe(10_000);
    expect(retryAfterMs(null, now.getTime())).toBeUndefined();
    expect(retryAfterMs('soon', now.getTime())).toBeUndefined();
  });
});

describe('secrets', () => {
  const env = {
    SEMRUSH_KEY: 'semrush-secret-0001',
    STRIPE_WEBHOOK_SECRET: 'whsec_abc123',
    SMTP_PASSWORD: 'p@ss-word',
    DATABASE_URL: 'postgres://app:db%2Fpass@host/db',
    REDIS_URL: 'redis://:redispw@127.0.0.1:6379',
    HOME: '/root',
    SHORT_KEY: 'abc',
  };

  it('finds secrets by variable name and inside URLs', () => {
    expect(secretValues(env).sort()).toEqual(['db%2Fpass', 'db/pass', 'p@ss-word', 'redispw', 'semrush-secret-0001', 'whsec_abc123'].sort());
  });

  it('scrubs them from nested values, error messages and any URL with a password', () => {
    const scrub = createScrubber(env);
    const value = scrub({ url: 'https://x/?key=semrush-secret-0001', nested: [{ e: new Error('auth whsec_abc123 failed') }], other: 'mysql://u:pw123@h/db', home: '/root' });
    expect(value.url).toBe('https://x/?key=[redacted]');
    expect((value.nested[0]!.e as Error).message).toBe('auth [redacted] failed');
    expect(value.other).toBe('mysql://u:[redacted]@h/db');
    expect(value.home).toBe('/root');
  });

  it('keeps them out of logs', () => {
    let written = '';
    const sink = new Writable({ write: (chunk, _enc, done) => ((written += chunk), done()) });
    const log = createLogger({ level: 'info', scrub: createScrubber(env), destination: sink });
    log.child({ run: 'r-1' }).info({ headers: { authorization: 'Bearer semrush-secret-0001' }, db: env.DATABASE_URL }, 'calling with p@ss-word');
    const line = JSON.parse(written);
    expect(line).toMatchObject({ run: 'r-1', level: 'info', msg: 'calling with [redacted]' });
    expect(written).not.toMatch(/semrush-secret|p@ss-word|db%2Fpass/);
  });
});

describe('did you mean', () => {
  it('suggests close names only', () => {
    expect(closest('sql.qery', ['sql.query', 'sql.insert'])).toBe('sql.query');
    expect(closest('zz', ['a', 'log'])).toBeUndefined();
    expect(closest('lenght', ['length', 'lower'])).toBe('length');
  });
});

describe('the embedded database', () => {
  it('is locked to one process at a time, and a lock left by a dead process is taken over', async () => {
    const { mkdtempSync, writeFileSync, existsSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { openDatabase } = await import('../engine/db/connect.ts');
    const dir = mkdtempSync(join(tmpdir(), 'flows-lock-'));
    const db = await openDatabase({ dataDir: dir });
    await expect(openDatabase({ dataDir: dir })).rejects.toThrow(/already open in this process/);
    await db.close();
    expect(existsSync(join(dir, 'flows.lock'))).toBe(false);
    writeFileSync(join(dir, 'flows.lock'), '999999'); // no such process
    const again = await openDatabase({ dataDir: dir });
    await again.close();
    writeFileSync(join(dir, 'flows.lock'), '1'); // init: alive
    await expect(openDatabase({ dataDir: dir })).rejects.toThrow(/in use by process 1; wait for it to finish, or use Postgres/);
  });
});

describe('schedules', () => {
  it('lists fire times in the pipeline timezone, correct across a daylight-saving change', async () => {
    const { pipelineFrom } = await import('./helpers/pipeline.ts');
    const { nextFires } = await import('../engine/schedule.ts');
    const p = pipelineFrom('name: weekly\ntrigger: { schedule: { cron: "0 22 * * 0", timezone: Europe/London } }\nsteps:\n  - { id: a, uses: log, with: { message: m } }\n');
    expect(p.trigger).toMatchObject({ catchup: 'last', overlap: 'skip' });
    const fires = nextFires(p, new Date('2026-10-10T00:00:00Z'), 4);
    expect(fires.map((f) => f.at.toISOString())).toEqual([
      '2026-10-11T21:00:00.000Z', // 22:00 BST
      '2026-10-18T21:00:00.000Z',
      '2026-10-25T22:00:00.000Z', // 22:00 GMT: clocks went back that morning
      '2026-11-01T22:00:00.000Z',
    ]);
    expect(fires[0]!.local).toBe('Sun 11 Oct 2026 22:00 BST');
    expect(fires[2]!.local).toBe('Sun 25 Oct 2026 22:00 GMT');
  });
});
