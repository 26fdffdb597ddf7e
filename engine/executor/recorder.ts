import type { ItemRecords } from '../store/items.ts';
import type { ItemRecord } from '../store/records.ts';

/**
 * Finished items are written in batches: one statement per up to `batchSize` items or per
 * `intervalMs`. An item finished but not yet written when the process dies simply runs
 * again on resume; its effects are protected by their idempotency keys, not by this record.
 */
export class ItemRecorder {
  private buffer: ItemRecord[] = [];
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;

  constructor(
    private readonly items: ItemRecords,
    /** Called with the keys of the succeeded and skipped items of each batch, once written. */
    private readonly afterWrite?: (keys: string[]) => Promise<void>,
    private readonly batchSize = 250,
    private readonly intervalMs = 100,
  ) {}

  add(record: ItemRecord): void {
    this.buffer.push(record);
    if (this.buffer.length >= this.batchSize) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.intervalMs);
  }

  /** Writes what is buffered; rejects if any write so far failed. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    if (batch.length) {
      this.writing = this.writing.then(async () => {
        try {
          await this.items.record(batch);
          await this.afterWrite?.(batch.filter((i) => i.status !== 'failed').map((i) => i.itemKey));
        } catch (err) {
          this.failure ??= err;
        }
      });
    }
    return this.writing.then(() => {
      if (this.failure) throw this.failure;
    });
  }
}
