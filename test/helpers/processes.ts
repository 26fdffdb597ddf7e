import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * Finding the processes a test started, however deep and wherever the system reparented
 * them: by a variable in their environment (which every descendant inherits) or by their
 * command line. Linux only (/proc), like the machines the tests run on.
 */

export const TAG_VARIABLE = 'FLOWS_TEST_PROCESS_TAG';

/** An environment that marks a process and all it starts; pass it to startCli. */
export function processTag(): { tag: string; env: Record<string, string> } {
  const tag = randomBytes(8).toString('hex');
  return { tag, env: { [TAG_VARIABLE]: tag } };
}

/** Running processes that carry `tag` in their environment, with their command lines. */
export function taggedProcesses(tag: string): string[] {
  return scan((pid) => (read(`/proc/${pid}/environ`).split('\0').includes(`${TAG_VARIABLE}=${tag}`) ? commandLine(pid) : undefined));
}

/** Running processes whose command line contains `text`. */
export function processesWith(text: string): string[] {
  return scan((pid) => (commandLine(pid).includes(text) ? commandLine(pid) : undefined));
}

function scan(match: (pid: number) => string | undefined): string[] {
  const found: string[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    // A zombie has an empty command line and environment: it runs nothing any more.
    const line = match(pid);
    if (line) found.push(`${pid} ${line.slice(0, 160)}`);
  }
  return found;
}

const commandLine = (pid: number) => read(`/proc/${pid}/cmdline`).replaceAll('\0', ' ').trim();

function read(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The processes still carrying `tag` once they have had `withinMs` to exit (none, when all went). */
export async function survivors(tag: string, withinMs = 5_000): Promise<string[]> {
  const end = Date.now() + withinMs;
  let left = taggedProcesses(tag);
  while (left.length && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    left = taggedProcesses(tag);
  }
  return left;
}
