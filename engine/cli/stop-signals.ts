import { readFileSync } from 'node:fs';
import { isAlive } from '../processes.ts';

/**
 * Calls `onStop` once per request to stop: SIGTERM, SIGINT or SIGHUP, and, when the process
 * was started through npm (npx, npm exec, npm run), npm going away. npm runs the command in a
 * shell of its own and passes a signal to that shell only (or, for SIGHUP, to nobody); the
 * shell dies or stays without passing it on, and the process would keep running with no one
 * to stop it. npm ending is that signal. Returns a function that stops listening.
 */
export function onStopSignals(onStop: (signal: string) => void, env: Record<string, string | undefined> = process.env): () => void {
  const handlers: (() => void)[] = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((signal) => {
    const handler = () => onStop(signal);
    process.on(signal, handler);
    return () => process.off(signal, handler);
  });
  if (env.npm_command) handlers.push(watchLauncher(() => onStop('npm stopped')));
  return () => {
    for (const off of handlers) off();
  };
}

const LAUNCHER_POLL_MS = 500;
const SHELLS = new Set(['sh', 'dash', 'bash', 'zsh', 'ash']);

/**
 * Calls `gone` once when the launcher exits: the parent, or the parent's parent when the
 * parent is the shell npm started (read from /proc where there is one).
 */
function watchLauncher(gone: () => void): () => void {
  const parent = process.ppid;
  const launcher = SHELLS.has(processName(parent) ?? '') ? (parentOf(parent) ?? parent) : parent;
  const timer = setInterval(() => {
    if (process.ppid === parent && isAlive(launcher)) return;
    clearInterval(timer);
    gone();
  }, LAUNCHER_POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** A process's fields from /proc/<pid>/stat after its name: state, then the parent's pid. */
function stat(pid: number): { name: string; ppid: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const end = text.lastIndexOf(')');
    const [, ppid] = text.slice(end + 2).split(' ');
    return { name: text.slice(text.indexOf('(') + 1, end), ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

function processName(pid: number): string | undefined {
  return stat(pid)?.name;
}

function parentOf(pid: number): number | undefined {
  return stat(pid)?.ppid;
}

