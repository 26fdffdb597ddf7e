import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './helpers/cli.ts';

const repo = resolve(import.meta.dirname, '..');

// Each test starts several CLI processes on one embedded database: under a loaded machine (CI runs the
// crash suites beside this one) a test can take minutes; a test that times out leaves its process
// holding the database and fails the next.
describe('flows CLI', { timeout: 240_000 }, () => {
  let dir: string;
  let db: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'flows-cli-'));
    mkdirSync(join(dir, 'pipelines'));
    // The repo's config, plus a quota open at any hour so real runs need not wait for a window.
    writeFileSync(
      join(dir, 'pipelines', 'flows.config.yaml'),
      readFileSync(join(repo, 'pipelines', 'flows.config.yaml'), 'utf8').replace(/^quotas:.*\n/m, 'quotas:\n  anytime: { caps: { day: 1000 } }\n'),
    );
    const greet = (name: string, quota: string) =>
      `name: ${name}
trigger: { manual: {} }
inputs:
  who: { type: string }
  times: { type: integer, default: 2 }
steps:
  - id: people
    uses: transform
    with: { value: "\${{ range(0, inputs.times) }}" }
  - id: note
    uses: event.emit
    foreach: "\${{ steps.people.output.value }}"
    quota: ${quota}
    with: { type: greeted, key: "\${{ inputs.who }}-\${{ item }}", payload: { n: "\${{ item }}" } }
`;
    writeFileSync(join(dir, 'pipelines', 'greet.yaml'), greet('greet', 'linkedin-connect'));
    writeFileSync(join(dir, 'pipelines', 'greet-now.yaml'), greet('greet-now', 'anytime'));
    db = join(dir, 'db');
  });
  afterAll(() => {});

  const flows = (...args: string[]) => cli(['--db', db, ...args], { cwd: dir });

  it('prints help for the program and every command', async () => {
    const top = await flows('--help');
    expect(top.code).toBe(0);
    for (const command of ['validate', 'run', 'runs', 'show', 'effects', 'quotas', 'budgets', 'schedule', 'daemon', 'demo', 'schemas']) expect(top.stdout).toContain(command);
    const results = await Promise.all(['validate', 'run', 'runs', 'show', 'effects', 'quotas', 'budgets', 'schedule', 'daemon', 'demo', 'schemas', 'report'].map((c) => flows(c, '--help')));
    for (const r of results) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: flows /);
    }
    expect(results[1]!.stdout).toContain('--dry-run');
    expect(results[1]!.stdout).toContain('Exit codes');
    expect(results[8]!.stdout).toContain('/healthz');
  });

  it('validates: one summary line and exit 0, or every problem at file:line:col and exit 2', async () => {
    const good = await flows('validate');
    expect(good).toMatchObject({ code: 0, stderr: '' });
    expect(good.stdout).toBe('ok: 2 pipelines (4 steps) and the config are valid\n');

    writeFileSync(join(dir, 'broken.yaml'), 'name: broken\ntrigger: { manual: {} }\nsteps:\n  - id: a\n    uses: sql.qery\n    with: {}\n  - id: b\n    uses: log\n    with: { message: "${{ steps.zz.output }}" }\n');
    const bad = await flows('validate', 'broken.yaml');
    expect(bad.code).toBe(2);
    expect(bad.stderr.split('\n').filter(Boolean)).toEqual([
      'broken.yaml:5:11: steps[0].uses: unknown step type "sql.qery" (did you mean "sql.query"?)',
      'broken.yaml:9:27: steps[1].with.message: unknown step "zz"',
      '2 problems in 1 file(s)',
    ]);
    const json = await flows('validate', 'broken.yaml', '--json');
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout).diagnostics).toHaveLength(2);
  });

  it('validates a folder, or files with the config among them, as the config and its pipelines', async () => {
    const project = mkdtempSync(join(tmpdir(), 'flows-validate-'));
    cpSync(join(repo, 'pipelines'), join(project, 'pipelines'), { recursive: true });
    const validate = (...args: string[]) => cli(['validate', ...args], { cwd: project });
    const yamlFiles = () => readdirSync(join(project, 'pipelines')).filter((f) => /\.ya?ml$/.test(f)).map((f) => join('pipelines', f));
    try {
      const whole = await validate();
      expect(whole).toMatchObject({ code: 0, stderr: '' });
      expect(whole.stdout).toMatch(/^ok: [1-9]\d* pipelines \(\d+ steps\) and the config are valid\n$/);
      expect(await validate('pipelines')).toMatchObject({ code: 0, stderr: '', stdout: whole.stdout });
      expect(await validate(...yamlFiles())).toMatchObject({ code: 0, stderr: '', stdout: whole.stdout });

      // One bad value in a quota, a budget, the daemon and a window: four messages, all about the config.
      const configFile = join(project, 'pipelines', 'flows.config.yaml');
      const config = readFileSync(configFile, 'utf8');
      const broken = config
        .replace(/(mailbox:[^\n]*\n(?:    [^\n]*\n)*?    )window: "08:00-18:00"/, '$1window: "8-18"')
        .replace('caps: { day: 17, rolling_7d: 85 }', 'caps: { day: lots, rolling_7d: 85 }')
        .replace(/^(\s+)usd: \d+/m, '$1usd: -5')
        .replace(/^(\s+)port: \d+/m, '$1port: eighty');
      expect(broken).not.toBe(config);
      writeFileSync(configFile, broken);
      for (const args of [[], ['pipelines'], yamlFiles()]) {
        const r = await validate(...args);
        expect(r.code).toBe(2);
        const lines = r.stderr.trim().split('\n');
        expect(lines.pop()).toBe('4 problems in 1 file(s)');
        expect(lines.map((l) => l.split(':')[0])).toEqual(Array(4).fill('pipelines/flows.config.yaml'));
        const positions = lines.map((l) => Number(l.split(':')[1]));
        expect(positions).toEqual([...positions].sort((a, b) => a - b));
        expect(r.stderr).toContain('quotas.mailbox.window: "8-18" does not have the expected form (a window is HH:MM-HH:MM, e.g. "09:00-17:00")');
        expect(r.stderr).not.toMatch(/[\^$]|\\d|\[0-9/);
      }
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });

  it('reports YAML alias bombs and cyclic aliases as problems at file:line:col, with the other files still checked', async () => {
    const project = mkdtempSync(join(tmpdir(), 'flows-aliases-'));
    const pipelines = join(project, 'pipelines');
    mkdirSync(pipelines);
    // Billion laughs: nine copies of the one before, nine levels deep.
    const laughs = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'];
    for (let i = 1; i <= 8; i++) laughs.push(`  l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(', ')}]`);
    // Merge keys: each level merges the one before and holds four more copies of it.
    const merges = ['  m0: &m0 { a: 1, b: 2 }'];
    for (let i = 1; i <= 12; i++) merges.push(`  m${i}: &m${i} { <<: *m${i - 1}, more: [*m${i - 1}, *m${i - 1}, *m${i - 1}, *m${i - 1}] }`);
    writeFileSync(join(pipelines, 'flows.config.yaml'), `business: { name: B, timezone: Europe/London }\nprices:\n${merges.join('\n')}\n`);
    writeFileSync(join(pipelines, 'laughs.yaml'), `name: laughs\ntrigger: { manual: {} }\nsteps:\n  - { id: a, uses: log, with: { message: m } }\ninputs:\n${laughs.join('\n')}\n`);
    writeFileSync(join(pipelines, 'cyclic.yaml'), `name: cyclic\ntrigger: { manual: {} }\nsteps:\n  - id: a\n    uses: transform\n    with:\n      value: &v { x: 1, self: *v }\n`);
    writeFileSync(join(pipelines, 'typo.yaml'), `name: typo\ntrigger: { manual: {} }\nsteps:\n  - { id: a, uses: logg, with: { message: m } }\n`);
    try {
      const r = await cli(['validate'], { cwd: project });
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines.pop()).toBe('4 problems in 4 file(s)');
      expect(lines).toEqual([
        expect.stringMatching(/^pipelines\/flows\.config\.yaml:\d+:\d+: the aliases from \*\w+ on expand to too much data \(over 100 copies/),
        expect.stringMatching(/^pipelines\/cyclic\.yaml:7:\d+: the alias \*v is inside the value it refers to/),
        expect.stringMatching(/^pipelines\/laughs\.yaml:\d+:\d+: the aliases from \*\w+ on expand to too much data \(over 100 copies/),
        'pipelines/typo.yaml:4:20: steps[0].uses: unknown step type "logg" (did you mean "log"?)',
      ]);
      const json = await cli(['validate', '--json'], { cwd: project });
      expect(json.code).toBe(2);
      expect(JSON.parse(json.stdout).diagnostics.map((d: { file: string }) => d.file)).toEqual(['pipelines/flows.config.yaml', 'pipelines/cyclic.yaml', 'pipelines/laughs.yaml', 'pipelines/typo.yaml']);
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });

  it('refuses to start a daemon whose webhook verifier has no secret, naming the variable', async () => {
    writeFileSync(join(dir, 'pipelines', 'hook.yaml'), 'name: hook\ntrigger: { webhook: { verify: demo-signature } }\nsteps: [{ id: s, uses: log, with: { message: m } }]\n');
    try {
      const r = await cli(['--db', 'memory://', 'daemon', '--port', '0'], { cwd: dir, env: { DEMO_WEBHOOK_SECRET: '' } });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('webhook verifier "demo-signature" (used by pipeline hook) has no secret: set the environment variable DEMO_WEBHOOK_SECRET');
    } finally {
      rmSync(join(dir, 'pipelines', 'hook.yaml'));
    }
  });

  it('refuses bad usage with exit 2 and a clear line', async () => {
    const missing = await flows('run', 'nope');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('flows: no pipeline "nope" in pipelines (pipelines: greet, greet-now)\n');
    const noInput = await flows('run', 'greet');
    expect(noInput.code).toBe(2);
    expect(noInput.stderr).toContain('missing input "who" (pass --input who=...)');
    const badInput = await flows('run', 'greet', '-i', 'who=x', '-i', 'times=lots');
    expect(badInput.code).toBe(2);
    expect(badInput.stderr).toContain('times: expected an integer, got "lots"');
    const unknown = await flows('run', 'greet', '-i', 'whom=x');
    expect(unknown.stderr).toContain('has no input "whom" (did you mean "who"?)');
    const flag = await flows('run', 'greet', '--frobnicate');
    expect(flag.code).toBe(2);
  });

  it('refuses bad option values with the allowed ones, suggests a pipeline name, and prints errors as JSON with --json', async () => {
    const limit = await flows('runs', '--limit', 'abc');
    expect(limit.code).toBe(2);
    expect(limit.stderr).toContain("option '--limit <n>' argument 'abc' is invalid. Expected a positive integer, like 20");
    expect((await flows('daemon', '--port', 'eighty')).code).toBe(2);
    const status = await flows('runs', '--status', 'bogus');
    expect(status.code).toBe(2);
    expect(status.stderr).toContain('queued, running, waiting, completed, completed_with_errors, failed, needs_attention, interrupted');

    const version = await flows('--version');
    expect(version).toMatchObject({ code: 0, stdout: `${JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version}\n` });

    const typo = await flows('run', 'greet-nw');
    expect(typo).toMatchObject({ code: 2, stderr: 'flows: no pipeline "greet-nw" in pipelines (did you mean "greet-now"?)\n' });
    const typoJson = await flows('run', 'greet-nw', '--json');
    expect(typoJson).toMatchObject({ code: 2, stderr: '' });
    expect(JSON.parse(typoJson.stdout)).toEqual({ error: { kind: 'usage', message: 'no pipeline "greet-nw" in pipelines (did you mean "greet-now"?)' } });
    const statusJson = await flows('runs', '--status', 'bogus', '--json');
    expect(statusJson).toMatchObject({ code: 2, stderr: '' });
    expect(JSON.parse(statusJson.stdout).error).toMatchObject({ kind: 'usage', message: expect.stringContaining('needs_attention') });
    writeFileSync(join(dir, 'invalid.yaml'), 'name: invalid\ntrigger: { manual: {} }\nsteps:\n  - { id: a, uses: sql.qery }\n');
    const invalid = await flows('run', 'invalid.yaml', '--json');
    expect(invalid).toMatchObject({ code: 2, stderr: '' });
    expect(JSON.parse(invalid.stdout).error).toMatchObject({ kind: 'invalid', diagnostics: [{ file: 'invalid.yaml', line: 4, path: 'steps[0].uses' }] });
  });

  it('shows item counts of foreach steps only, an all-day window as all day, and why runs need attention', async () => {
    const reason = 'the payment has no domain: add it to the customer in Stripe, then run paid-report again';
    writeFileSync(join(dir, 'pipelines', 'stuck.yaml'), `name: stuck\ntrigger: { manual: {} }\nsteps:\n  - { id: prepare, uses: transform, with: { value: 1 } }\n  - { id: check, uses: run.needs_attention, with: { reason: "${reason}" } }\n`);
    const config = join(dir, 'pipelines', 'flows.config.yaml');
    const before = readFileSync(config, 'utf8');
    writeFileSync(config, before.replace(/^quotas:\n/m, 'quotas:\n  whole-day: { caps: { day: 10 }, window: "00:00-24:00" }\n'));
    try {
      const run = await flows('run', 'stuck', '--json');
      expect(run.code).toBe(1);
      const runId = JSON.parse(run.stdout).run_id;
      const listed = await flows('runs', '--status', 'needs_attention');
      expect(listed.stdout).toMatch(new RegExp(`${runId}\\s+stuck\\s+needs_attention\\s+manual\\s.*${reason}`));
      const shown = (await flows('show', runId)).stdout;
      expect(shown).toMatch(/^prepare\s+completed\s*$/m);
      expect(shown).toMatch(/^check\s+failed\s+the payment has no domain/m);
      expect((await flows('quotas')).stdout).toMatch(/^whole-day\s+-\s+0\/10 day\s+10\s+\S+ \d\d \w+ all day Europe\/London\s+open$/m);
    } finally {
      writeFileSync(config, before);
      rmSync(join(dir, 'pipelines', 'stuck.yaml'));
    }
  });

  it('dry-runs with --json: planned effects with quota slots, cost, and artifacts on disk', async () => {
    const out = join(dir, 'dry-out');
    const r = await flows('run', 'greet', '--dry-run', '--json', '-i', 'who=ann', '-i', 'times=3', '--out', out);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ pipeline: 'greet', dry_run: true, status: 'completed', cost: { usd: 0 } });
    expect(result.run_id).toMatch(/^r-\d{8}T\d{6}-[0-9a-f]{6}$/);
    expect(result.effects).toHaveLength(3);
    for (const e of result.effects) {
      expect(e).toMatchObject({ step: 'note', kind: 'event', quota: 'linkedin-connect' });
      expect(typeof e.key).toBe('string');
      expect(e.summary).toMatch(/^event greeted for ann-\d$/);
      expect(e.slot.label).toMatch(/ 09:00-17:00 Europe\/London$/);
    }
    expect(JSON.parse(readFileSync(join(out, 'effects.json'), 'utf8'))).toHaveLength(3);
    expect(readFileSync(join(out, 'summary.txt'), 'utf8')).toContain('Dry run');
  });

  it('runs for real, then lists and shows the run, as text and as JSON', async () => {
    const r = await flows('run', 'greet-now', '-i', 'who=bo');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Run r-\S+ of greet-now: completed/);
    expect(r.stdout).toMatch(/note\s+event\.emit\s+completed\s+2 ok \/ 2\s+2/);

    const runs = JSON.parse((await flows('runs', '--json')).stdout);
    expect(runs[0]).toMatchObject({ pipeline: 'greet-now', status: 'completed', dry_run: false });
    const runId = runs[0].id;

    const shown = await flows('show', runId);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`run       ${runId}`);
    expect(shown.stdout).toMatch(/note\s+completed\s+2\s+0\s+0/);
    const json = JSON.parse((await flows('show', runId, '--json')).stdout);
    expect(json.steps.map((s: { step_id: string }) => s.step_id)).toEqual(['people', 'note']);
    expect(json.effects).toEqual([{ step_id: 'note', kind: 'event', status: 'done', n: 2 }]);

    const quotas = JSON.parse((await flows('quotas', '--json')).stdout);
    expect(quotas.find((q: { quota: string }) => q.quota === 'anytime')).toMatchObject({
      caps: [{ period: 'day', cap: 1000, today: 1000, used: 2, remaining: 998 }],
      remaining: 998,
      window: { open: true },
      next: null,
    });
    expect(quotas.find((q: { quota: string }) => q.quota === 'linkedin-connect')).toMatchObject({ caps: [{ period: 'day', cap: 17, used: 0 }, { period: 'rolling_7d', cap: 85, used: 0 }] });
    const mailboxes = quotas.filter((q: { quota: string }) => q.quota === 'mailbox').map((q: { key: string }) => q.key);
    expect(mailboxes).toHaveLength(18);
    expect(mailboxes.slice(0, 2)).toEqual(['ana.ruiz@intel-mail-one.example', 'ben.carter@intel-mail-one.example']);
    expect((await flows('quotas')).stdout).toMatch(/anytime\s+-\s+2\/1000 day\s+998\s+\S+ \d\d \w+ all day Europe\/London\s+open/);

    // A person pauses one key of a quota, with a reason; flows quotas shows it; resume lifts it.
    const paused = await flows('quotas', 'pause', 'mailbox:grace.lee@intel-mail-two.example', '--reason', 'bounce rate 6%', '--for', '4h');
    expect(paused).toMatchObject({ code: 0, stdout: expect.stringMatching(/^paused mailbox:grace\.lee@intel-mail-two\.example until \S+ \S+: bounce rate 6%\n$/) });
    const box = JSON.parse((await flows('quotas', '--json')).stdout).find((q: { key: string }) => q.key === 'grace.lee@intel-mail-two.example');
    expect(box.paused).toMatchObject({ reason: 'bounce rate 6%' });
    expect((await flows('quotas')).stdout).toMatch(/mailbox\s+grace\.lee@intel-mail-two\.example.*paused: bounce rate 6% \(until/);
    expect((await flows('quotas', 'pause', 'mailbox:grace.lee@intel-mail-too.example', '--reason', 'x')).stderr).toContain('quota mailbox has no key "grace.lee@intel-mail-too.example" (did you mean "grace.lee@intel-mail-two.example"?)');
    expect((await flows('quotas', 'pause', 'mailboxes', '--reason', 'x')).code).toBe(2);
    expect((await flows('quotas', 'resume', 'mailbox:grace.lee@intel-mail-two.example')).stdout).toBe('resumed mailbox:grace.lee@intel-mail-two.example\n');
    expect(JSON.parse((await flows('quotas', '--json')).stdout).find((q: { key: string }) => q.key === 'grace.lee@intel-mail-two.example').paused).toBeUndefined();

    const text = await flows('runs');
    expect(text.stdout).toContain(runId);
    expect(text.stdout).toMatch(/completed\s+manual/);
    expect(JSON.parse((await flows('runs', '--status', 'failed', '--json')).stdout)).toEqual([]);
    expect(shown.stdout).toContain('trigger   manual');
    const unknown = await flows('show', 'r-nope');
    expect(unknown.code).toBe(2);
  });

  it('logs JSON lines with run, step and item ids, and no secret values', async () => {
    writeFileSync(
      join(dir, 'pipelines', 'secretive.yaml'),
      `name: secretive
trigger: { manual: {} }
steps:
  - id: each
    uses: log
    foreach: "\${{ ['a', 'b'] }}"
    item_key: "\${{ item }}"
    with: { message: "calling with \${{ env.PARTNER_API_KEY }}", data: { url: "\${{ env.PARTNER_URL }}" } }
`,
    );
    const r = await cli(['--db', db, '--log-level', 'info', 'run', 'secretive'], {
      cwd: dir,
      env: { PARTNER_API_KEY: 'pk_live_0123456789', PARTNER_URL: 'https://user:s3cr3t-pw@partner.example/api' },
    });
    expect(r.code).toBe(0);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
    const items = lines.filter((l) => l.step === 'each' && 'item' in l);
    expect(lines.find((l) => l.step === 'each' && l.done === 2)).toMatchObject({ total: 2, msg: expect.stringMatching(/^each: 2\/2 items/) });
    expect(items.map((l) => l.item).sort()).toEqual(['a', 'b']);
    for (const l of items) {
      expect(l).toMatchObject({ level: 'info', pipeline: 'secretive', msg: 'calling with [redacted]', data: { url: 'https://user:[redacted]@partner.example/api' } });
      expect(l.run).toMatch(/^r-/);
    }
    expect(r.stderr + r.stdout).not.toMatch(/pk_live_0123456789|s3cr3t-pw/);
    rmSync(join(dir, 'pipelines', 'secretive.yaml'));
  });

  it('lists effects in doubt and settles them', async () => {
    const { openDatabase } = await import('../engine/db/connect.ts');
    const seed = await openDatabase({ dataDir: db });
    // As the ledger records an email before sending it: what identifies it in the mail logs.
    const { RunStore } = await import('../engine/store/index.ts');
    const ledger = new RunStore(seed).effects;
    for (const [i, key] of ['note:doubt:1', 'note:doubt:2'].entries()) {
      const identity = { to: `ana${i}@example.com`, subject: 'Your report', message_id: `<m${i}@mail-one.example>` };
      await ledger.reserve({ key, runId: 'r-gone', stepId: 'note', itemKey: String(i), kind: 'email', summary: `email to ana${i}@example.com: Your report`, identity }, [], new Date());
    }
    await seed.close();
    const listed = JSON.parse((await flows('effects', '--json')).stdout);
    expect(listed.map((e: { key: string }) => e.key)).toEqual(['note:doubt:1', 'note:doubt:2']);
    expect(listed[0].identity).toEqual({ to: 'ana0@example.com', subject: 'Your report', message_id: '<m0@mail-one.example>' });
    const table = (await flows('effects')).stdout;
    expect(table).toContain('flows effects resolve <key> --happened | --did-not-happen');
    expect(table).toMatch(/note:doubt:1\s+r-gone\s+note\s+0\s+email to ana0@example.com: Your report\s+to: ana0@example.com; subject: Your report; message_id: <m0@mail-one.example>/);
    expect((await flows('effects', 'resolve', 'note:doubt:1')).code).toBe(2);
    const happened = await flows('effects', 'resolve', 'note:doubt:1', '--happened');
    expect(happened.stdout).toBe('recorded note:doubt:1 as done: it will not be repeated\n');
    const freed = await flows('effects', 'resolve', 'note:doubt:2', '--did-not-happen');
    expect(freed.stdout).toBe('freed note:doubt:2: resuming the run performs it (flows run <pipeline> --resume r-gone)\n');
    expect((await flows('effects', 'resolve', 'note:doubt:1', '--happened')).stderr).toContain('is not in doubt (it is done)');
    expect((await flows('effects')).stdout).toBe('no effects in doubt\n');
  });

  it('prints a multi-megabyte JSON document whole through a pipe', async () => {
    const { openDatabase } = await import('../engine/db/connect.ts');
    const { RunStore } = await import('../engine/store/index.ts');
    const seed = await openDatabase({ dataDir: db });
    const rows = Array.from({ length: 20_000 }, (_, i) => ({ domain: `prospect-${i}.example`, note: 'n'.repeat(200) }));
    await new RunStore(seed).runs.create({ id: 'r-big', pipeline: 'greet', file: 'greet.yaml', hash: 'h', dryRun: true, inputs: { rows }, now: new Date() });
    await seed.close();
    const shown = await flows('show', 'r-big', '--json');
    expect(shown.code).toBe(0);
    expect(shown.stdout.length).toBeGreaterThan(4_000_000);
    expect(JSON.parse(shown.stdout).run.inputs.rows).toHaveLength(rows.length);
  });

  it('reports stale generated files', async () => {
    const r = await cli(['schemas', '--check'], { cwd: repo });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
