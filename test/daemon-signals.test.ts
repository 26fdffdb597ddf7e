import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from './helpers/eventually.ts';

/**
 * `npx flows daemon` as a user or a process manager starts it: npm runs the command in a
 * shell of its own, and a SIGTERM (or SIGHUP) to npm must still stop the daemon, not leave it
 * serving. (Ctrl-C in a terminal reaches every process of the group, the daemon included.)
 */

const root = resolve(import.meta.dirname, '..');
let daemonPid: number | undefined;

afterEach(() => {
  // Never outlive the test, whatever it asserted.
  if (daemonPid && alive(daemonPid)) process.kill(daemonPid, 'SIGKILL');
  daemonPid = undefined;
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

function project(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flows-signals-'));
  mkdirSync(join(dir, 'pipelines'));
  writeFileSync(join(dir, 'pipelines', 'flows.config.yaml'), 'business: { name: Test Co, timezone: UTC }\ndaemon: { poll: 500ms }\n');
  return dir;
}

async function startWithNpx(dir: string): Promise<{ npx: ChildProcess; output: () => string; url: string }> {
  const npx = spawn('npx', ['flows', '--dir', join(dir, 'pipelines'), '--db', join(dir, 'db'), 'daemon', '--port', '0'], {
    cwd: root,
    env: { ...process.env, FLOWS_LOG_LEVEL: 'info', DATABASE_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  npx.stdout!.on('data', (d) => (text += d));
  npx.stderr!.on('data', (d) => (text += d));
  let url = '';
  await eventually(
    () => {
      url = /listening on (http:\/\/[^\s"]+)/.exec(text)?.[1] ?? '';
      if (npx.exitCode !== null) throw new Error(`npx exited: ${text}`);
      return Boolean(url);
    },
    'the daemon to listen',
    90_000,
  );
  return { npx, output: () => text, url };
}

describe('a daemon started through npx', () => {
  it.each(['SIGTERM', 'SIGHUP'] as const)('stops when npx gets %s, and frees its port', async (signal) => {
    const { npx, output, url } = await startWithNpx(project());
    const health = (await (await fetch(`${url}/healthz`)).json()) as { worker: string };
    daemonPid = Number(health.worker.split(':').at(-2));
    expect(daemonPid).not.toBe(npx.pid); // npm's shell stands between them
    const port = Number(new URL(url).port);

    npx.kill(signal);
    await eventually(() => !alive(daemonPid!), 'the daemon to exit', 30_000);
    expect(output()).toContain('daemon stopped'); // a graceful stop, not a kill
    expect(await portFree(port)).toBe(true);
  }, 120_000);
});
