/**
 * Passive DHCP discovery under a boot storm (not part of the tests; needs root for namespaces).
 *
 *   npm run build && node --import tsx scripts/bench-discovery.ts [--pps 25000] [--macs 10000] [--no-topspeed]
 *   node --import tsx scripts/bench-discovery.ts --write-pcap FILE [--macs N]   (only writes the capture)
 *
 * Writes a pcap of 100,000 DHCP messages from 10,000 MACs (phones of every vendor's OUI, each
 * with its DISCOVER, OFFER, REQUEST and ACK, then three renewals REQUEST + ACK), and replays it
 * with tcpreplay into the peer end of a veth pair while apsd captures on the host end; both
 * ends live in network namespaces made for the run and removed afterwards.
 *
 *  1. paced at --pps (default 25,000): packets/s processed, drops (packets tcpreplay sent vs.
 *     frames apsd saw), and the delay from each DISCOVER to its device row, p50/p99: from the
 *     moment it was on the wire (the replay schedule, anchored on the first frame apsd saw) and
 *     from the moment apsd read it;
 *  2. --topspeed (bounded by the same packet count): the most apsd processes, and what it drops.
 *
 * Target: ≥ 20,000 packets/s with 0 drops, p99 < 50 ms. APS_BENCH_QUICK=1: 20,000 messages
 * from 2,000 MACs, paced run only. Prints a summary and one JSON line ("json: {...}").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { encodeDhcp, optIp, type DhcpEncodeInput } from '../src/wire/dhcp.js';
import { frameForDhcp, writePcap, type PcapFrame } from '../src/wire/frame.js';
import { canUseNetns, createLink, waitUntil, which, type Link } from './lib/netns.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RUNNER = path.join(ROOT, 'dist/src/daemon.js');
const QUICK = process.env.APS_BENCH_QUICK === '1';

const args = parseArgs({ options: { pps: { type: 'string' }, macs: { type: 'string' }, 'no-topspeed': { type: 'boolean' }, 'write-pcap': { type: 'string' } } }).values;
const PPS = Number(args.pps ?? 25_000);
const MACS = Number(args.macs ?? (QUICK ? 2_000 : 10_000));
const PER_MAC = 10; // DISCOVER OFFER REQUEST ACK + 3 × (REQUEST ACK)
const TOPSPEED = !QUICK && !args['no-topspeed'];

const NET = '10.194.0';
const SERVER = { mac: '02:00:00:00:00:01', ip: `${NET}.1` };
/** phones of each vendor: OUI, vendor class (none: the OUI alone identifies it) */
const KINDS: [string, string | undefined][] = [
  ['80:5e:c0', 'yealink'],
  ['00:04:f2', undefined],
  ['00:04:13', 'snomD735'],
  ['00:08:5d', 'AastraIPPhone6867i'],
];

function log(s: string) {
  process.stdout.write(s + '\n');
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The replay, in order, and the index of each MAC's DISCOVER in it. */
function buildCapture(macs: number): { frames: PcapFrame[]; discoverAt: Map<string, number> } {
  const frames: PcapFrame[] = [];
  const discoverAt = new Map<string, number>();
  const phone = (i: number) => {
    const [oui, vendorClass] = KINDS[i % KINDS.length]!;
    const n = Math.floor(i / KINDS.length);
    const mac = `${oui}:${((n >> 16) & 255).toString(16).padStart(2, '0')}:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
    const ip = `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    return { mac, ip, vendorClass, hex: mac.replace(/:/g, '') };
  };
  const push = (msg: DhcpEncodeInput, fromClient: boolean, clientMac: string, clientIp: string) => {
    const payload = encodeDhcp(msg);
    const data = fromClient
      ? frameForDhcp({ payload, src: { mac: clientMac, ip: msg.ciaddr ?? '0.0.0.0', port: 68 }, dst: msg.ciaddr ? { mac: SERVER.mac, ip: SERVER.ip, port: 67 } : { mac: 'ff:ff:ff:ff:ff:ff', ip: '255.255.255.255', port: 67 } })
      : frameForDhcp({ payload, src: { mac: SERVER.mac, ip: SERVER.ip, port: 67 }, dst: { mac: clientMac, ip: clientIp, port: 68 } });
    frames.push({ ts: frames.length / PPS, data });
  };
  const client = (p: ReturnType<typeof phone>, xid: number, type: 'DISCOVER' | 'REQUEST', renew: boolean): DhcpEncodeInput => ({
    xid, chaddr: p.hex, type, vendorClass: p.vendorClass, paramList: [1, 3, 6, 15, 42, 43, 66, 150],
    hostname: `phone-${p.hex.slice(6)}`, clientId: '01' + p.hex,
    ...(renew ? { ciaddr: p.ip } : type === 'REQUEST' ? { requestedIp: p.ip, serverId: SERVER.ip } : {}),
  });
  const server = (p: ReturnType<typeof phone>, xid: number, type: 'OFFER' | 'ACK'): DhcpEncodeInput => ({
    xid, chaddr: p.hex, type, yiaddr: p.ip, siaddr: SERVER.ip, serverId: SERVER.ip, leaseTime: 3600,
    subnetMask: '255.0.0.0', routers: [SERVER.ip], options: new Map([[66, Buffer.from(`http://${SERVER.ip}/prov/`)], [6, optIp(SERVER.ip)]]),
  });
  // the boot storm: every phone's DISCOVER, OFFER, REQUEST, ACK in turn ...
  for (let i = 0; i < macs; i++) {
    const p = phone(i);
    discoverAt.set(p.hex, frames.length);
    push(client(p, i * 16 + 1, 'DISCOVER', false), true, p.mac, p.ip);
    push(server(p, i * 16 + 1, 'OFFER'), false, p.mac, p.ip);
    push(client(p, i * 16 + 1, 'REQUEST', false), true, p.mac, p.ip);
    push(server(p, i * 16 + 1, 'ACK'), false, p.mac, p.ip);
  }
  // ... then three rounds of renewals
  for (let round = 0; round < (PER_MAC - 4) / 2; round++) {
    for (let i = 0; i < macs; i++) {
      const p = phone(i);
      push(client(p, i * 16 + 2 + round, 'REQUEST', true), true, p.mac, p.ip);
      push(server(p, i * 16 + 2 + round, 'ACK'), false, p.mac, p.ip);
    }
  }
  return { frames, discoverAt };
}

interface RunResult {
  mode: string;
  sent: number;
  failed: number;
  tcpreplayPps: number;
  frames: number;
  dhcp: number;
  bad: number;
  errors: number;
  drops: number;
  devices: number;
  processedPps: number;
  cpuUsPerPacket: number;
  wireToRowMs: { p50: number; p99: number; max: number };
  readToRowMs: { p50: number; p99: number; max: number };
}

function cpuTicks(pid: number): number {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch {
    return NaN;
  }
}

async function run(l: Link, pcap: string, expected: { packets: number; macs: number; discoverAt: Map<string, number> }, mode: 'paced' | 'topspeed'): Promise<RunResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-bench-disc-'));
  const configDir = path.join(dir, 'etc');
  const stateDir = path.join(dir, 'state');
  fs.mkdirSync(configDir);
  fs.writeFileSync(path.join(configDir, 'aps.ini'), [
    '[server]', `state_dir = ${stateDir}`, 'log_level = info', `security_log = ${path.join(dir, 'security.log')}`,
    '[provisioning]', 'sip_server = 1.1.1.1',
    '[dhcp]', `capture = ${l.hostIf}`,
    '[discovery]', 'auto_create = true', '',
  ].join('\n'));
  // APS_BENCH_PROF=DIR: apsd writes a V8 CPU profile there
  const prof = process.env.APS_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.APS_BENCH_PROF}`] : [];
  const aps = l.spawn('host', process.execPath, [...prof, RUNNER, '--config', configDir, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0'], { env: { ...process.env, JOURNAL_STREAM: '' } });
  try {
    await aps.waitFor(/apsd ready/, 20_000);
    const cpu0 = cpuTicks(aps.pid);
    const replayArgs = mode === 'paced' ? ['--pps', String(PPS)] : ['--topspeed'];
    const limitMs = Math.ceil((expected.packets / PPS) * 1000) * 3 + 30_000;
    const r = await l.exec('peer', 'tcpreplay', ['--stats=0', ...replayArgs, '-i', l.peerIf, pcap], { timeoutMs: limitMs });
    if (r.code !== 0) throw new Error(`tcpreplay exited ${r.code}: ${r.stderr || r.stdout}`);
    const out = r.stdout + r.stderr;
    const sent = Number(/Successful packets:\s+(\d+)/.exec(out)?.[1] ?? NaN);
    const failed = Number(/Failed packets:\s+(\d+)/.exec(out)?.[1] ?? NaN);
    const tcpreplayPps = Number(/Rated:[^\n]*?([\d.]+) pps/.exec(out)?.[1] ?? NaN);
    // the last frames may still be in the kernel's buffer: wait until the counts stop moving
    const db = new Database(path.join(stateDir, 'aps.db'), { readonly: true, fileMustExist: true });
    const total = () => (db.prepare('SELECT coalesce(sum(count), 0) AS n FROM sightings').get() as { n: number }).n;
    let last = -1;
    let stableSince = Date.now();
    await waitUntil(() => {
      const n = total();
      if (n !== last) {
        last = n;
        stableSince = Date.now();
      }
      return n >= sent || Date.now() - stableSince > 2000;
    }, 60_000, 'apsd to finish the replay', 100);
    const cpu1 = cpuTicks(aps.pid);
    const rows = db.prepare('SELECT d.mac, d.created_at, s.first_at FROM devices d JOIN sightings s ON s.mac = d.mac').all() as { mac: string; created_at: number; first_at: number }[];
    const span = db.prepare('SELECT min(first_at) AS first, max(last_at) AS last FROM sightings').get() as { first: number; last: number };
    db.close();
    await aps.stop(10_000);
    const log = aps.output();
    const m = /msg="dhcp capture stopped" [^\n]*frames=(\d+) dhcp=(\d+) bad=(\d+) other=(\d+) sightings=(\d+) created=(\d+) errors=(\d+)/.exec(log);
    if (!m) throw new Error(`apsd printed no counters:\n${log.slice(-2000)}`);
    const [frames, dhcp, bad, , , , errors] = m.slice(1).map(Number) as number[];
    // the replay schedule, anchored on the first frame apsd read (the first DISCOVER)
    const wire: number[] = [];
    const read: number[] = [];
    for (const row of rows) {
      const idx = expected.discoverAt.get(row.mac);
      if (idx === undefined) continue;
      if (mode === 'paced') wire.push(row.created_at - (span.first + (idx / PPS) * 1000));
      read.push(row.created_at - row.first_at);
    }
    wire.sort((a, b) => a - b);
    read.sort((a, b) => a - b);
    const stat = (a: number[]) => ({ p50: percentile(a, 50), p99: percentile(a, 99), max: a.length ? a[a.length - 1]! : NaN });
    const ticks = (cpu1 - cpu0) / 100; // USER_HZ
    return {
      mode, sent, failed, tcpreplayPps, frames: frames!, dhcp: dhcp!, bad: bad!, errors: errors!, drops: sent - frames!, devices: rows.length,
      processedPps: Math.round(dhcp! / Math.max(0.001, (span.last - span.first) / 1000)),
      cpuUsPerPacket: Math.round((ticks * 1e6) / Math.max(1, frames!)),
      wireToRowMs: stat(wire), readToRowMs: stat(read),
    };
  } finally {
    await aps.stop(2000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  if (args['write-pcap']) {
    // only the capture file, e.g. to replay onto a real interface: tcpreplay --pps 25000 -i eth1 FILE
    const { frames } = buildCapture(MACS);
    writePcap(args['write-pcap'], frames);
    log(`${args['write-pcap']}: ${frames.length} DHCP messages from ${MACS} MACs`);
    return 0;
  }
  const support = canUseNetns();
  if (!support.ok) {
    log(`discovery bench SKIPPED: ${support.why}`);
    return 0;
  }
  if (!which('tcpreplay')) {
    log('discovery bench SKIPPED: tcpreplay is not installed (apt-get install -y tcpreplay)');
    return 0;
  }
  if (!fs.existsSync(RUNNER)) {
    log('discovery bench: dist/ is missing: run npm run build first');
    return 1;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-bench-pcap-'));
  const l = await createLink({ name: 'bdsc', hostIp: `${NET}.1`, prefix: 24 });
  try {
    const t = Date.now();
    const { frames, discoverAt } = buildCapture(MACS);
    const pcap = path.join(tmp, 'storm.pcap');
    writePcap(pcap, frames);
    log(`discovery: ${frames.length} DHCP messages from ${MACS} MACs (${(fs.statSync(pcap).size / 1e6).toFixed(1)} MB pcap, built in ${Date.now() - t} ms), replayed with tcpreplay into a veth; apsd captures the other end`);
    const results: RunResult[] = [];
    const modes: ('paced' | 'topspeed')[] = TOPSPEED ? ['paced', 'topspeed'] : ['paced'];
    for (const mode of modes) {
      const r = await run(l, pcap, { packets: frames.length, macs: MACS, discoverAt }, mode);
      results.push(r);
      const head = mode === 'paced' ? `paced at ${PPS} pps` : 'tcpreplay --topspeed';
      log(`  ${head}: tcpreplay sent ${r.sent} (${r.failed} failed) at ${r.tcpreplayPps.toFixed(0)} pps; apsd read ${r.frames} frames (${r.bad} bad, ${r.errors} write errors), drops ${r.drops}; processed ${r.processedPps} packets/s, ${r.cpuUsPerPacket} µs CPU/packet; ${r.devices} devices`);
      if (mode === 'paced') log(`    DISCOVER on the wire → device row: p50 ${r.wireToRowMs.p50} ms, p99 ${r.wireToRowMs.p99} ms, max ${r.wireToRowMs.max} ms`);
      log(`    DISCOVER read by apsd → device row: p50 ${r.readToRowMs.p50} ms, p99 ${r.readToRowMs.p99} ms, max ${r.readToRowMs.max} ms`);
    }
    const paced = results[0]!;
    const ok = paced.processedPps >= 20_000 * Math.min(1, PPS / 25_000) && paced.drops === 0 && paced.wireToRowMs.p99 < 50 && paced.devices === MACS;
    log(`  target (≥ 20,000 packets/s, 0 drops, p99 < 50 ms, every MAC a device): ${ok ? 'met' : 'NOT met'}`);
    log(`json: ${JSON.stringify({ pps: PPS, macs: MACS, messages: frames.length, results, targetMet: ok })}`);
    return 0;
  } finally {
    await l.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
