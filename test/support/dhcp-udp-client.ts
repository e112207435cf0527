/**
 * A bare UDP end of DHCP for the tests, run inside a client namespace: binds 0.0.0.0:<bind>
 * (68 by default, 67 to play a relay) with SO_BROADCAST, sends the given datagrams in order,
 * then collects what arrives for `listenMs` (or until `until` datagrams arrived) and prints
 * them as one JSON line: [{ hex, from, port }]. The test encodes and decodes (src/wire/dhcp).
 *
 *   node dist/test/support/dhcp-udp-client.js '{"sends":[{"hex":"0101…"}],"listenMs":1500,"until":1}'
 *
 * A send goes to 255.255.255.255:67 unless it names `to` and `port`. Only replies carrying the
 * xid of one of the sends are kept (a late reply to an earlier run is not mistaken for one).
 */
import dgram from 'node:dgram';

interface Plan {
  bind?: number;
  sends: { hex: string; to?: string; port?: number }[];
  listenMs: number;
  until?: number;
}

const plan = JSON.parse(process.argv[2] ?? '{}') as Plan;
const got: { hex: string; from: string; port: number }[] = [];
const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
let done = false;
let timer: NodeJS.Timeout | undefined;
const finish = () => {
  if (done) return;
  done = true;
  clearTimeout(timer);
  process.stdout.write(JSON.stringify(got) + '\n');
  sock.close();
};
const xids = new Set(plan.sends.map((s) => s.hex.slice(8, 16)));
sock.on('message', (msg, rinfo) => {
  if (!xids.has(msg.toString('hex', 4, 8))) return;
  got.push({ hex: msg.toString('hex'), from: rinfo.address, port: rinfo.port });
  if (plan.until !== undefined && got.length >= plan.until) finish();
});
sock.on('error', (e) => {
  process.stderr.write(`udp client: ${e.message}\n`);
  process.exitCode = 2;
  finish();
});
sock.bind(plan.bind ?? 68, '0.0.0.0', async () => {
  sock.setBroadcast(true);
  try {
    for (const s of plan.sends) {
      await new Promise<void>((resolve, reject) => sock.send(Buffer.from(s.hex, 'hex'), s.port ?? 67, s.to ?? '255.255.255.255', (e) => (e ? reject(e) : resolve())));
    }
  } catch (e) {
    // a broadcast needs a route: `ip route replace default dev <if>` in the namespace
    process.stderr.write(`udp client: ${(e as Error).message}\n`);
    process.exitCode = 2;
    return finish();
  }
  timer = setTimeout(finish, Math.min(plan.listenMs, 30_000));
});
