import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { builtinConnectors } from '../connectors/index.ts';
import { conformanceAdapters } from '../connectors/conformance.ts';
import type { ConformanceAdapter, ConformanceSandbox } from '../connectors/sandbox/conformance.ts';
import type { FaultOptions } from '../connectors/sandbox/faults.ts';
import { systemClock } from '../engine/clock.ts';
import type { ConnectorDeps } from '../engine/connector.ts';
import { openConnector, type OpenConnector } from '../engine/connector-open.ts';
import { NonRetriableError, RetryAfterError } from '../engine/errors.ts';
import { silentLogger } from '../engine/log.ts';
import { eventually } from './helpers/eventually.ts';

/**
 * One suite for every connector: the same cases against each client pointed at its sandbox
 * (faults injected through the one fault helper), and against the live service when the
 * environment holds its secrets (skipped otherwise). What a connector must do:
 *
 * - a normal call returns well-formed data, and injected latency delays it;
 * - 429 with Retry-After is a RetryAfterError with that delay (SMTP: a retriable error);
 * - a server failure is retriable, and the next call goes through;
 * - a malformed body is a NonRetriableError, never data; a permanent refusal too (SMTP);
 * - a dropped connection is retriable;
 * - a request that hangs ends with the caller's AbortSignal (its reason), or at the
 *   configured timeout as a retriable error;
 * - a wrong key is a NonRetriableError that does not contain the key.
 */

const state = mkdtempSync(join(tmpdir(), 'flows-connectors-'));
afterAll(() => rmSync(state, { recursive: true, force: true }));
const deps: ConnectorDeps = { clock: systemClock, log: silentLogger, env: process.env, projectDir: 'pipelines', stateDir: state, prices: {} };
const env = process.env;

/** The client the engine would make from these settings; `sandboxes: never`, so nothing but what is given answers. */
function open<T>(adapter: ConformanceAdapter<T>, settings: Record<string, unknown>): Promise<OpenConnector<T>> {
  return openConnector<T>(adapter.spec, { sandboxes: 'never', connectors: { [adapter.spec.name]: settings } }, deps);
}

async function failureOf(call: Promise<unknown>): Promise<Error> {
  try {
    const result = await call;
    throw new Error(`expected the call to fail, it gave ${JSON.stringify(result)?.slice(0, 200)}`);
  } catch (err) {
    return err as Error;
  }
}

const isRetriable = (err: Error) => !(err instanceof NonRetriableError);

/** The adapter's call with a fresh signal (or the one given). */
const callOf = <T>(adapter: ConformanceAdapter<T>, client: T, signal = new AbortController().signal) => adapter.call(client, { signal, env });

it('every registered connector has a conformance adapter', () => {
  expect(conformanceAdapters.map((a) => a.spec.name).sort()).toEqual(builtinConnectors.map((c) => c.name).sort());
});

for (const adapter of conformanceAdapters) {
  const name = adapter.spec.name;
  const has = (fault: string) => adapter.faults.includes(fault as never);
  const unavailable = adapter.unavailable?.(env);

  if (adapter.sandbox) describe.skipIf(!!unavailable)(`${name} against its sandbox`, () => {
    /** A sandbox with `faults` and a client on it (plus `extra` settings), closed after `run`. */
    async function withSandbox(faults: FaultOptions, run: (client: unknown, sandbox: ConformanceSandbox) => Promise<void>, extra: Record<string, unknown> = {}) {
      const sandbox = await adapter.sandbox!(faults);
      let opened: OpenConnector<unknown> | undefined;
      try {
        opened = await open(adapter, { ...sandbox.config, ...extra });
        await run(opened.client, sandbox);
      } finally {
        await opened?.close();
        await sandbox.close();
      }
    }

    it('a normal call returns well-formed data', async () => {
      await withSandbox({}, async (client) => adapter.check(await callOf(adapter, client)));
    });

    it('injected latency delays the answer, which still comes', async () => {
      await withSandbox({ latencyMs: 150 }, async (client) => {
        const started = performance.now();
        adapter.check(await callOf(adapter, client));
        expect(performance.now() - started).toBeGreaterThanOrEqual(140);
      });
    });

    it.skipIf(!has('throttle'))(`a throttled call ${adapter.throttle === 'retriable' ? 'is retriable' : 'is a RetryAfterError with the Retry-After delay'}`, async () => {
      await withSandbox({ throttle: { first: 1 }, retryAfterSeconds: 7 }, async (client) => {
        const err = await failureOf(callOf(adapter, client));
        expect(isRetriable(err)).toBe(true);
        if (adapter.throttle !== 'retriable') {
          expect(err).toBeInstanceOf(RetryAfterError);
          expect((err as RetryAfterError).afterMs).toBe(7000);
        }
        adapter.check(await callOf(adapter, client));
      });
    });

    it.skipIf(!has('error'))('a server failure is retriable, and the next call goes through (faults changed while the sandbox runs)', async () => {
      await withSandbox({}, async (client, sandbox) => {
        sandbox.faults.set({ error: { first: 1 } });
        const err = await failureOf(callOf(adapter, client));
        expect(isRetriable(err)).toBe(true);
        adapter.check(await callOf(adapter, client));
      });
    });

    it.skipIf(!has('malformed'))('a malformed body is a NonRetriableError, never data', async () => {
      await withSandbox({ malformed: true }, async (client) => {
        expect(await failureOf(callOf(adapter, client))).toBeInstanceOf(NonRetriableError);
      });
    });

    it.skipIf(!has('reject'))('a permanent refusal is a NonRetriableError', async () => {
      await withSandbox({ reject: true }, async (client) => {
        expect(await failureOf(callOf(adapter, client))).toBeInstanceOf(NonRetriableError);
      });
    });

    it.skipIf(!has('drop'))('a dropped connection is retriable', async () => {
      await withSandbox({ drop: { first: 1 } }, async (client) => {
        expect(isRetriable(await failureOf(callOf(adapter, client)))).toBe(true);
        adapter.check(await callOf(adapter, client));
      });
    });

    it.skipIf(!has('hang'))("a call that hangs ends with the caller's signal, with its reason", async () => {
      await withSandbox({ hang: true }, async (client, sandbox) => {
        const controller = new AbortController();
        const pending = failureOf(callOf(adapter, client, controller.signal));
        await eventually(() => sandbox.faults.requests > 0, 'the request to reach the sandbox', 5000);
        const reason = new Error('run stopped');
        const started = performance.now();
        controller.abort(reason);
        expect(await pending).toBe(reason);
        expect(performance.now() - started).toBeLessThan(1000);
      });
    });

    it.skipIf(!has('hang') || !adapter.timeout)('a call that hangs is given up at the configured timeout, as retriable', async () => {
      await withSandbox(
        { hang: true },
        async (client) => {
          const started = performance.now();
          const err = await failureOf(callOf(adapter, client));
          const took = performance.now() - started;
          expect(isRetriable(err)).toBe(true);
          expect(took).toBeGreaterThanOrEqual(250);
          expect(took).toBeLessThan(3000);
        },
        adapter.timeout?.(300),
      );
    });

    it.skipIf(!adapter.wrongKey)('a wrong key is a NonRetriableError that does not contain the key', async () => {
      await withSandbox({}, async (client) => {
        const err = await failureOf(callOf(adapter, client));
        expect(err).toBeInstanceOf(NonRetriableError);
        expect(`${err.message} ${err.stack} ${String(err.cause)}`).not.toContain(adapter.wrongKey!.secret);
      }, adapter.wrongKey?.config);
    });
  });

  else describe.skipIf(!!unavailable)(`${name}, local (${unavailable ?? 'no sandbox, no faults'})`, () => {
    it('a normal call returns well-formed data', async () => {
      const opened = await open(adapter, {});
      try {
        adapter.check(await callOf(adapter, opened.client));
      } finally {
        await opened.close();
      }
    });

    it.skipIf(adapter.abortable === false)('an aborted signal stops the call', async () => {
      const opened = await open(adapter, {});
      try {
        const controller = new AbortController();
        const reason = new Error('run stopped');
        controller.abort(reason);
        expect(await failureOf(callOf(adapter, opened.client, controller.signal))).toBe(reason);
      } finally {
        await opened.close();
      }
    });
  });

  const live = adapter.live;
  const liveSettings = live && live.variables.every((v) => env[v]) ? live.config(env) : undefined;
  if (live) describe.skipIf(!liveSettings)(`${name} against the live service (with ${live.variables.join(', ')} set)`, () => {
    it('a normal call returns well-formed data', async () => {
      const opened = await open(adapter, liveSettings!);
      try {
        adapter.check(await callOf(adapter, opened.client));
      } finally {
        await opened.close();
      }
    });

    it("a call ends with the caller's signal, with its reason", async () => {
      const opened = await open(adapter, liveSettings!);
      try {
        const controller = new AbortController();
        const reason = new Error('run stopped');
        const pending = failureOf(callOf(adapter, opened.client, controller.signal));
        controller.abort(reason);
        expect(await pending).toBe(reason);
      } finally {
        await opened.close();
      }
    });

    it.skipIf(!adapter.timeout)('a call given no time fails as retriable', async () => {
      const opened = await open(adapter, { ...liveSettings!, ...adapter.timeout?.(1) });
      try {
        expect(isRetriable(await failureOf(callOf(adapter, opened.client)))).toBe(true);
      } finally {
        await opened.close();
      }
    });

    it.skipIf(!adapter.wrongKey)('a wrong key is a NonRetriableError that does not contain the key', async () => {
      const opened = await open(adapter, { ...liveSettings!, ...adapter.wrongKey?.config });
      try {
        const err = await failureOf(callOf(adapter, opened.client));
        expect(err).toBeInstanceOf(NonRetriableError);
        expect(`${err.message} ${err.stack}`).not.toContain(adapter.wrongKey!.secret);
      } finally {
        await opened.close();
      }
    });
  });
}
