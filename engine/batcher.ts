interface Pending<P, R> {
  item: P;
  resolve(result: R): void;
  reject(err: unknown): void;
}

interface Lane<P, R> {
  queue: Pending<P, R>[];
  running: number;
}

export interface BatcherOptions<P, R> {
  /** Performs a batch in one transaction (or one statement); a result per item, in order. */
  commit(batch: readonly P[]): Promise<R[]>;
  /** Batches of one lane at once: one on the embedded database (one connection), a few on Postgres. */
  parallel: number;
  maxBatch?: number;
  /** Items with the same key never share a batch: the later waits for the next. */
  keyOf?(item: P): string | undefined;
}

/**
 * Group commit: items submitted while a batch of their lane is being committed wait, and
 * then share the next batch, so many concurrent callers cost a few transactions, not one
 * each, and a lone caller waits for nobody. Lanes (a quota and its keys, say) commit
 * independently. A batch that fails is replayed one item per batch, so one bad item fails
 * alone.
 */
export class Batcher<P, R> {
  private readonly lanes = new Map<string, Lane<P, R>>();
  private readonly maxBatch: number;

  constructor(private readonly options: BatcherOptions<P, R>) {
    this.maxBatch = options.maxBatch ?? 100;
  }

  submit(item: P, lane = ''): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let l = this.lanes.get(lane);
      if (!l) this.lanes.set(lane, (l = { queue: [], running: 0 }));
      l.queue.push({ item, resolve, reject });
      if (l.running < this.options.parallel) void this.drain(lane, l);
    });
  }

  private async drain(name: string, lane: Lane<P, R>): Promise<void> {
    lane.running += 1;
    try {
      while (lane.queue.length) {
        // Let pending I/O callbacks run first: items about to be ready join this batch.
        await new Promise((resolve) => setImmediate(resolve));
        const batch = this.take(lane);
        if (!batch.length) continue;
        try {
          const results = await this.options.commit(batch.map((p) => p.item));
          batch.forEach((p, i) => p.resolve(results[i]!));
        } catch (err) {
          if (batch.length === 1) batch[0]!.reject(err);
          else for (const p of batch) await this.options.commit([p.item]).then(([r]) => p.resolve(r!), p.reject);
        }
      }
    } finally {
      lane.running -= 1;
      if (!lane.running && !lane.queue.length && this.lanes.get(name) === lane) this.lanes.delete(name);
    }
  }

  /** Up to maxBatch pending items with distinct keys; a repeated key waits for the next batch. */
  private take(lane: Lane<P, R>): Pending<P, R>[] {
    const batch: Pending<P, R>[] = [];
    const keys = new Set<string>();
    const rest: Pending<P, R>[] = [];
    for (const p of lane.queue) {
      const key = this.options.keyOf?.(p.item);
      if (batch.length < this.maxBatch && (key === undefined || !keys.has(key))) {
        if (key !== undefined) keys.add(key);
        batch.push(p);
      } else rest.push(p);
    }
    lane.queue = rest;
    return batch;
  }
}
