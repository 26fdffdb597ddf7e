import { join } from 'node:path';
import { defineConnector } from '../../engine/sdk.ts';
import { type EmailSender, SmtpConfigSchema, SmtpMailer } from './client.ts';
import { startSmtpSandbox } from './sandbox.ts';

/** SMTP as the engine sees it: the configured server when `host` is set, else the sandbox, which keeps every message in .flows/outbox. */
export const smtpConnector = defineConnector({
  name: 'smtp',
  description: 'Email over SMTP through a pool of connections (nodemailer); 4xx replies are retried, 5xx are not.',
  config: SmtpConfigSchema,
  secrets: ['host'],
  create: (config): EmailSender => new SmtpMailer(config),
  async sandbox(_config, deps) {
    // Like a real server, it refuses mailboxes that cannot exist: any address at .invalid (RFC 2606) is a hard bounce.
    const sandbox = await startSmtpSandbox({ outDir: join(deps.stateDir, 'outbox'), rejectDomains: ['invalid'] });
    return { config: { host: sandbox.host, port: sandbox.port, secure: false, require_tls: false, auth: undefined }, close: () => sandbox.close() };
  },
  close: (sender) => sender.close(),
});
