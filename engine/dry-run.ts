import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Slot } from './flow-control/quota-simulator.ts';
import type { Scrubber } from './secrets.ts';
import type { Artifact } from './types.ts';

/** One effect a dry run planned instead of performing. */
export interface PlannedEffectRecord {
  step: string;
  item?: string;
  kind: string;
  key: string;
  summary: string;
  /** The key is already done: a real run would skip this effect. */
  skipped?: boolean;
  quota?: string;
  slot?: Slot;
  /** Why the run would wait before this effect (a spent budget stops the run). */
  waits?: string;
  cost: Record<string, number>;
  usd: number;
  /** Files written to the artifacts folder for this effect, relative to it. */
  files: string[];
}

/**
 * Collects a dry run's planned effects and writes their rendered content as files a person
 * can open (emails as .html/.eml, messages as .txt, requests as .json). Content goes to disk
 * at once, so 5,000 planned emails do not sit in memory.
 */
export class DryRunSink {
  readonly effects: PlannedEffectRecord[] = [];
  private count = 0;

  constructor(
    readonly dir: string,
    private readonly scrub: Scrubber,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  add(effect: Omit<PlannedEffectRecord, 'files'>, artifacts: Artifact[] = []): PlannedEffectRecord {
    this.count += 1;
    const files: string[] = [];
    const stem = `${String(this.count).padStart(5, '0')}-${slug(effect.step)}${effect.item ? `-${slug(effect.item)}` : ''}`;
    for (const artifact of artifacts) {
      const name = `${stem}.${slug(artifact.name, true)}`;
      writeFileSync(join(this.dir, name), this.scrub(artifact.content));
      files.push(name);
    }
    const record = this.scrub({ ...effect, files });
    this.effects.push(record);
    return record;
  }

  /** Writes effects.json and summary.txt next to the content files. */
  finish(summary: string): void {
    writeFileSync(join(this.dir, 'effects.json'), JSON.stringify(this.effects, null, 2));
    writeFileSync(join(this.dir, 'summary.txt'), this.scrub(summary));
  }
}

function slug(text: string, keepDots = false): string {
  const allowed = keepDots ? /[^A-Za-z0-9._-]+/g : /[^A-Za-z0-9_-]+/g;
  return text.replace(allowed, '_').slice(0, 60) || 'x';
}
