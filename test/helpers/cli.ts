import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const FLOWS_BIN = resolve(import.meta.dirname, '../../bin/flows.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts `flows <args>` as a child process; the caller may signal it before it ends. With
 * `group` it leads a process group of its own, so `process.kill(-child.pid, signal)` reaches
 * whatever it started too.
 */
export function startCli(
  args: string[],
  options: { cwd: string; env?: Record<string, string | undefined>; group?: boolean },
): { child: ChildProcess; done: Promise<CliResult>; output: () => string } {
  const child = spawn(process.execPath, [FLOWS_BIN, ...args], {
    cwd: options.cwd,
    detached: options.group === true,
    env: { ...process.env, FLOWS_LOG_LEVEL: 'warn', DATABASE_URL: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolveDone) => child.on('close', (code, signal) => resolveDone({ code, signal, stdout, stderr })));
  return { child, done, output: () => stdout + stderr };
}

export function cli(args: string[], options: { cwd: string; env?: Record<string, string | undefined> }): Promise<CliResult> {
  return startCli(args, options).done;
}
