import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive } from '../../engine/sdk.ts';

/**
 * A browser's profile folder, and the record in it of who launched the browser, so that a
 * browser left running by a process that died (SIGKILL, a crash) is stopped by the next
 * process that launches one, and no folder is removed while a browser still writes to it.
 */

export const PROFILE_PREFIX = 'flows-chromium-';
const OWNER_FILE = 'flows-owner.json';

interface Owner {
  /** The process that launched the browser. */
  launcher: number;
  /** The browser's main process, leader of its process group. */
  browser: number;
}

/** A fresh, empty profile folder under `root`. */
export function newProfile(root: string = tmpdir()): string {
  return mkdtempSync(join(root, PROFILE_PREFIX));
}

/** Writes down that `launcher` (this process) launched the browser `browserPid` on the profile `dir`. */
export function recordOwner(dir: string, browserPid: number, launcher: number = process.pid): void {
  const owner: Owner = { launcher, browser: browserPid };
  writeFileSync(join(dir, OWNER_FILE), JSON.stringify(owner));
}

/**
 * Stops every browser under `root` whose launcher is gone, and removes its profile. A folder
 * without an owner record is left alone: its browser may be starting in another process.
 * Returns the profiles removed.
 */
export function reapOrphans(root: string = tmpdir()): string[] {
  const reaped: string[] = [];
  for (const name of readdirSync(root)) {
    if (!name.startsWith(PROFILE_PREFIX)) continue;
    const dir = join(root, name);
    const owner = ownerOf(dir);
    if (!owner || isAlive(owner.launcher)) continue;
    // A pid is reused in time: only a process started on this very profile is stopped.
    if (isAlive(owner.browser) && commandLine(owner.browser).includes(`--user-data-dir=${dir}`)) killGroup(owner.browser, true);
    removeNow(dir);
    reaped.push(dir);
  }
  return reaped;
}

/**
 * Removes the profile of a browser that is gone or going: its helpers still running in its
 * process group are stopped first, so nothing writes into the folder while it is removed.
 */
export async function retireProfile(dir: string, browser: ChildProcess | null | undefined): Promise<void> {
  if (browser?.pid !== undefined) {
    if (browser.exitCode === null && browser.signalCode === null) {
      const exited = new Promise((resolve) => browser.once('exit', resolve));
      killGroup(browser.pid, true);
      await exited;
    } else killGroup(browser.pid, false);
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }).catch(() => {
    // A folder in the temporary directory that outlived its browser harms nothing.
  });
}

function ownerOf(dir: string): Owner | undefined {
  try {
    const owner = JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8')) as Partial<Owner>;
    return Number.isInteger(owner.launcher) && Number.isInteger(owner.browser) ? (owner as Owner) : undefined;
  } catch {
    return undefined;
  }
}


/** The command line of a running process ("" where /proc cannot tell). */
function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/**
 * SIGKILL to the browser's process group (puppeteer starts it as a group leader), and to the
 * browser itself while it runs (once it has exited, its pid may belong to another process).
 */
function killGroup(pid: number, running: boolean): void {
  for (const target of running ? [-pid, pid] : [-pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function removeNow(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  } catch {
    // As above: harmless where it stays.
  }
}
