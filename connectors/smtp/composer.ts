import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * Builds and DKIM-signs messages on a worker thread, so the event loop that runs the
 * pipeline (its database statements, its templates, the SMTP conversation) never waits on
 * MIME encoding or an RSA signature: together about two thirds of what a send costs the
 * process. nodemailer does the work there with its own composer and signer (a stream
 * transport that returns the message as a buffer); the SMTP pool then sends that buffer as
 * it is. One set of workers serves every mailer of the process; an idle one never keeps the
 * process alive, and every one ends with it.
 *
 * The worker's code is a string: the CLI runs from a bundle of the sources, where a worker
 * file beside this module would not be found. It loads nodemailer by the path resolved here.
 */

/** What nodemailer's composer takes (the fields SmtpMailer gives it). */
export interface ComposeInput {
  from: { name: string; address: string };
  to: (string | { name: string; address: string })[];
  subject: string;
  html: string;
  text: string;
  headers?: Record<string, string>;
  attachments?: { filename: string; content: Buffer; contentType: string }[];
  messageId?: string;
  inReplyTo?: string;
  references?: string[];
  dkim?: { domainName: string; keySelector: string; privateKey: string; headerFieldNames: string };
}

export interface Composed {
  raw: Buffer;
  messageId: string;
  envelope: { from: string; to: string[] };
}

/** An error nodemailer raised while composing, with its code (e.g. EENVELOPE). */
export class ComposeError extends Error {
  override readonly name = 'ComposeError';
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createTransport } = require(workerData.nodemailer);
const { createPrivateKey } = require('node:crypto');
const transport = createTransport({ streamTransport: true, buffer: true, newline: 'windows', disableFileAccess: true, disableUrlAccess: true });
// A PEM key handed to the signer is parsed again for every signature, which costs twice the
// RSA operation itself; parsed once here, each signature is the operation alone.
const keys = new Map();
// nodemailer's signer sends a message unsigned when the key fails; a key that does not parse
// fails the message here instead (EDKIMKEY, permanent: sending it again would not help).
const badKey = (dkim, why) => Object.assign(new Error('the DKIM private key of ' + dkim.domainName + ' (selector ' + dkim.keySelector + ') ' + why), { code: 'EDKIMKEY' });
const keyOf = (dkim) => {
  let key = keys.get(dkim.privateKey);
  if (key) return key;
  try {
    key = createPrivateKey(dkim.privateKey);
  } catch (err) {
    throw badKey(dkim, 'is not a PEM private key: ' + err.message);
  }
  if (key.asymmetricKeyType !== 'rsa') throw badKey(dkim, 'is an ' + key.asymmetricKeyType + ' key; messages are signed with rsa-sha256, so give an RSA key (2048 bits)');
  keys.set(dkim.privateKey, key);
  return key;
};
parentPort.on('message', ({ id, mail }) => {
  let composed;
  try {
    if (mail.dkim) mail.dkim.privateKey = keyOf(mail.dkim);
    composed = transport.sendMail(mail);
  } catch (err) {
    composed = Promise.reject(err);
  }
  composed.then(
    (info) => {
      const raw = info.message;
      parentPort.postMessage({ id, raw, messageId: info.messageId, envelope: info.envelope });
    },
    (err) => parentPort.postMessage({ id, error: { message: String(err && err.message || err), code: err && err.code } }),
  );
});
`;

interface Pending {
  resolve: (c: Composed) => void;
  reject: (e: Error) => void;
}

class ComposeWorker {
  readonly pending = new Map<number, Pending>();
  private readonly worker: Worker;

  constructor(nodemailer: string, onGone: (w: ComposeWorker) => void) {
    this.worker = new Worker(WORKER, { eval: true, workerData: { nodemailer } });
    this.worker.on('message', (m: { id: number; raw?: Uint8Array; messageId?: string; envelope?: Composed['envelope']; error?: { message: string; code?: string } }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      if (m.error) p.reject(new ComposeError(m.error.message, m.error.code));
      else p.resolve({ raw: Buffer.from(m.raw!.buffer, m.raw!.byteOffset, m.raw!.byteLength), messageId: m.messageId!, envelope: m.envelope! });
    });
    const gone = (reason: Error) => {
      onGone(this);
      for (const p of this.pending.values()) p.reject(reason);
      this.pending.clear();
    };
    this.worker.on('error', (err) => gone(new Error(`the message composer stopped: ${err.message}`, { cause: err })));
    this.worker.on('exit', (code) => gone(new Error(`the message composer exited (code ${code}) before the message was built`)));
    // Idle, the worker never keeps the process alive (unref after the listeners: adding one refs it again).
    this.worker.unref();
  }

  compose(id: number, mail: ComposeInput): Promise<Composed> {
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, mail });
    });
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/** The process's composer workers: as many as the machine has cores beyond the one the pipeline runs on, at least one, at most four. */
class Composer {
  private workers: ComposeWorker[] = [];
  private nextId = 1;
  private users = 0;
  private readonly size = Math.max(1, Math.min(4, availableParallelism() - 1));
  private nodemailer: string | undefined;

  compose(mail: ComposeInput): Promise<Composed> {
    this.nodemailer ??= createRequire(import.meta.url).resolve('nodemailer');
    if (this.workers.length < this.size && this.workers.every((w) => w.pending.size > 0)) {
      this.workers.push(new ComposeWorker(this.nodemailer, (gone) => (this.workers = this.workers.filter((w) => w !== gone))));
    }
    const idlest = this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    return idlest.compose(this.nextId++, mail);
  }

  /** A mailer that will compose: the workers stay until the last one lets go. */
  use(): () => Promise<void> {
    this.users++;
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      if (--this.users === 0) await this.stop();
    };
  }

  /** Ends every worker; a message one was building fails with a retriable error. The next compose starts a new one. */
  async stop(): Promise<void> {
    const workers = this.workers;
    this.workers = [];
    await Promise.all(workers.map((w) => w.terminate()));
  }

  /** Messages being built now. */
  get building(): number {
    return this.workers.reduce((n, w) => n + w.pending.size, 0);
  }
}

export const composer = new Composer();
