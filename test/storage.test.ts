import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReportStorage } from '../connectors/storage/index.ts';
import { LocalStorage } from '../connectors/storage/local.ts';
import { NonRetriableError } from '../engine/errors.ts';

/** What every ReportStorage must do; an S3-compatible store runs the same suite. */
function reportStorageSuite(name: string, open: () => Promise<{ storage: ReportStorage; dispose(): Promise<void> }>) {
  describe(name, () => {
    let storage: ReportStorage;
    let dispose: () => Promise<void>;
    beforeAll(async () => {
      ({ storage, dispose } = await open());
    });
    afterAll(() => dispose());

    it('round-trips a string, and tells what exists', async () => {
      expect(await storage.exists('reports/tok_1/summary.txt')).toBe(false);
      expect(await storage.get('reports/tok_1/summary.txt')).toBeUndefined();
      const stored = await storage.put('reports/tok_1/summary.txt', 'Acme — visibility 41.2', 'text/plain; charset=utf-8');
      expect(stored).toEqual({ key: 'reports/tok_1/summary.txt', size: Buffer.byteLength('Acme — visibility 41.2') });
      expect(await storage.exists('reports/tok_1/summary.txt')).toBe(true);
      expect((await storage.get('reports/tok_1/summary.txt'))!.toString('utf8')).toBe('Acme — visibility 41.2');
    });

    it('keeps binary content byte for byte', async () => {
      const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(64 * 1024)]);
      expect(await storage.put('reports/tok_2/report.pdf', pdf, 'application/pdf')).toEqual({ key: 'reports/tok_2/report.pdf', size: pdf.length });
      expect((await storage.get('reports/tok_2/report.pdf'))!.equals(pdf)).toBe(true);
    });

    it('nests keys; a folder is not an object', async () => {
      await storage.put('reports/tok_3/2026/q3/report.pdf', 'q3', 'application/pdf');
      await storage.put('reports/tok_3/2026/q4/report.pdf', 'q4', 'application/pdf');
      expect((await storage.get('reports/tok_3/2026/q3/report.pdf'))!.toString()).toBe('q3');
      expect((await storage.get('reports/tok_3/2026/q4/report.pdf'))!.toString()).toBe('q4');
      expect(await storage.exists('reports/tok_3/2026')).toBe(false);
      expect(await storage.get('reports/tok_3/2026')).toBeUndefined();
      expect(await storage.get('reports/tok_3/2026/q3/report.pdf/more')).toBeUndefined();
    });

    it.each([
      ['../secrets.txt', 'contains ".."; a key may not reach outside the store'],
      ['reports/../../etc/passwd', 'contains ".."; a key may not reach outside the store'],
      ['/etc/passwd', 'is an absolute path'],
      ['C:/reports/x.pdf', 'is an absolute path'],
      ['reports\\..\\x.pdf', 'contains a backslash; separate folders with "/"'],
      ['reports//x.pdf', 'contains an empty segment ("//" or a trailing "/")'],
      ['reports/', 'contains an empty segment ("//" or a trailing "/")'],
      ['./reports/x.pdf', 'contains a "." segment'],
      ['reports/x\u0000.pdf', 'contains a control character'],
      ['', 'is empty'],
    ])('refuses the key %j', async (key, problem) => {
      const message = `storage key ${JSON.stringify(key)} ${problem} (write a relative path like "reports/<token>/report.pdf")`;
      await expect(storage.put(key, 'x', 'text/plain')).rejects.toThrow(message);
      await expect(storage.put(key, 'x', 'text/plain')).rejects.toBeInstanceOf(NonRetriableError);
      await expect(storage.get(key)).rejects.toThrow(message);
      await expect(storage.exists(key)).rejects.toThrow(message);
    });

    it('overwrites atomically: a reader sees the old content or the new, never part', async () => {
      const key = 'reports/tok_4/report.pdf';
      const old = Buffer.alloc(1 << 20, 'a');
      const next = Buffer.alloc(8 << 20, 'b');
      await storage.put(key, old, 'application/pdf');
      let writing = true;
      const write = storage.put(key, next, 'application/pdf').finally(() => {
        writing = false;
      });
      const seen = new Set<string>();
      do {
        const got = (await storage.get(key))!;
        if (got.equals(old)) seen.add('old');
        else if (got.equals(next)) seen.add('new');
        else throw new Error(`read ${got.length} bytes that are neither the old content nor the new`);
      } while (writing);
      await write;
      expect((await storage.get(key))!.equals(next)).toBe(true);
    });

    it('concurrent writers leave one whole version', async () => {
      const key = 'reports/tok_5/report.pdf';
      const versions = Array.from({ length: 8 }, (_, i) => Buffer.alloc(256 * 1024 + i, String(i)));
      await Promise.all(versions.map((v) => storage.put(key, v, 'application/pdf')));
      const got = (await storage.get(key))!;
      expect(versions.some((v) => v.equals(got))).toBe(true);
    });

    it('an aborted write stores nothing', async () => {
      const aborted = AbortSignal.abort();
      await expect(storage.put('reports/tok_6/report.pdf', 'x', 'application/pdf', { signal: aborted })).rejects.toThrow();
      expect(await storage.exists('reports/tok_6/report.pdf')).toBe(false);
    });
  });
}

reportStorageSuite('LocalStorage', async () => {
  const root = await mkdtemp(join(tmpdir(), 'flows-storage-'));
  return { storage: new LocalStorage(join(root, 'store')), dispose: () => rm(root, { recursive: true, force: true }) };
});

describe('LocalStorage on disk', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'flows-storage-'));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('writes under its folder only, and leaves no temporary files', async () => {
    const storage = new LocalStorage(join(root, 'store'));
    await storage.put('reports/tok_7/report.pdf', 'one', 'application/pdf');
    await storage.put('reports/tok_7/report.pdf', 'two', 'application/pdf');
    await expect(storage.put('../outside.txt', 'x', 'text/plain')).rejects.toThrow(NonRetriableError);
    expect(await readdir(root)).toEqual(['store']);
    expect(await readdir(join(root, 'store/reports/tok_7'))).toEqual(['report.pdf']);
    expect(await storage.url('reports/tok_7/report.pdf')).toBe(`file://${join(root, 'store/reports/tok_7/report.pdf')}`);
  });
});
