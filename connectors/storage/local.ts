import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NonRetriableError } from '../../engine/sdk.ts';
import { checkStorageKey, type ReportStorage, type StoredObject } from './index.ts';

/**
 * Reports as files under one folder, a key being the path below it. A write goes to a
 * temporary file beside the target, is flushed, then renamed over it: a reader sees the
 * old file or the new one, never half of one, and a crash leaves at most a stray
 * `.*.tmp` file. The file system keeps no content type; readers go by the extension.
 */
export class LocalStorage implements ReportStorage {
  readonly root: string;

  constructor(rootDir: string) {
    this.root = resolve(rootDir);
  }

  async put(key: string, content: Buffer | string, _contentType: string, options: { signal?: AbortSignal } = {}): Promise<StoredObject> {
    const path = this.pathOf(key);
    const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    options.signal?.throwIfAborted();
    await mkdir(dirname(path), { recursive: true });
    const temp = join(dirname(path), `.${basename(path)}.${randomUUID()}.tmp`);
    try {
      const file = await open(temp, 'wx');
      try {
        await file.writeFile(body, { signal: options.signal });
        await file.sync();
      } finally {
        await file.close();
      }
      options.signal?.throwIfAborted();
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    return { key, size: body.length };
  }

  async get(key: string, options: { signal?: AbortSignal } = {}): Promise<Buffer | undefined> {
    const path = this.pathOf(key);
    try {
      return await readFile(path, { signal: options.signal });
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async exists(key: string, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const path = this.pathOf(key);
    options.signal?.throwIfAborted();
    try {
      return (await stat(path)).isFile();
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  async url(key: string): Promise<string> {
    return pathToFileURL(this.pathOf(key)).href;
  }

  private pathOf(key: string): string {
    const path = join(this.root, ...checkStorageKey(key).split('/'));
    // checkStorageKey already refuses "..": this guards the guard.
    if (!path.startsWith(this.root.endsWith(sep) ? this.root : this.root + sep)) throw new NonRetriableError(`storage key ${JSON.stringify(key)} resolves outside ${this.root}`);
    return path;
  }
}

/** No such file, or a folder where the key expects one (a key naming a folder is no object). */
function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}
