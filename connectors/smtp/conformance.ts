import type { ConformanceAdapter } from '../sandbox/conformance.ts';
import { wellFormed } from '../sandbox/conformance.ts';
import type { EmailSender, SendResult } from './client.ts';
import { smtpConnector } from './connector.ts';
import { startSmtpSandbox } from './sandbox.ts';

const AUTH = { user: 'reports', pass: 'sandbox-password-9d2e' };

/** SMTP in the connector suite: one message, signed in (live: to SMTP_CONFORMANCE_TO, from it too unless SMTP_CONFORMANCE_FROM). */
export const smtpConformance: ConformanceAdapter<EmailSender> = {
  spec: smtpConnector,
  async sandbox(faults) {
    const sandbox = await startSmtpSandbox({ auth: AUTH, faults });
    return { config: { host: sandbox.host, port: sandbox.port, auth: AUTH }, faults: sandbox.faults, close: () => sandbox.close() };
  },
  call(client, { signal, env }) {
    const to = env.SMTP_CONFORMANCE_TO ?? 'conformance@acme.example';
    const from = env.SMTP_CONFORMANCE_FROM ?? env.SMTP_CONFORMANCE_TO ?? 'reports@flows.example';
    return client.send({ from: { email: from, name: 'flows conformance' }, to, subject: 'flows connector check', html: '<p>A connector check.</p>', text: 'A connector check.' }, { signal });
  },
  check(result) {
    const { accepted, messageId } = result as SendResult;
    wellFormed(accepted.length === 1 && typeof messageId === 'string' && messageId.length > 0, 'one recipient accepted, with a message id');
  },
  faults: ['hang', 'drop', 'throttle', 'error', 'reject'],
  throttle: 'retriable',
  wrongKey: { config: { auth: { user: 'reports', pass: 'wrong-password-4f1c9e' } }, secret: 'wrong-password-4f1c9e' },
  timeout: (ms) => ({ socket_timeout: `${ms}ms` }),
  live: {
    variables: ['SMTP_HOST', 'SMTP_USER', 'SMTP_PASSWORD', 'SMTP_CONFORMANCE_TO'],
    config: (env) => ({ host: env.SMTP_HOST, port: env.SMTP_PORT ? Number(env.SMTP_PORT) : undefined, auth: { user: env.SMTP_USER, pass: env.SMTP_PASSWORD } }),
  },
};
