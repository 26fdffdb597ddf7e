import { join } from 'node:path';
import { Liquid } from 'liquidjs';
import { defineResource } from '../../engine/sdk.ts';

/**
 * The email templates of the project, pipelines/templates/emails/: `<name>.html.liquid`
 * rendered with every {{ }} HTML-escaped, `<name>.txt.liquid` as plain text.
 */

export interface EmailTemplates {
  html: Liquid;
  text: Liquid;
  dir: string;
}

export const emailTemplatesResource = defineResource<EmailTemplates>({
  name: 'email-templates',
  create: (env) => {
    const dir = join(env.projectDir, 'templates', 'emails');
    const common = { root: dir, strictVariables: true, strictFilters: true, cache: true } as const;
    return { dir, html: new Liquid({ ...common, outputEscape: 'escape' }), text: new Liquid(common) };
  },
});
