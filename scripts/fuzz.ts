/**
 * npm run fuzz — hostile input against the real, built apsd (issue 14, point 6).
 *
 * apsd runs with the shipped configuration plus a FastAGI listener, DHCP capture, the built-in
 * DHCP server and SIP PnP on the root-namespace end of a veth this script creates (its peer end
 * in a namespace of its own: scripts/lib/netns.ts), HTTP and TFTP on 127.0.0.1. Malformed input,
 * made by mutating real requests (bit flips, truncation, splices, random bytes, over-long fields):
 *
 *   TFTP     datagrams to the listener, from 127.0.0.2
 *   HTTP     one TCP connection per request, from 127.0.0.2
 *   FastAGI  one TCP connection per session (broken environments, over-long lines), from 127.0.0.2
 *   DHCP     broadcasts to port 67 on the veth, from the peer namespace (captured and served)
 *   SIP      datagrams to 224.0.1.75:5060 on the veth, from the peer namespace (PnP)
 *
 * After every batch the same process (same PID) must still answer a real phone — the firmware
 * image over HTTP and TFTP, a rendered common file over HTTP, a FastAGI session — with every
 * service `running` in `apsctl status`, and its resident memory must stay under the bound.
 * Exit 0 when every check held, 1 otherwise (naming the batch and what failed).
 *
 *   APS_FUZZ_COUNT   inputs in all (default 1,000,000; the test suite runs 5,000)
 *   APS_FUZZ_BATCH   inputs per batch (default count/20)
 *   APS_FUZZ_RSS_MB  allowed growth of resident memory over the first check (default 150)
 *   APS_FUZZ_SEED    seed of the generator (default: random, printed)
 * Without root (no namespaces) the DHCP and SIP parts are left out and said so.
 */
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { canUseNetns, cleanupAll, createLink, type Link } from './lib/netns.js';
import { encodeDhcp } from '../src/wire/dhcp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const APSD = path.join(ROOT, 'dist/src/daemon.js');
const APSCTL = path.join(ROOT, 'dist/src/cli/apsctl.js');
const FUZZ_FROM = '127.0.0.2';

// ------------------------------------------------------------------ the peer-namespace sender

if (process.argv[2] === '--udp-sender') {
  // runs inside the peer namespace: reads {kind, count, seed, iface address} and sends DHCP or SIP garbage
  const [kind, countS, seedS, src] = process.argv.slice(3);
  const rnd = rng(Number(seedS));
  const count = Number(countS);
  const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  s.bind(kind === 'dhcp' ? 68 : 5060, kind === 'dhcp' ? '0.0.0.0' : src, () => {
    if (kind === 'dhcp') s.setBroadcast(true);
    else s.setMulticastInterface(src!);
    let sent = 0;
    const step = () => {
      for (let i = 0; i < 200 && sent < count; i++, sent++) {
        const b = kind === 'dhcp' ? mutate(rnd, dhcpSeed(rnd)) : Buffer.from(mutate(rnd, sipSeed(rnd)));
        s.send(b, kind === 'dhcp' ? 67 : 5060, kind === 'dhcp' ? src!.replace(/\.\d+$/, '.255') : '224.0.1.75');
      }
      if (sent < count) setTimeout(step, 1);
      else setTimeout(() => { process.stdout.write(`${sent}\n`); s.close(); }, 50);
    };
    step();
  });
} else {
  main().then((code) => process.exit(code), (e) => {
    process.stderr.write(`fuzz: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}

// ------------------------------------------------------------------ generators

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

/** One malformed variant of a real input. */
function mutate(r: () => number, seed: Buffer): Buffer {
  const b = Buffer.from(seed);
  const n = Math.floor(r() * 6);
  switch (n) {
    case 0: { // bit flips
      for (let i = 0, k = 1 + Math.floor(r() * 8); i < k; i++) b[Math.floor(r() * b.length)]! ^= 1 << Math.floor(r() * 8);
      return b;
    }
    case 1: return b.subarray(0, Math.floor(r() * b.length)); // truncated
    case 2: { // random bytes spliced in
      const at = Math.floor(r() * b.length);
      const junk = Buffer.from(Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256)));
      return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
    }
    case 3: { // a field made very long
      const at = Math.floor(r() * b.length);
      return Buffer.concat([b.subarray(0, at), Buffer.alloc(200 + Math.floor(r() * 3000), 0x41 + Math.floor(r() * 26)), b.subarray(at)]);
    }
    case 4: return Buffer.from(Array.from({ length: 1 + Math.floor(r() * 600) }, () => Math.floor(r() * 256))); // noise
    default: { // bytes overwritten with edge values
      for (let i = 0, k = 1 + Math.floor(r() * 4); i < k; i++) b[Math.floor(r() * b.length)] = [0, 0xff, 0x0a, 0x0d, 0x25, 0x2f, 0x2e][Math.floor(r() * 7)]!;
      return b;
    }
  }
}

const hex = (r: () => number, n: number) => Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join('');
const pick = <T>(r: () => number, a: readonly T[]) => a[Math.floor(r() * a.length)]!;
const NAMES = ['y000000000066.cfg', '805ec0123456.cfg', '000000000000.cfg', 'fw.rom', '../../etc/passwd', '%2e%2e/x', 'snomD785.htm', 'aastra.cfg'];

function tftpSeed(r: () => number): Buffer {
  const name = pick(r, NAMES).replace('123456', hex(r, 6));
  const opts = r() < 0.5 ? ['blksize', String(Math.floor(r() * 70000)), 'tsize', '0', 'timeout', String(Math.floor(r() * 300)), 'windowsize', String(Math.floor(r() * 70000))] : [];
  const op = r() < 0.8 ? 1 : Math.floor(r() * 7);
  return Buffer.concat([Buffer.from([0, op]), ...[name, pick(r, ['octet', 'netascii', 'mail', 'OCTET']), ...opts].map((s) => Buffer.from(s + '\0', 'latin1'))]);
}

function httpSeed(r: () => number): Buffer {
  const name = pick(r, NAMES).replace('123456', hex(r, 6));
  const m = pick(r, ['GET', 'HEAD', 'POST', 'PUT', 'G\x00T', 'OPTIONS']);
  const p = pick(r, [`/${name}`, `/provisioning/${name}`, `/api/pin/register`, `/${'a'.repeat(2000)}`, '*']);
  const h = r() < 0.3 ? `Authorization: Digest username="x", nonce="${hex(r, 20)}", response="${hex(r, 32)}", nc=00000001\r\n` : '';
  return Buffer.from(`${m} ${p} HTTP/1.1\r\nHost: x\r\nUser-Agent: Yealink SIP-T46S 66.86.0.15 80:5e:c0:${hex(r, 2)}:00:01\r\n${h}Content-Length: ${Math.floor(r() * 10)}\r\n\r\n`, 'latin1');
}

function agiSeed(r: () => number): Buffer {
  const env = ['agi_network: yes', 'agi_network_script: register', 'agi_channel: PJSIP/unprov-805ec0000001-00000001', `agi_callerid: ${hex(r, 4)}`, 'agi_arg_1: 123456', 'agi_arg_2: 101'];
  const answers = r() < 0.5 ? '200 result=1 (805ec0000001)\n200 result=0\n' : '';
  return Buffer.from(env.join('\n') + '\n\n' + answers);
}

function dhcpSeed(r: () => number): Buffer {
  return encodeDhcp({
    xid: Math.floor(r() * 0xffffffff), chaddr: `80:5e:c0:${hex(r, 2)}:${hex(r, 2)}:${hex(r, 2)}`,
    type: pick(r, ['DISCOVER', 'REQUEST', 'INFORM', 'RELEASE', 'DECLINE'] as const), vendorClass: pick(r, ['yealink', 'snomD735', 'AastraIPPhone6867i', 'x']),
    hostname: 'phone', paramList: [1, 3, 6, 66, 43, 150],
  } as never);
}

function sipSeed(r: () => number): Buffer {
  const mac = `805EC0${hex(r, 6).toUpperCase()}`;
  return Buffer.from([
    pick(r, ['SUBSCRIBE sip:224.0.1.75:5060 SIP/2.0', 'OPTIONS sip:x SIP/2.0', 'SIP/2.0 200 OK']),
    `Via: SIP/2.0/UDP 10.198.77.2:5060;branch=z9hG4bK${hex(r, 8)}`, `From: <sip:MAC%3a${mac}@224.0.1.75>;tag=${hex(r, 4)}`, `To: <sip:MAC%3a${mac}@224.0.1.75>`,
    `Call-ID: ${hex(r, 10)}@x`, 'CSeq: 1 SUBSCRIBE', 'Event: ua-profile;profile-type="device";vendor="Yealink";model="T46S";version="1"', 'Accept: application/url', 'Expires: 0', 'Content-Length: 0', '', '',
  ].join('\r\n'), 'latin1');
}

// ------------------------------------------------------------------ senders (loopback)

function sendTftp(port: number, r: () => number, n: number): Promise<void> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.on('message', () => {});
    s.on('error', () => {});
    s.bind(0, FUZZ_FROM, () => {
      let sent = 0;
      const step = () => {
        for (let i = 0; i < 100 && sent < n; i++, sent++) s.send(mutate(r, tftpSeed(r)), port, '127.0.0.1');
        if (sent < n) setImmediate(step);
        else setTimeout(() => { s.close(); resolve(); }, 20);
      };
      step();
    });
  });
}

function sendTcp(port: number, make: () => Buffer, n: number, width = 64): Promise<void> {
  let started = 0;
  const one = (): Promise<void> => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: FUZZ_FROM }, () => s.end(make()));
    s.setTimeout(3000, () => s.destroy());
    s.on('data', () => {});
    s.on('error', () => s.destroy());
    s.on('close', () => resolve());
  });
  const lane = async () => {
    while (started < n) {
      started++;
      await one();
    }
  };
  return Promise.all(Array.from({ length: width }, lane)).then(() => undefined);
}

// ------------------------------------------------------------------ the real phone

function httpGet(hostPort: string, p: string): Promise<{ status: number; bytes: number }> {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve) => {
    const req = http.get({ host, port: Number(port), path: p, agent: false, timeout: 5000 }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, bytes: 0 }));
  });
}

/** A lock-step TFTP read (RFC 1350) of `file`; its length, or -1. */
function tftpGet(port: number, file: string): Promise<number> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    let got = 0;
    let t = setTimeout(() => done(-1), 5000);
    const done = (v: number) => {
      clearTimeout(t);
      s.close();
      resolve(v);
    };
    s.on('message', (m, ri) => {
      if (m[1] !== 3) return done(-1);
      got += m.length - 4;
      const last = m.length - 4 < 512;
      s.send(Buffer.from([0, 4, m[2]!, m[3]!]), ri.port, ri.address, () => {
        if (last) done(got);
      });
      clearTimeout(t);
      t = setTimeout(() => done(-1), 5000);
    });
    s.bind(0, '127.0.0.1', () => s.send(Buffer.concat([Buffer.from([0, 1]), Buffer.from(`${file}\0octet\0`)]), port, '127.0.0.1'));
  });
}

function agiAnswered(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write('agi_network: yes\nagi_network_script: register\nagi_channel: PJSIP/unprov-805ec0999999-00000001\nagi_callerid: 1\nagi_arg_1: 111111\nagi_arg_2: 101\n\n'));
    let seen = '';
    const t = setTimeout(() => { s.destroy(); resolve(false); }, 5000);
    s.on('data', (d) => {
      seen += d.toString();
      // answer every command as Asterisk would; the result arrives as SET VARIABLE APS_RESULT
      for (const line of d.toString().split('\n').filter(Boolean)) {
        if (/^SET VARIABLE APS_RESULT/.test(line)) { clearTimeout(t); s.destroy(); resolve(true); return; }
        s.write(/^GET /.test(line) ? '200 result=0\n' : '200 result=1\n');
      }
    });
    s.on('error', () => { clearTimeout(t); resolve(false); });
    s.on('close', () => { clearTimeout(t); resolve(/APS_RESULT/.test(seen)); });
  });
}

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

// ------------------------------------------------------------------ main

async function main(): Promise<number> {
  if (!fs.existsSync(APSD)) throw new Error(`${APSD} is missing: npx tsc -p tsconfig.json first`);
  const total = Number(process.env.APS_FUZZ_COUNT ?? 1_000_000);
  const batch = Math.max(100, Number(process.env.APS_FUZZ_BATCH ?? Math.ceil(total / 20)));
  const rssMb = Number(process.env.APS_FUZZ_RSS_MB ?? 150);
  const seed = Number(process.env.APS_FUZZ_SEED ?? Math.floor(Math.random() * 0xffffffff));
  const r = rng(seed);
  const ns = canUseNetns();
  let link: Link | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-fuzz-'));
  const cfg = path.join(dir, 'etc');
  fs.cpSync(path.join(ROOT, 'etc'), cfg, { recursive: true });
  const state = path.join(dir, 'state');
  fs.mkdirSync(path.join(state, 'firmware'), { recursive: true });
  fs.writeFileSync(path.join(state, 'firmware', 'fw.rom'), Buffer.alloc(70_000, 9));
  let ini = fs.readFileSync(path.join(cfg, 'aps.ini'), 'utf8')
    .replace('[server]\n', `[server]\nstate_dir = ${state}\n`)
    .replace('[provisioning]\n', '[provisioning]\npin = 739146\n')
    .replace('[pin]\n', '[pin]\nagi_listen = 127.0.0.1:0\n');
  const NET = '10.198.77';
  if (ns.ok) {
    link = await createLink({ name: 'fuzz', hostIp: `${NET}.1`, peerIp: `${NET}.2`, prefix: 24, hostNs: false });
    await link.exec('peer', 'ip', ['route', 'replace', '224.0.0.0/4', 'dev', link.peerIf], { check: true });
    ini = ini.replace('[dhcp]\n', `[dhcp]\ncapture = ${link.hostIf}\n`)
      .replace('[dhcp_server]\n', `[dhcp_server]\nenabled = true\ninterface = ${link.hostIf}\nrange = ${NET}.100-${NET}.200\nnetmask = 255.255.255.0\n`)
      .replace('[pnp]\n', `[pnp]\nenabled = true\ninterface = ${link.hostIf}\n`);
  } else process.stdout.write(`fuzz: no network namespaces (${ns.why}): DHCP and SIP are left out\n`);
  fs.writeFileSync(path.join(cfg, 'aps.ini'), ini);

  const proc = spawn(process.execPath, [APSD, '--config', cfg, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, JOURNAL_STREAM: '' } });
  let log = '';
  const keep = (d: Buffer) => { log = (log + d.toString()).slice(-200_000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const cleanup = async () => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await new Promise((res) => (proc.exitCode !== null ? res(null) : proc.once('exit', res)));
    await cleanupAll();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const t0 = Date.now();
    while (!/apsd ready/.test(log)) {
      if (proc.exitCode !== null || Date.now() - t0 > 20_000) throw new Error(`apsd did not start:\n${log}`);
      await new Promise((res) => setTimeout(res, 50));
    }
    const ready = /apsd ready.*/.exec(log)![0];
    const hp = /http=([0-9.:]+)/.exec(ready)![1]!;
    const tftpPort = Number(/tftp=[0-9.]+:(\d+)/.exec(ready)![1]);
    const agiPort = Number(/agi=[0-9.]+:(\d+)/.exec(ready)![1]);
    const pid = proc.pid!;
    const check = async (what: string): Promise<string[]> => {
      const bad: string[] = [];
      if (proc.exitCode !== null || proc.signalCode !== null) return [`apsd ended (${proc.exitCode ?? proc.signalCode})`];
      const fw = await httpGet(hp, '/fw.rom');
      if (fw.status !== 200 || fw.bytes !== 70_000) bad.push(`HTTP firmware: ${fw.status} ${fw.bytes} bytes`);
      const cfgFile = await httpGet(hp, '/provisioning/y000000000066.cfg');
      if (cfgFile.status !== 200 || cfgFile.bytes < 100) bad.push(`HTTP y000000000066.cfg: ${cfgFile.status}`);
      const t = await tftpGet(tftpPort, 'fw.rom');
      if (t !== 70_000) bad.push(`TFTP firmware: ${t}`);
      if (!(await agiAnswered(agiPort))) bad.push('FastAGI: no APS_RESULT');
      if (link) {
        const st = spawnSync(process.execPath, [APSCTL, '--config', cfg, '--json', 'status'], { encoding: 'utf8' });
        const services = (JSON.parse(st.stdout || '{"services":[]}') as { pid: number; services: { service: string; state: string }[] });
        if (services.pid !== pid) bad.push(`apsctl status names pid ${services.pid}`);
        for (const s of services.services) if (s.state !== 'running') bad.push(`${s.service} ${s.state}`);
      }
      if (bad.length) bad.unshift(what);
      return bad;
    };
    const first = await check('before fuzzing');
    if (first.length) throw new Error(first.join('; '));
    const rss0 = rssKb(pid);
    process.stdout.write(`fuzz: seed ${seed}, ${total.toLocaleString('en')} inputs in batches of ${batch.toLocaleString('en')}; apsd pid ${pid}, RSS ${(rss0 / 1024).toFixed(1)} MB, bound +${rssMb} MB\n`);
    // the shares of each protocol (UDP inputs are cheap, TCP ones cost a connection each)
    const share = link ? { tftp: 0.4, dhcp: 0.25, sip: 0.25, http: 0.06, agi: 0.04 } : { tftp: 0.8, dhcp: 0, sip: 0, http: 0.12, agi: 0.08 };
    const sent = { tftp: 0, dhcp: 0, sip: 0, http: 0, agi: 0 };
    let rssMax = rss0;
    const started = Date.now();
    for (let done = 0, b = 1; done < total; b++) {
      const n = Math.min(batch, total - done);
      const k = { tftp: Math.round(n * share.tftp), dhcp: Math.round(n * share.dhcp), sip: Math.round(n * share.sip), http: Math.round(n * share.http), agi: 0 };
      k.agi = n - k.tftp - k.dhcp - k.sip - k.http;
      const jobs: Promise<unknown>[] = [
        sendTftp(tftpPort, r, k.tftp),
        sendTcp(Number(hp.split(':')[1]), () => mutate(r, httpSeed(r)), k.http),
        sendTcp(agiPort, () => mutate(r, agiSeed(r)), k.agi, 16),
      ];
      if (link) {
        const self = fileURLToPath(import.meta.url);
        for (const kind of ['dhcp', 'sip'] as const) {
          if (!k[kind]) continue;
          jobs.push(link.exec('peer', process.execPath, [...process.execArgv, self, '--udp-sender', kind, String(k[kind]), String(Math.floor(r() * 0xffffffff)), `${NET}.2`], { timeoutMs: 600_000, cwd: ROOT }).then((x) => {
            if (x.code !== 0 || Number(x.stdout.trim()) !== k[kind]) throw new Error(`the ${kind} sender in the peer namespace failed (${x.code}): ${x.stdout}${x.stderr}`);
          }));
        }
      }
      await Promise.all(jobs);
      for (const key of Object.keys(k) as (keyof typeof k)[]) sent[key] += k[key];
      done += n;
      await new Promise((res) => setTimeout(res, 200));
      const bad = await check(`after batch ${b} (${done.toLocaleString('en')} inputs)`);
      const rss = rssKb(pid);
      rssMax = Math.max(rssMax, rss);
      if (rss - rss0 > rssMb * 1024) bad.push(`RSS ${(rss / 1024).toFixed(1)} MB, more than ${rssMb} MB over ${(rss0 / 1024).toFixed(1)} MB`);
      process.stdout.write(`fuzz: batch ${b}: ${done.toLocaleString('en')} inputs, RSS ${(rss / 1024).toFixed(1)} MB, ${bad.length ? 'FAILED: ' + bad.join('; ') : 'the same apsd still serves a phone'}\n`);
      if (bad.length) {
        process.stdout.write(log.slice(-4000));
        return 1;
      }
    }
    const secs = (Date.now() - started) / 1000;
    // what reached apsd from the veth: its capture counts frames when it stops
    const closed = new Promise((res) => proc.once('close', res));
    proc.kill('SIGTERM');
    await closed;
    const capLine = /msg="dhcp capture stopped".*/.exec(log)?.[0];
    if (capLine) process.stdout.write(`fuzz: apsd's capture at its stop: ${/frames=\d+ dhcp=\d+ bad=\d+/.exec(capLine)?.[0] ?? capLine}\n`);
    if (proc.exitCode !== 0) {
      process.stdout.write(`fuzz: apsd did not stop cleanly (exit ${proc.exitCode})\n${log.slice(-2000)}`);
      return 1;
    }
    process.stdout.write(`fuzz: ${total.toLocaleString('en')} inputs in ${secs.toFixed(0)} s (${Object.entries(sent).map(([a, v]) => `${a} ${v.toLocaleString('en')}`).join(', ')}); apsd pid ${pid} served a phone after every batch; RSS ${(rss0 / 1024).toFixed(1)} → max ${(rssMax / 1024).toFixed(1)} MB\n`);
    return 0;
  } finally {
    await cleanup();
  }
}
