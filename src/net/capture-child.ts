/**
 * The capture process: `node capture-child.js <ifname> <filter> <ring bytes>`, started by
 * src/net/capture.ts. It holds the one libpcap handle of its interface, so that a native fault
 * of the binding (`cap` asserts and aborts the process when the interface goes down or away)
 * ends this process only, never apsd.
 *
 * stdout, length-prefixed records `[u32 BE length][u8 kind][payload]`:
 *   kind 0  opened, payload = the link type number as text
 *   kind 1  a frame as captured
 *   kind 2  an error message (then the process exits 1)
 * stdin, records `[u32 BE length][frame]`: frames to send on the interface.
 * It exits when stdin closes (apsd is gone or closed the capture).
 */
import { openCapture } from './pcap.js';

const [ifname = '', filter = '', ring = '0'] = process.argv.slice(2);

function record(kind: number, payload: Buffer): void {
  const head = Buffer.allocUnsafe(5);
  head.writeUInt32BE(payload.length, 0);
  head[4] = kind;
  process.stdout.write(Buffer.concat([head, payload]));
}

let capture;
try {
  capture = openCapture(ifname, filter, (frame) => record(1, frame), { bufferBytes: Number(ring) || undefined });
} catch (e) {
  const ctx = (e as { context?: { expected?: string } }).context;
  record(2, Buffer.from(JSON.stringify({ message: (e as Error).message, expected: ctx?.expected })));
  process.stdout.end(() => process.exit(1));
}
if (capture) {
  const c = capture;
  record(0, Buffer.from(String(c.linktype)));
  let pending: Buffer = Buffer.alloc(0);
  process.stdin.on('data', (d: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, d]) : d;
    while (pending.length >= 4) {
      const n = pending.readUInt32BE(0);
      if (pending.length < 4 + n) break;
      c.send(pending.subarray(4, 4 + n));
      pending = pending.subarray(4 + n);
    }
  });
  process.stdin.on('end', () => {
    c.close();
    process.exit(0);
  });
  process.stdout.on('error', () => process.exit(0));
}
