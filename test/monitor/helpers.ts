import WebSocket from 'ws';
import type { MonitorEvent } from '../../src/monitor/events.ts';

/** A test websocket client that records every message and how the connection ended. */
export interface RecordingClient {
  ws: WebSocket;
  messages: any[];
  /** Sizes in bytes of the raw frames received. */
  sizes: number[];
  events(): MonitorEvent[];
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves once a message satisfying `pred` has arrived (rejects after `ms`). */
  until(pred: (m: any) => boolean, ms?: number): Promise<any>;
}

export function connect(url: string, options: WebSocket.ClientOptions = {}): RecordingClient {
  const ws = new WebSocket(url, options);
  const messages: any[] = [];
  const sizes: number[] = [];
  const waiters: Array<{ pred: (m: any) => boolean; resolve: (m: any) => void }> = [];
  ws.on('error', () => {});
  ws.on('message', (data: Buffer) => {
    sizes.push(data.byteLength);
    const m = JSON.parse(data.toString('utf8'));
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  return {
    ws,
    messages,
    sizes,
    events: () => messages.filter((m) => m.kind === 'events').flatMap((m) => m.events),
    closed,
    until(pred, ms = 5000) {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching message within ${ms} ms; got ${JSON.stringify(messages).slice(0, 500)}`)), ms);
        waiters.push({ pred, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      });
    },
  };
}

/** Waits until `check` returns a truthy value (polling), or fails naming `what`. */
export async function eventually<T>(what: string, check: () => T | Promise<T>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
