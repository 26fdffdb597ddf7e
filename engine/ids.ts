import { randomBytes } from 'node:crypto';

/** Run ids sort by start time and read well in a terminal: r-20261125T220619-3fa9c1. */
export function newRunId(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  return `r-${stamp}-${randomBytes(3).toString('hex')}`;
}
