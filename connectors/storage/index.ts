import { NonRetriableError } from '../../engine/sdk.ts';

/**
 * Where finished reports are kept until the buyer downloads them. Keys are relative paths
 * such as `reports/<token>/report.pdf`.
 *
 * Kept small on purpose: an S3-compatible store implements it with PutObject, GetObject
 * and HeadObject (and a presigned GetObject for `url`), and every key that passes
 * `checkStorageKey` is already a valid object key there.
 */
export interface ReportStorage {
  /** Stores `content` under `key`, replacing what was there; readers see the old or the new content, never part of it. */
  put(key: string, content: Buffer | string, contentType: string, options?: { signal?: AbortSignal }): Promise<StoredObject>;
  /** The content under `key`, or undefined when there is none. */
  get(key: string, options?: { signal?: AbortSignal }): Promise<Buffer | undefined>;
  exists(key: string, options?: { signal?: AbortSignal }): Promise<boolean>;
  /** A link to the content, for a store that can give one. */
  url?(key: string): Promise<string>;
}

export interface StoredObject {
  key: string;
  /** Bytes stored (a string is stored as UTF-8). */
  size: number;
}

/** S3's limit on a key, in bytes of UTF-8. */
const MAX_KEY_BYTES = 1024;

/** Why `key` cannot name an object, or undefined when it can. */
function keyProblem(key: string): string | undefined {
  if (typeof key !== 'string') return 'is not a string';
  if (key === '') return 'is empty';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `is longer than ${MAX_KEY_BYTES} bytes`;
  if (key.includes('\\')) return 'contains a backslash; separate folders with "/"';
  if (key.startsWith('/') || /^[A-Za-z]:/.test(key)) return 'is an absolute path';
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'contains a control character';
  for (const segment of key.split('/')) {
    if (segment === '..') return 'contains ".."; a key may not reach outside the store';
    if (segment === '.') return 'contains a "." segment';
    if (segment === '') return 'contains an empty segment ("//" or a trailing "/")';
  }
  return undefined;
}

/**
 * Returns `key` when it is a plain relative path; otherwise throws NonRetriableError saying
 * what is wrong, as the same key would fail on every attempt. Every store calls this first.
 */
export function checkStorageKey(key: string): string {
  const problem = keyProblem(key);
  if (problem) throw new NonRetriableError(`storage key ${JSON.stringify(key)} ${problem} (write a relative path like "reports/<token>/report.pdf")`);
  return key;
}
