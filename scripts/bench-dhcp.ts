/**
 * DORA exchanges per second against apsd's built-in DHCP server (part of npm run bench).
 *
 *   npm run build && node --import tsx scripts/bench-dhcp.ts
 *
 * Makes a veth link between two network namespaces of its own (test/support/netns.ts), runs
 * apsd (dist) in the server namespace with a temp config whose [dhcp_server] serves a /20 on
 * the link, and a load generator in the client namespace: one UDP socket on 0.0.0.0:68 with
 * SO_BROADCAST, 1,000 distinct chaddr values (a third Yealink MACs, a third Aastra vendor
 * class, a third no phone), each exchange DISCOVER → OFFER → REQUEST → ACK with the
 * broadcast flag set, up to WINDOW exchanges in flight, never two for one chaddr. No
 * retransmission: an exchange without its ACK within 3 s is lost. The first 1,000 exchanges
 * bind new leases; the rest are returning clients. Bounded: EXCHANGES exchanges or LIMIT_S
 * seconds, whichever comes first. Prints exchanges/s, latency p50/p99 and lost.
 *
 * Needs root (namespaces). APS_BENCH_QUICK=1 runs a short version. apsd is dist/src/daemon.js.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { decodeDhcp, encodeDhcp } from '../src/wire/dhcp.js';
import { canUseNetns, createLink, type Link, type NsProcess } from './lib/netns.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const QUICK = process.env.APS_BENCH_QUICK === '1';
const CLIENTS = 1000;
const EXCHANGES = QUICK ? 4000 : 20_000;
const LIMIT_S = QUICK ? 20 : 60;
const WINDOW = 64;
const TIMEOUT_MS = 3000;
const SERVER_IP = '10.196.0.1';
const PEER_IP = '10.196.0.2';

interface ClientPlan {
  clients: number;
  exchanges: number;
  limitMs: number;
  window: number;
}

interface ClientResult {
  done: number;
  lost: number;
  naks: number;
  elapsedMs: number;
  firstRoundMs: number;
  firstRoundDone: number;
  latenciesMs: number[];
  addresses: number;
}

// ------------------------------------------------------------------------------ the load generator

function chaddr(i: number): { mac: string; vendorClass?: string } {
  const tail = [(i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':');
  switch (i % 3) {
    case 0: return { mac: `80:5e:c0:${tail}` };
    case 1: return { mac: `00:08:5d:${tail}`, vendorClass: 'AastraIPPhone6867i' };
    default: return { mac: `02:42:00:${tail}` };
  }
}

async function runClient(plan: ClientPlan): Promise<ClientResult> {
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((r) => sock.bind(68, '0.0.0.0', () => r()));
  sock.setBroadcast(true);
  sock.setRecvBufferSize(4 << 20);
  sock.setSendBufferSize(4 << 20);
  interface Flight { i: number; start: number; timer: NodeJS.Timeout; requested: boolean }
  const inFlight = new Map<number, Flight>();
  const busy = new Set<number>();
  const lat: number[] = [];
  const bound = new Map<number, string>();
  let started = 0;
  let done = 0;
  let lost = 0;
  let naks = 0;
  let next = 0;
  let firstRoundMs = 0;
  let firstRoundDone = 0;
  const t0 = performance.now();
  const deadline = t0 + plan.limitMs;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const send = (buf: Buffer) => sock.send(buf, 67, '255.255.255.255');

  const settle = (xid: number, ok: boolean) => {
    const f = inFlight.get(xid);
    if (!f) return;
    inFlight.delete(xid);
    busy.delete(f.i);
    clearTimeout(f.timer);
    if (ok) {
      done++;
      lat.push(performance.now() - f.start);
      if (done === plan.clients) {
        firstRoundMs = performance.now() - t0;
        firstRoundDone = done;
      }
    }
    pump();
  };

  const pump = () => {
    while (inFlight.size < plan.window && started < plan.exchanges && performance.now() < deadline) {
      let i = next % plan.clients;
      let tries = 0;
      while (busy.has(i) && tries++ < plan.clients) i = ++next % plan.clients;
      if (busy.has(i)) break;
      next++;
      started++;
      let xid = randomBytes(4).readUInt32BE(0);
      while (inFlight.has(xid)) xid = randomBytes(4).readUInt32BE(0);
      const c = chaddr(i);
      const f: Flight = {
        i, start: performance.now(), requested: false,
        timer: setTimeout(() => {
          if (!inFlight.has(xid)) return;
          lost++;
          settle(xid, false);
        }, TIMEOUT_MS),
      };
      inFlight.set(xid, f);
      busy.add(i);
      send(encodeDhcp({ xid, chaddr: c.mac, flags: 0x8000, type: 'DISCOVER', vendorClass: c.vendorClass, paramList: [1, 3, 6, 15, 42, 43, 66] }));
    }
    if (inFlight.size === 0) finish();
  };

  sock.on('message', (buf) => {
    const d = decodeDhcp(buf);
    if (!d.ok || d.msg.op !== 2) return;
    const m = d.msg;
    const f = inFlight.get(m.xid);
    if (!f) return;
    if (m.type === 'OFFER' && !f.requested) {
      f.requested = true;
      const c = chaddr(f.i);
      send(encodeDhcp({ xid: m.xid, chaddr: c.mac, flags: 0x8000, type: 'REQUEST', vendorClass: c.vendorClass, serverId: m.serverId, requestedIp: m.yiaddr, paramList: [1, 3, 6, 15, 42, 43, 66] }));
    } else if (m.type === 'ACK' && f.requested) {
      bound.set(f.i, m.yiaddr);
      settle(m.xid, true);
    } else if (m.type === 'NAK') {
      naks++;
      lost++;
      settle(m.xid, false);
    }
  });
  pump();
  await finished;
  const elapsedMs = performance.now() - t0;
  sock.close();
  return { done, lost, naks, elapsedMs, firstRoundMs, firstRoundDone, latenciesMs: lat, addresses: new Set(bound.values()).size };
}

// ------------------------------------------------------------------------------ the server side

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** user + system CPU time of a process, in seconds (/proc/<pid>/stat). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

async function startApsd(link: Link, configDir: string): Promise<{ proc: NsProcess; via: string }> {
  const daemon = path.join(ROOT, 'dist/src/daemon.js');
  if (!fs.existsSync(daemon)) throw new Error(`${daemon} is missing: npm run build first`);
  const args = ['--config', configDir, '--http-listen', '0.0.0.0:8080', '--tftp-listen', '127.0.0.1:0'];
  const proc = link.spawn('host', process.execPath, [daemon, ...args], { env: { ...process.env, JOURNAL_STREAM: '' } });
  await proc.waitFor(/apsd ready[^\n]*dhcp_server=/, 20_000);
  return { proc, via: 'dist/src/daemon.js' };
}

async function main(): Promise<number> {
  const support = canUseNetns();
  if (!support.ok) {
    process.stdout.write(`dhcp: skipped: ${support.why}\n`);
    return 0;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-bench-dhcp-'));
  const configDir = path.join(dir, 'etc');
  const stateDir = path.join(dir, 'state');
  fs.mkdirSync(configDir, { recursive: true });
  const link = await createLink({ name: 'bdhc', hostIp: SERVER_IP, peerIp: PEER_IP, prefix: 20 });
  try {
    fs.writeFileSync(path.join(configDir, 'aps.ini'), [
      '[server]', `state_dir = ${stateDir}`, 'log_level = info',
      '[provisioning]', 'url = http://1.1.1.1:8080/provisioning/',
      '[ip_dns_map]', '1.1.1.1 = pbx.example.net',
      '[dhcp_server]', 'enabled = true', `interface = ${link.ifname('host')}`,
      'range = 10.196.0.10-10.196.15.250', 'netmask = 255.255.240.0', `router = ${SERVER_IP}`, `dns = ${SERVER_IP}`,
      'lease_time = 1h', '',
    ].join('\n'));
    const { proc, via } = await startApsd(link, configDir);
    await link.exec('peer', 'ip', ['route', 'replace', 'default', 'dev', link.ifname('peer')], { check: true });
    const plan: ClientPlan = { clients: CLIENTS, exchanges: EXCHANGES, limitMs: LIMIT_S * 1000, window: WINDOW };
    const cpu0 = cpuSeconds(proc.pid);
    const r = await link.exec('peer', process.execPath, ['--import', 'tsx', SELF, '--client', JSON.stringify(plan)], { timeoutMs: (LIMIT_S + 30) * 1000, cwd: ROOT });
    if (r.code !== 0) throw new Error(`the load generator failed (${r.code}): ${r.stderr.trim()}\napsd:\n${proc.output().slice(-2000)}`);
    const cpu = cpuSeconds(proc.pid) - cpu0;
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as ClientResult;
    const lat = [...res.latenciesMs].sort((a, b) => a - b);
    const rate = res.done / (res.elapsedMs / 1000);
    const first = res.firstRoundDone ? res.firstRoundDone / (res.firstRoundMs / 1000) : NaN;
    const steady = res.firstRoundDone ? (res.done - res.firstRoundDone) / ((res.elapsedMs - res.firstRoundMs) / 1000) : NaN;
    const errors = (proc.output().match(/level=error/g) ?? []).length;
    await proc.stop(5000);
    const lines = [
      `dhcp: apsd via ${via}`,
      `dhcp: ${fmt(CLIENTS)} clients, ${fmt(res.done + res.lost)} DORA exchanges (window ${WINDOW}) in ${(res.elapsedMs / 1000).toFixed(1)} s`,
      `dhcp: ${fmt(rate)} exchanges/s overall; first ${fmt(CLIENTS)} (new leases, warm-up) ${fmt(first)}/s, then ${fmt(steady)}/s (returning clients); latency p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms; lost ${res.lost} (NAK ${res.naks}); ${res.addresses} distinct addresses; apsd errors ${errors}`,
      `dhcp: apsd CPU ${(cpu * 1e6 / Math.max(1, res.done)).toFixed(0)} µs per exchange (${fmt(res.done / Math.max(cpu, 0.01))} exchanges per CPU-second; ${os.cpus().length} CPUs, load average ${os.loadavg()[0]!.toFixed(1)} before the run)`,
      `dhcp: target >= 2,000 exchanges/s and 0 lost: ${rate >= 2000 && res.lost === 0 ? 'met' : 'NOT met'}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return rate >= 2000 && res.lost === 0 ? 0 : 1;
  } finally {
    await link.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--client') {
  runClient(JSON.parse(process.argv[3]!) as ClientPlan).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e) => {
      process.stderr.write(`${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
} else {
  main().then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
