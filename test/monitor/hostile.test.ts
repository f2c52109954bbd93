import { strict as assert } from 'node:assert';
import { connect as netConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startMonitor, type Monitor } from '../../src/monitor/server.ts';
import { Rng } from '../../src/util/random.ts';
import { connect, eventually } from './helpers.ts';

/** Sends raw bytes to the monitor and resolves with what it answered before closing (or after `ms`). */
function raw(port: number, bytes: string | Buffer, ms = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, ms);
    socket.on('data', (d) => {
      got += d.toString('latin1');
      // One answer is enough: a status line and the end of the headers.
      if (/^HTTP\/1\.1 \d{3}/.test(got) && got.includes('\r\n\r\n')) done();
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.write(bytes);
  });
}

const status = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? NaN);
const get = (target: string, host: string, extra = '') => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`;
const upgrade = (target: string, host: string, extra = '') =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`;

describe('monitor under hostile requests', () => {
  let monitor: Monitor;
  let host: string;
  const errors: unknown[] = [];
  before(async () => {
    monitor = await startMonitor({ port: 0, maxClients: 3, onError: (e) => errors.push(e) });
    host = `127.0.0.1:${monitor.port}`;
  });
  after(async () => {
    await monitor.close();
  });

  it('answers a target that is not a URL with 400, on HTTP and websocket paths, and keeps serving', async () => {
    assert.equal(status(await raw(monitor.port, get('http://[', host))), 400);
    assert.equal(status(await raw(monitor.port, upgrade('http://[', host))), 400);
    assert.equal(status(await raw(monitor.port, get('/', host))), 200);
    assert.deepEqual(errors, []);
  });

  it('refuses a Host that is not a loopback name when there is no token (DNS rebinding)', async () => {
    assert.equal(status(await raw(monitor.port, get('/', 'evil.example:80'))), 403);
    assert.equal(status(await raw(monitor.port, upgrade('/ws', 'rebind.attacker.test'))), 403);
    for (const ok of [host, `localhost:${monitor.port}`, `[::1]:${monitor.port}`, 'localhost']) {
      assert.equal(status(await raw(monitor.port, get('/', ok))), 200, ok);
    }
  });

  it('with a token, the token is the check (any Host), and a wrong one is 401', async () => {
    const m = await startMonitor({ port: 0, token: 's3cret' });
    try {
      assert.equal(status(await raw(m.port, get('/', 'monitor.lan:8787'))), 401);
      assert.equal(status(await raw(m.port, get('/?token=s3cret', 'monitor.lan:8787'))), 200);
    } finally {
      await m.close();
    }
  });

  it('caps concurrent websocket clients (503 beyond the cap) and admits again when one leaves', async () => {
    const clients = [0, 1, 2].map(() => connect(`ws://127.0.0.1:${monitor.port}/ws`));
    for (const c of clients) await c.until((m) => m.kind === 'live');
    assert.equal(monitor.clients, 3);
    assert.equal(status(await raw(monitor.port, upgrade('/ws', host))), 503);
    clients[0].ws.close();
    await clients[0].closed;
    await eventually('a free slot', () => monitor.clients === 2);
    const again = connect(`ws://127.0.0.1:${monitor.port}/ws`);
    await again.until((m) => m.kind === 'live');
    for (const c of [...clients.slice(1), again]) c.ws.close();
    await eventually('all gone', () => monitor.clients === 0);
  });

  it('fuzz: a few hundred generated malformed requests each get an answer below 500, and the monitor stays up', async () => {
    const rng = new Rng(20261202);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rng.next() * xs.length)];
    const junk = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rng.next() * 256)));
    const targets = ['http://[', 'http://[::1', '//', '*', '%', '/%zz', '/\u00ff', '/ws?token=%', '/ws#x', 'ws://[', '/..%2f..%2f', `/${'a'.repeat(9000)}`, 'nopath', '/?a=%E0%A4%A', 'http://127.0.0.1:1/'];
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'BREW', 'G\u0000T', '', 'CONNECT'];
    const hosts = [host, 'evil.example', '', '[', '127.0.0.1:99999', 'localhost:abc', '\u00e9.test', '[::1', 'a'.repeat(300)];
    const kinds = ['http', 'upgrade', 'garbage', 'frames', 'headers'] as const;
    let answered = 0;
    const N = 300;
    for (let i = 0; i < N; i++) {
      const kind = pick([...kinds]);
      let bytes: string | Buffer;
      if (kind === 'http') bytes = `${pick(methods)} ${pick(targets)} HTTP/1.1\r\nHost: ${pick(hosts)}\r\nConnection: close\r\n\r\n`;
      else if (kind === 'upgrade') {
        bytes = `GET ${pick(['/ws', ...targets])} HTTP/1.1\r\nHost: ${pick(hosts)}\r\nUpgrade: ${pick(['websocket', 'h2c', ''])}\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Version: ${pick(['13', '8', 'x'])}\r\nSec-WebSocket-Key: ${pick(['dGhlIHNhbXBsZSBub25jZQ==', '', '!!!'])}\r\n${pick(['', 'Origin: http://evil.example\r\n', 'Cookie: dice_monitor_token=%\r\n'])}\r\n`;
      } else if (kind === 'headers') {
        bytes = Buffer.concat([Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\nX-Junk: `), junk(40), Buffer.from('\r\nContent-Length: -1\r\n\r\n')]);
      } else if (kind === 'frames') {
        // A real handshake, then random bytes as websocket frames: ws closes that connection itself.
        bytes = Buffer.concat([Buffer.from(upgrade('/ws', host)), junk(64)]);
      } else bytes = Buffer.concat([junk(1 + Math.floor(rng.next() * 200)), Buffer.from('\r\n\r\n')]);
      const answer = await raw(monitor.port, bytes, 3000);
      const code = status(answer);
      assert.ok(Number.isInteger(code), `request ${i} (${kind}) got no HTTP answer: ${JSON.stringify(answer.slice(0, 200))} for ${JSON.stringify(bytes.toString().slice(0, 200))}`);
      assert.ok(code < 500 || code === 503, `request ${i} (${kind}) got ${code}`);
      answered++;
      if (i % 50 === 0) assert.equal(status(await raw(monitor.port, get('/', host))), 200, `the dashboard after request ${i}`);
    }
    assert.equal(answered, N);
    const page = connect(`ws://127.0.0.1:${monitor.port}/ws`);
    await page.until((m) => m.kind === 'live');
    monitor.publish({ stage: 'train', type: 'step', step: 1 });
    await page.until((m) => m.kind === 'events');
    page.ws.close();
    assert.deepEqual(errors, [], 'no failure inside the monitor');
  });
});
