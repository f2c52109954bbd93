import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Bus } from '../../topics/bus.ts';
import { loadAssets } from './assets.ts';
import { TOKEN_COOKIE, isLoopback, loopbackHostHeader, presentedToken, sameOrigin, tokenMatches } from './auth.ts';
import { type LagGroup, watchBus } from './bus-source.ts';
import { boundEvent, checkEvent, checkpointEventFromRecord, metricEventFromRecord, type MonitorEvent } from './events.ts';
import { EventHistory, type HistoryLimits } from './history.ts';
import { monitorTopics } from './topics.ts';

/** Close codes the page understands (4000-4999 are application codes). */
export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_FORBIDDEN_ORIGIN = 4403;
/** ws' own code for a client that cannot keep up ("try again later"); the page reconnects. */
export const CLOSE_TOO_SLOW = 1013;

export interface MonitorOptions {
  /** Bus to read the metrics and checkpoints topics from; without one only `publish` feeds the monitor. */
  bus?: Bus;
  /** Address to bind (default 127.0.0.1). A non-loopback address requires a token. */
  host?: string;
  /** Port to bind (0 picks a free one; see `Monitor.port`). */
  port: number;
  /** When set, every HTTP request and websocket must present it (`?token=`, Bearer, or the page cookie). */
  token?: string;
  /** Run namespace whose topics to read. */
  namespace?: string;
  /** Consumer group prefix (default a fresh `dice-monitor-<random>`, so each monitor reads everything). */
  groupId?: string;
  history?: HistoryLimits;
  /** Consumer groups whose lag to observe, e.g. each stage's group on its input topic. */
  lagGroups?: LagGroup[];
  /** Bus observation period in ms (throughput, lag); 0 turns them off (default 2000). */
  pollIntervalMs?: number;
  /** Largest serialized event sent; bigger ones are truncated (default 16 KiB). */
  maxEventBytes?: number;
  /** Largest message sent; events are batched up to it (default 256 KiB). */
  maxMessageBytes?: number;
  /** Largest frame accepted from a client; a bigger one closes that connection (default 1 KiB). */
  maxIncomingBytes?: number;
  /** A client with more than this queued unsent is disconnected (it reconnects and resyncs) (default 8 MiB). */
  maxBufferedBytes?: number;
  /** Live events are batched for this long (default 100 ms). */
  flushIntervalMs?: number;
  /** Most websocket clients at once; one more is refused with HTTP 503 (default 32). */
  maxClients?: number;
  /** Where errors reading the bus, or failing a request, go (default: stderr). Never thrown: the monitor must not stop the work it watches. */
  onError?: (err: unknown) => void;
}

export interface Monitor {
  /** The dashboard's address (with `?token=` when a token is set). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** In-process feed (for `dice run/serve --monitor`): validates, keeps and broadcasts one event. */
  publish(event: { stage: string; type: string; time?: number; round?: number; [field: string]: unknown }): MonitorEvent;
  /** The bounded history a page joining now would get. */
  history(): MonitorEvent[];
  /** Connected, authorized websocket clients. */
  readonly clients: number;
  /** Frames received from clients and ignored (the monitor is read-only). */
  readonly ignoredClientMessages: number;
  close(): Promise<void>;
}

/** Protocol version sent in `hello`. */
export const MONITOR_PROTOCOL = 1;

interface Client {
  ws: WebSocket;
  /** False while the history is being sent; live events queue meanwhile. */
  live: boolean;
  queue: string[];
}

function securityHeaders(res: ServerResponse): void {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader(
    'Content-Security-Policy',
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
  );
}

/** Packs serialized events into `events` messages of at most `maxBytes` each. */
export function packEvents(jsons: string[], maxBytes: number): string[] {
  const head = '{"kind":"events","events":[';
  const tail = ']}';
  const messages: string[] = [];
  let parts: string[] = [];
  let size = head.length + tail.length;
  for (const j of jsons) {
    const add = Buffer.byteLength(j) + (parts.length ? 1 : 0);
    if (parts.length && size + add > maxBytes) {
      messages.push(head + parts.join(',') + tail);
      parts = [];
      size = head.length + tail.length;
    }
    parts.push(j);
    size += Buffer.byteLength(j) + (parts.length > 1 ? 1 : 0);
  }
  if (parts.length) messages.push(head + parts.join(',') + tail);
  return messages;
}

/** The request target as a URL, or null when it is not an origin-form path (e.g. `http://[`). */
function requestTarget(target: string | undefined): URL | null {
  if (target === undefined || !target.startsWith('/')) return null;
  try {
    return new URL(target, 'http://monitor.invalid');
  } catch {
    return null;
  }
}

function sendAsync(ws: WebSocket, data: string): Promise<void> {
  return new Promise((resolve, reject) => ws.send(data, (err) => (err ? reject(err) : resolve())));
}

/**
 * Starts the live monitor: an HTTP server for the dashboard and a read-only websocket at /ws on the
 * same port. A page that connects gets `hello`, the history so far in `events` batches, `live`, then
 * live `events` batches.
 */
export async function startMonitor(options: MonitorOptions): Promise<Monitor> {
  const host = options.host ?? '127.0.0.1';
  const token = options.token;
  if (token !== undefined && token.length === 0) throw new Error('monitor token must not be empty');
  if (!isLoopback(host) && token === undefined) {
    throw new Error(`binding the monitor to ${host} exposes it beyond this machine; set a token (--monitor-token / --token)`);
  }
  const maxMessageBytes = options.maxMessageBytes ?? 256 * 1024;
  const maxEventBytes = options.maxEventBytes ?? 16 * 1024;
  if (maxEventBytes + 64 > maxMessageBytes) throw new Error('monitor maxEventBytes must be at least 64 bytes below maxMessageBytes');
  const maxBufferedBytes = options.maxBufferedBytes ?? 8 * 1024 * 1024;
  const flushIntervalMs = options.flushIntervalMs ?? 100;
  const onError = options.onError ?? ((err: unknown) => console.error(`dice monitor: ${err instanceof Error ? err.message : String(err)}`));

  const history = new EventHistory(options.history);
  const clients = new Set<Client>();
  const assets = loadAssets();
  let ignored = 0;
  let closed = false;

  const flush = () => {
    for (const c of clients) {
      if (!c.live || c.queue.length === 0) continue;
      if (c.ws.bufferedAmount > maxBufferedBytes) {
        c.ws.close(CLOSE_TOO_SLOW, 'monitor client too slow; reconnect to resync');
        clients.delete(c);
        continue;
      }
      for (const m of packEvents(c.queue, maxMessageBytes)) c.ws.send(m);
      c.queue = [];
    }
  };
  const flushTimer = setInterval(flush, flushIntervalMs);
  flushTimer.unref();

  const accept = (event: MonitorEvent): MonitorEvent => {
    const bounded = boundEvent(history.add(event), maxEventBytes);
    for (const c of clients) c.queue.push(bounded.json);
    return bounded.event;
  };

  /**
   * Why a request is refused before anything else looks at it (null: go on): a target that is not a
   * URL path, or — without a token — a Host that is not a loopback name, which is what a DNS-rebinding
   * page would send (a token already makes such a page fail).
   */
  const refusal = (req: IncomingMessage): { status: number; text: string } | { url: URL } => {
    const url = requestTarget(req.url);
    if (!url) return { status: 400, text: 'bad request target\n' };
    if (token === undefined && !loopbackHostHeader(req.headers.host)) {
      return { status: 403, text: 'the monitor answers only to a loopback Host (127.0.0.1, localhost, [::1]) unless it has a token\n' };
    }
    return { url };
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    try {
      handleRequest(req, res);
    } catch (err) {
      onError(err);
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end();
    }
  });
  // Unparseable requests: answer 400 and close, never throw.
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  const handleRequest = (req: IncomingMessage, res: ServerResponse) => {
    securityHeaders(res);
    const checked = refusal(req);
    if (!('url' in checked)) {
      res.writeHead(checked.status, { 'Content-Type': 'text/plain', Connection: 'close' }).end(checked.text);
      return;
    }
    const url = checked.url;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('the monitor is read-only\n');
      return;
    }
    if (token !== undefined) {
      const presented = presentedToken(req, url);
      if (!tokenMatches(token, presented.token)) {
        res.writeHead(401, { 'Content-Type': 'text/plain' }).end('monitor token required: open the dashboard with ?token=...\n');
        return;
      }
      // The page's assets and websocket then authenticate with the cookie, so the token need not live in page code.
      if (presented.fromQuery) res.setHeader('Set-Cookie', `${TOKEN_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`);
    }
    const asset = assets.get(url.pathname);
    if (!asset) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': asset.contentType, 'Content-Length': asset.body.length });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  };

  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxIncomingBytes ?? 1024, perMessageDeflate: false });
  const maxClients = options.maxClients ?? 32;
  server.on('upgrade', (req, socket: Duplex, head) => {
    socket.on('error', () => {}); // a client that vanishes mid-handshake
    try {
      handleUpgrade(req, socket, head);
    } catch (err) {
      onError(err);
      socket.destroy();
    }
  });
  // CONNECT (a proxy request) is not for us: say so instead of dropping the connection.
  server.on('connect', (_req, socket: Duplex) => {
    socket.on('error', () => {});
    refuseUpgrade(socket, '405 Method Not Allowed');
  });
  const refuseUpgrade = (socket: Duplex, status: string) => socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const checked = refusal(req);
    if (!('url' in checked)) return refuseUpgrade(socket, checked.status === 400 ? '400 Bad Request' : '403 Forbidden');
    const url = checked.url;
    if (url.pathname !== '/ws' || closed) return refuseUpgrade(socket, '404 Not Found');
    if (wss.clients.size >= maxClients) return refuseUpgrade(socket, '503 Service Unavailable');
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {}); // e.g. an oversized frame: ws closes the connection itself (1009)
      if (!sameOrigin(req)) return ws.close(CLOSE_FORBIDDEN_ORIGIN, 'cross-origin monitor connection refused');
      if (token !== undefined && !tokenMatches(token, presentedToken(req, url).token)) {
        return ws.close(CLOSE_UNAUTHORIZED, 'monitor token required');
      }
      void attach(ws);
    });
  };

  const attach = async (ws: WebSocket) => {
    const client: Client = { ws, live: false, queue: [] };
    // Read-only: client frames are counted and dropped.
    ws.on('message', () => {
      ignored++;
    });
    ws.on('close', () => clients.delete(client));
    const snapshot = history.snapshot();
    clients.add(client); // from here on, new events queue behind the snapshot
    try {
      await sendAsync(ws, JSON.stringify({ kind: 'hello', protocol: MONITOR_PROTOCOL, namespace: options.namespace ?? null, historyEvents: snapshot.length, evicted: history.evicted }));
      const jsons = snapshot.map((e) => boundEvent(e, maxEventBytes).json);
      for (const m of packEvents(jsons, maxMessageBytes)) {
        if (ws.readyState !== ws.OPEN) return;
        await sendAsync(ws, m);
      }
      await sendAsync(ws, JSON.stringify({ kind: 'live' }));
      client.live = true;
    } catch {
      clients.delete(client);
    }
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  const topics = monitorTopics(options.namespace);
  const watcher = options.bus
    ? watchBus({
        bus: options.bus,
        watched: [
          { topic: topics.metrics, toEvent: metricEventFromRecord },
          { topic: topics.checkpoints, toEvent: checkpointEventFromRecord },
        ],
        groupId: options.groupId ?? `dice-monitor-${randomBytes(6).toString('hex')}`,
        topicFilter: topics.belongs,
        lagGroups: options.lagGroups,
        pollIntervalMs: options.pollIntervalMs ?? 2000,
        onEvent: (e) => {
          if (!closed) accept(e);
        },
        onError,
      })
    : undefined;

  const urlHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const url = `http://${urlHost}:${port}/${token !== undefined ? `?token=${encodeURIComponent(token)}` : ''}`;

  return {
    url,
    host,
    port,
    publish: (event) => accept(checkEvent(event)),
    history: () => history.snapshot(),
    get clients() {
      return [...clients].length;
    },
    get ignoredClientMessages() {
      return ignored;
    },
    async close() {
      if (closed) return;
      closed = true;
      watcher?.stop();
      flush();
      clearInterval(flushTimer);
      // Going-away close frames let pages show "reconnecting"; stragglers are cut after a moment.
      const sockets = [...wss.clients];
      for (const ws of sockets) ws.close(1001, 'monitor shutting down');
      await Promise.race([
        Promise.all(sockets.map((ws) => (ws.readyState === ws.CLOSED ? undefined : new Promise((r) => ws.once('close', r))))),
        new Promise((r) => setTimeout(r, 500).unref()),
      ]);
      for (const ws of sockets) ws.terminate();
      wss.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
