// Socket.IO 4 peer server for eventcast-bench (see bench/README.md, "Peers").
//
// - WebSocket-only Engine.IO transport at /socket.io/ (no long-polling).
// - A client joins the room of a topic with `socket.emit('subscribe', topic)`;
//   with an acknowledgement callback it gets `{ok: true}` once joined.
// - `POST /publish/:topic` with a JSON body does `io.to(topic).emit('event', body)`
//   and answers 200 `{"ok":true}` (400 on invalid JSON).
// - `GET /healthz` answers 200 `ok`.
// - With REDIS_URL (one Redis node, e.g. redis://127.0.0.1:6379) the
//   @socket.io/redis-adapter relays broadcasts between instances.
//
// Environment: PORT (default 3000; 0 picks a free port), HOST (default
// 127.0.0.1), REDIS_URL (optional). Prints `listening HOST:PORT` on stdout
// once ready.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const PORT = Number.parseInt(process.env.PORT ?? '3000', 10);
const HOST = process.env.HOST || '127.0.0.1';
const REDIS_URL = process.env.REDIS_URL || '';
const MAX_BODY = 1 << 20;

function reply(res, status, body) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain' : 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

let io;

function handle(req, res) {
  const url = req.url || '/';
  if (req.method === 'GET' && url === '/healthz') {
    reply(res, 200, 'ok');
    return;
  }
  const m = /^\/publish\/([^/?]+)$/.exec(url);
  if (!m || req.method !== 'POST') {
    reply(res, 404, { ok: false, error: 'not found' });
    return;
  }
  let topic;
  try {
    topic = decodeURIComponent(m[1]);
  } catch {
    reply(res, 400, { ok: false, error: 'bad topic' });
    return;
  }
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) {
      reply(res, 413, { ok: false, error: 'body too large' });
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (size > MAX_BODY) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      reply(res, 400, { ok: false, error: 'invalid JSON' });
      return;
    }
    io.to(topic).emit('event', body);
    reply(res, 200, { ok: true });
  });
}

async function main() {
  const server = http.createServer(handle);
  // Keep publisher connections open between bench steps.
  server.keepAliveTimeout = 60_000;
  io = new Server(server, {
    transports: ['websocket'],
    serveClient: false,
    cors: { origin: '*' },
  });
  if (REDIS_URL) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pub = createClient({ url: REDIS_URL });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on('error', (e) => console.error('redis:', e.message));
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
    console.error(`redis adapter on ${REDIS_URL}`);
  }
  io.on('connection', (socket) => {
    socket.on('subscribe', (topic, ack) => {
      if (typeof topic !== 'string' || topic === '') {
        if (typeof ack === 'function') ack({ ok: false, error: 'topic must be a non-empty string' });
        return;
      }
      socket.join(topic);
      if (typeof ack === 'function') ack({ ok: true });
    });
  });
  server.listen(PORT, HOST, () => {
    const a = server.address();
    console.log(`listening ${a.address}:${a.port}`);
  });
  const stop = () => {
    io.close();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
