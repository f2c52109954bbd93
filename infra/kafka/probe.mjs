// Exit 0 if the broker at HOST:PORT answers a Metadata request listing at least one live broker.
// Used by wait.sh. Plain Node (no dependencies), so it works before `npm install` (as in .ci/run).
import { connect } from 'node:net';

const [host, port] = process.argv[2].split(':');
const clientId = Buffer.from('dice-probe');
// Request header v1 + Metadata v4 body (topics: null = all, allow_auto_topic_creation: false).
const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length + 4 + 1);
let o = 0;
o = body.writeInt16BE(3, o); // api key: Metadata
o = body.writeInt16BE(4, o); // api version
o = body.writeInt32BE(1, o); // correlation id
o = body.writeInt16BE(clientId.length, o);
o += clientId.copy(body, o);
o = body.writeInt32BE(-1, o);
body.writeInt8(0, o);
const size = Buffer.alloc(4);
size.writeInt32BE(body.length);

const socket = connect({ host, port: Number(port) });
const fail = () => process.exit(1);
socket.setTimeout(2000, fail);
socket.on('error', fail);
socket.on('connect', () => socket.write(Buffer.concat([size, body])));
let data = Buffer.alloc(0);
socket.on('data', (chunk) => {
  data = Buffer.concat([data, chunk]);
  if (data.length < 4 || data.length < 4 + data.readInt32BE(0)) return;
  // size, correlation id, throttle_time_ms, then the brokers array's length.
  const ok = data.readInt32BE(4) === 1 && data.readInt32BE(12) > 0;
  socket.destroy();
  process.exit(ok ? 0 : 1);
});
