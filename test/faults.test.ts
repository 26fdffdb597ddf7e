import { describe, expect, it } from 'vitest';
import { createFaults, type FaultOptions } from '../connectors/sandbox/faults.ts';

/** The faults that `n` requests draw (requests named by number unless `subjects` says otherwise). */
const drawn = (options: FaultOptions, n: number, subject: (i: number) => { key?: string; identity?: string } = () => ({})) => {
  const faults = createFaults(options);
  return Array.from({ length: n }, (_, i) => faults.next(subject(i)) ?? '-');
};

describe('the fault schedules every sandbox shares', () => {
  it('first n, every nth, by key, always, never', () => {
    expect(drawn({ throttle: { first: 2 } }, 4)).toEqual(['throttle', 'throttle', '-', '-']);
    expect(drawn({ error: { every: 3 } }, 7)).toEqual(['-', '-', 'error', '-', '-', 'error', '-']);
    expect(drawn({ hang: { keys: ['slow.example'] } }, 3, (i) => ({ key: ['a.example', 'slow.example', 'b.example'][i] }))).toEqual(['-', 'hang', '-']);
    expect(drawn({ malformed: true }, 2)).toEqual(['malformed', 'malformed']);
    expect(drawn({ malformed: false, error: 0 }, 2)).toEqual(['-', '-']);
  });

  it('one fault per request, the strongest first: hang, drop, throttle, error, reject, malformed', () => {
    expect(drawn({ malformed: true, error: true, throttle: { first: 1 }, hang: { every: 3 } }, 4)).toEqual(['throttle', 'error', 'hang', 'error']);
  });

  it('a share fails the same requests every run, whatever their order, and a retry can succeed', () => {
    const domains = Array.from({ length: 40 }, (_, i) => `shop-${i}.example`);
    const run = (order: string[], seed = 'test') => {
      const faults = createFaults({ error: 0.3, seed });
      return Object.fromEntries(order.map((d) => [d, faults.next({ identity: d }) ?? 'ok']));
    };
    const first = run(domains);
    expect(run([...domains].reverse())).toEqual(first);
    const failed = Object.values(first).filter((o) => o === 'error').length;
    expect(failed).toBeGreaterThan(4);
    expect(failed).toBeLessThan(24);
    expect(run(domains, 'another seed')).not.toEqual(first);

    const faults = createFaults({ error: 0.5, seed: 'test' });
    const failing = domains.find((d) => first[d] === 'error')!;
    const attempts = Array.from({ length: 10 }, () => faults.next({ identity: failing }) ?? 'ok');
    expect(attempts).toContain('ok');
  });

  it('can be changed while a sandbox runs; counting starts again', () => {
    const faults = createFaults<FaultOptions>({});
    expect(faults.next()).toBeUndefined();
    faults.set({ throttle: { first: 1 }, latencyMs: 20 });
    expect(faults.options).toEqual({ throttle: { first: 1 }, latencyMs: 20 });
    expect([faults.next(), faults.next()]).toEqual(['throttle', undefined]);
    expect(faults.requests).toBe(2);
  });
});
