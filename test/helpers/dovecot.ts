import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from './eventually.ts';

/**
 * A real IMAP server for tests: Debian's dovecot with a config of its own in a temp dir,
 * listening on 127.0.0.1 on a free port, users with plain passwords in a passwd-file, maildirs
 * in the temp dir, run in the foreground (-F) and stopped by stop(). Needs `dovecot` on PATH
 * (.ci/run installs dovecot-imapd).
 */

export interface DovecotUser {
  user: string;
  pass: string;
}

export interface Dovecot {
  port: number;
  /** imap://user:password@127.0.0.1:port for a user. */
  url(user: DovecotUser): string;
  /** The server's log, for a failing test's message. */
  log(): string;
  stop(): Promise<void>;
}

/** A port free right now on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('data', (greeting) => {
      socket.destroy();
      resolve(greeting.toString().startsWith('* OK'));
    });
    socket.once('error', () => resolve(false));
  });

export async function startDovecot(users: DovecotUser[]): Promise<Dovecot> {
  const dir = mkdtempSync(join(tmpdir(), 'flows-dovecot-'));
  const port = await freePort();
  // Dovecot refuses mail access as root: the maildirs belong to nobody.
  const [uid, gid] = [65534, 65534];
  for (const sub of ['run', 'state', 'mail']) mkdirSync(join(dir, sub));
  chmodSync(dir, 0o755);
  chmodSync(join(dir, 'mail'), 0o777);
  writeFileSync(join(dir, 'users'), users.map((u) => `${u.user}:{PLAIN}${u.pass}:${uid}:${gid}::${join(dir, 'mail')}::`).join('\n') + '\n');
  const logFile = join(dir, 'dovecot.log');
  writeFileSync(
    join(dir, 'dovecot.conf'),
    `base_dir = ${join(dir, 'run')}
state_dir = ${join(dir, 'state')}
log_path = ${logFile}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:${join(dir, 'mail')}/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${join(dir, 'users')}
}
userdb {
  driver = passwd-file
  args = username_format=%u ${join(dir, 'users')}
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
`,
  );
  const child: ChildProcess = spawn(existsSync('/usr/sbin/dovecot') ? '/usr/sbin/dovecot' : 'dovecot', ['-F', '-c', join(dir, 'dovecot.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const log = () => {
    let text = stderr;
    try {
      text += readFileSync(logFile, 'utf8');
    } catch {}
    return text;
  };
  try {
    await eventually(async () => {
      if (child.exitCode !== null) throw new Error(`dovecot exited (${child.exitCode}): ${log()}`);
      return listening(port);
    }, `dovecot to listen on ${port}`, 15_000);
  } catch (err) {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    url: (u) => `imap://${encodeURIComponent(u.user)}:${encodeURIComponent(u.pass)}@127.0.0.1:${port}`,
    log,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
