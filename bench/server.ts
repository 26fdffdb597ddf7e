/**
 * Zero-latency HTTP server for bench/engine.ts, meant to run in its own process so its CPU
 * is not on the benchmarked event loop. Prints its port (one line) on stdout once listening.
 *
 *   GET /item/<id>  ->  {"id":<id>,"score":<scoreOf(id)>,"name":"item-<id>"}
 *
 * Run: node --import tsx bench/server.ts   (PORT=... to pick the port)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { scoreOf } from './score.ts';

const PATH = /^\/item\/(\d+)$/;

function start(): void {
  const server = createServer((req, res) => {
    const m = PATH.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    const id = Number(m[1]);
    const body = JSON.stringify({ id, score: scoreOf(id), name: `item-${id}` });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
    process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
  });
  const stop = () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Spawned by the bench with a stdin pipe: the pipe closing means the parent is gone.
  if (process.argv.includes('--exit-with-stdin')) process.stdin.on('end', stop).resume();
}

if (/server\.ts$/.test(process.argv[1] ?? '')) start();
