import { join } from 'node:path';
import { defineResource } from '../engine/sdk.ts';
import { createReportRenderer, type ReportRenderer } from './report/templates.ts';

/**
 * What steps share that is not an outside system: the project's templates and folders.
 * Connectors (SEMrush, Claude, SMTP ...) are specs in connectors/, used with ctx.use(spec).
 */

/** Report and email templates from the project's templates folder. */
export const templatesResource = defineResource<ReportRenderer>({
  name: 'templates',
  create: (env) => createReportRenderer({ templateDir: join(env.projectDir, 'templates') }),
});

/** Where the project's files are (source files named in the config are relative to it). */
export const projectResource = defineResource<{ projectDir: string; stateDir: string }>({
  name: 'project',
  create: (env) => ({ projectDir: env.projectDir, stateDir: env.stateDir }),
});
