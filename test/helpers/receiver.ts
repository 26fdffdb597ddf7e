import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Receiver {
  server: Server;
  url: string;
  /** Deliveries per Idempotency-Key header. */
  byKey: Map<string, number>;
  total(): number;
  close(): Promise<void>;
}

/** An outside system that counts deliveries per idempotency key, answering after `delayMs`. */
export function startReceiver(delayMs = 4): Promise<Receiver> {
  const byKey = new Map<string, number>();
  let total = 0;
  const server = createServer((req, res) => {
    const key = String(req.headers['idempotency-key']);
    byKey.set(key, (byKey.get(key) ?? 0) + 1);
    total++;
    req.resume();
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ receipt: `rcpt-${key}` }));
    }, delayMs);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        server,
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        byKey,
        total: () => total,
        close: () => new Promise<void>((r) => server.close(() => r())),
      }),
    ),
  );
}
