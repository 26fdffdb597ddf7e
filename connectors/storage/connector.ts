import { join, resolve } from 'node:path';
import { Type } from '@sinclair/typebox';
import { defineConnector } from '../../engine/sdk.ts';
import type { ReportStorage } from './index.ts';
import { LocalStorage } from './local.ts';

/** `connectors.storage` in the engine config. */
export const StorageConfigSchema = Type.Object(
  {
    dir: Type.Optional(Type.String({ minLength: 1, description: 'Folder for report files, relative to where flows runs (default .flows/reports).' })),
  },
  { additionalProperties: false },
);

/** Where finished reports are kept: files on local disk, so always "live" (no secrets, no sandbox). */
export const storageConnector = defineConnector({
  name: 'storage',
  description: 'Report files (HTML and PDF) under a folder, written atomically; an S3-compatible store would implement the same small interface.',
  config: StorageConfigSchema,
  secrets: [],
  create: (config, deps): ReportStorage => new LocalStorage(config.dir ? resolve(config.dir) : join(deps.stateDir, 'reports')),
});
