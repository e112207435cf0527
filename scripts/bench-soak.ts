/**
 * The soak of `npm run bench` (APS_BENCH_ONLY=soak): apsd under a mixed, steady load for a long
 * time — HTTP digest fetches of rendered configs (keep-alive and close), TFTP fetches with lease
 * proof, firmware over HTTP dropped half-way now and then, one PIN registration a second over
 * FastAGI — while its resident memory and open descriptors are sampled. Memory must be flat
 * after warm-up: every cache is bounded. Prints a line a minute and, at the end, the slope of RSS
 * over the last half of the run (MB/min) and of the descriptor count.
 *
 *   APS_SOAK_SECONDS   duration (default 600 in the quick run, APS_BENCH_QUICK=1; else 3600)
 *   APS_SOAK_RATE      HTTP requests a second (default 200; TFTP is a quarter of it)
 * Everything is on 127.0.0.1, bounded in time; apsd is stopped at the end.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../src/store/index.js';
import type { Mac } from '../src/mac.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const APSD = path.join(ROOT, 'dist/src/daemon.js');
const QUICK = process.env.APS_BENCH_QUICK === '1';
const SECONDS = Number(process.env.APS_SOAK_SECONDS ?? (QUICK ? 600 : 3600));
const RATE = Number(process.env.APS_SOAK_RATE ?? 200);
const PROVISIONED = 2000;
const PIN = '739146';
const log = (s: string) => process.stdout.write(s + '\n');
const macOf = (i: number, p = '805ec0') => (p + i.toString(16).padStart(6, '0')) as Mac;
const phoneIp = (i: number) => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

function site() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-soak-'));
  const cfg = path.join(dir, 'etc');
  const state = path.join(dir, 'state');
  fs.mkdirSync(path.join(cfg, 'templates.d'), { recursive: true });
  fs.mkdirSync(path.join(cfg, 'extensions.d'), { recursive: true });
  fs.mkdirSync(path.join(state, 'firmware'), { recursive: true });
  fs.writeFileSync(path.join(state, 'firmware', 'fw.rom'), crypto.randomBytes(4 * 1024 * 1024));
  const registrations = SECONDS + 60;
  fs.writeFileSync(path.join(cfg, 'aps.ini'), [
    '[server]', `state_dir = ${state}`, 'log_level = info',
    '[provisioning]', 'sip_server = 1.1.1.1', 'url = http://1.1.1.1:8080/provisioning/', `pin = ${PIN}`,
    '[security]', 'auth = digest', 'username = phone', 'password = secret', 'tftp_secrets = lease',
    '[pin]', 'agi_listen = 127.0.0.1:0', 'max_attempts = 100',
    '[resync]', 'method = none', '',
  ].join('\n'));
  const tpl = fs.readFileSync(path.join(ROOT, 'test/fixtures/config/templates.d/yealink-full.ini'), 'utf8').replace('tenant = acme', 'tenant = *');
  fs.writeFileSync(path.join(cfg, 'templates.d/yealink.ini'), tpl);
  const model = /model = (\S+)/.exec(tpl)![1]!;
  const ext: string[] = [];
  for (let i = 0; i < PROVISIONED + registrations; i++) ext.push(`[${10000 + i}]\nsecret = s${crypto.randomBytes(6).toString('hex')}\nname = User ${i}\n`);
  fs.writeFileSync(path.join(cfg, 'extensions.d/soak.ini'), ext.join('\n'));
  const store = Store.open(state);
  const devs = [];
  for (let i = 0; i < PROVISIONED; i++) devs.push({ mac: macOf(i), tenant: 'default', vendor: 'yealink', model, template: 'yealink', state: 'provisioned' as const });
  for (let i = 0; i < registrations; i++) devs.push({ mac: macOf(i, '805ec1'), tenant: 'default', vendor: 'yealink', model, template: 'yealink', state: 'unprovisioned' as const });
  store.addDevices(devs);
  const now = Date.now();
  store.transaction(() => {
    for (let i = 0; i < PROVISIONED; i++) {
      store.setLine({ mac: macOf(i), idx: 1, extension: String(10000 + i), label: '', cid_source: 'from', local_port: '', srtp: false });
      // each phone its own address (loopback is all local): the lease proves it over TFTP
      store.putLease({ mac: macOf(i), ip: phoneIp(i), interface: 'lo', source: 'bench', expires_at: now + 48 * 3600_000, seen_at: now });
    }
  });
  store.close();
  return { dir, cfg, registrations };
}

// ---------------------------------------------------------------- clients

/** Digest with a nonce kept and nc counted up, as a phone does; a stale nonce is renewed. */
class DigestClient {
  private nonce = '';
  private realm = '';
  private nc = 0;
  constructor(private readonly host: string, private readonly port: number, private readonly agent: http.Agent | false) {}
  private header(uri: string): string {
    const md5 = (s: string) => crypto.createHash('md5').update(s).digest('hex');
    const nc = (++this.nc).toString(16).padStart(8, '0');
    const cnonce = crypto.randomBytes(6).toString('hex');
    const response = md5(`${md5(`phone:${this.realm}:secret`)}:${this.nonce}:${nc}:${cnonce}:auth:${md5(`GET:${uri}`)}`);
    return `Digest username="phone", realm="${this.realm}", nonce="${this.nonce}", uri="${uri}", algorithm=MD5, response="${response}", qop=auth, nc=${nc}, cnonce="${cnonce}"`;
  }
  get(uri: string, first = true): Promise<number> {
    return new Promise((resolve) => {
      const headers: Record<string, string> = this.nonce ? { Authorization: this.header(uri) } : {};
      const req = http.get({ host: this.host, port: this.port, path: uri, agent: this.agent, headers, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 401 && first) {
            const ch = ([] as string[]).concat(res.headers['www-authenticate'] ?? []).join(', ');
            const m = /algorithm=MD5, nonce="([^"]+)"/.exec(ch);
            this.realm = /realm="([^"]+)"/.exec(ch)?.[1] ?? 'aps';
            this.nonce = m?.[1] ?? '';
            this.nc = 0;
            resolve(this.get(uri, false));
          } else resolve(res.statusCode ?? 0);
        });
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(0));
    });
  }
}

function tftpGet(port: number, file: string, from: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    let t = setTimeout(() => done(false), 5000);
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.close();
      resolve(ok);
    };
    s.on('message', (m, ri) => {
      if (m[1] === 6) return void s.send(Buffer.from([0, 4, 0, 0]), ri.port, ri.address);
      if (m[1] !== 3) {
        if (process.env.APS_SOAK_DEBUG) process.stderr.write(`tftp ${file}: ${m.subarray(4).toString()}\n`);
        return done(false);
      }
      const last = m.length - 4 < 1428;
      // the last ACK must leave before the socket closes, or the server retransmits for seconds
      s.send(Buffer.from([0, 4, m[2]!, m[3]!]), ri.port, ri.address, () => {
        if (last) done(true);
      });
      clearTimeout(t);
      t = setTimeout(() => done(false), 5000);
    });
    s.bind(0, from, () => s.send(Buffer.concat([Buffer.from([0, 1]), Buffer.from(`${file}\0octet\0blksize\x001428\0`)]), port, '127.0.0.1'));
  });
}

/** A firmware download the client drops after its first bytes (a phone rebooting mid-upgrade). */
function droppedDownload(host: string, port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => s.write('GET /fw.rom HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.once('data', () => s.destroy());
    s.on('error', () => s.destroy());
    s.setTimeout(5000, () => s.destroy());
    s.on('close', () => resolve());
  });
}

function register(port: number, mac: string, ext: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(`agi_network: yes\nagi_network_script: register\nagi_channel: PJSIP/unprov-${mac}-00000001\nagi_callerid: unprov-${mac}\nagi_arg_1: ${PIN}\nagi_arg_2: ${ext}\n\n`));
    let result = '';
    const t = setTimeout(() => s.destroy(), 10_000);
    s.on('data', (d) => {
      for (const line of d.toString().split('\n').filter(Boolean)) {
        const m = /^SET VARIABLE APS_RESULT "?([A-Z_]+)/.exec(line);
        if (m) result = m[1]!;
        s.write(/^GET /.test(line) ? '200 result=0\n' : '200 result=1\n');
      }
    });
    s.on('error', () => s.destroy());
    s.on('close', () => {
      clearTimeout(t);
      resolve(result || 'none');
    });
  });
}

// ---------------------------------------------------------------- the run

function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  const num = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const den = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return den ? num / den : 0;
}

async function main(): Promise<void> {
  if (!fs.existsSync(APSD)) throw new Error('build first: npm run build');
  const s = site();
  const p = spawn(process.execPath, [APSD, '--config', s.cfg, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, JOURNAL_STREAM: '' } });
  let out = '';
  p.stdout.on('data', (d) => (out = (out + d).slice(-100_000)));
  p.stderr.on('data', (d) => (out = (out + d).slice(-100_000)));
  const t0 = Date.now();
  while (!/apsd ready/.test(out)) {
    if (p.exitCode !== null || Date.now() - t0 > 30_000) throw new Error(`apsd did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const ready = /apsd ready.*/.exec(out)![0];
  const [host, hp] = /http=([0-9.:]+)/.exec(ready)![1]!.split(':') as [string, string];
  const tftpPort = Number(/tftp=[0-9.]+:(\d+)/.exec(ready)![1]);
  const agiPort = Number(/agi=[0-9.]+:(\d+)/.exec(ready)?.[1] ?? 0);
  const pid = p.pid!;
  const fds = () => fs.readdirSync(`/proc/${pid}/fd`).length;
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  log(`soak: ${SECONDS} s, ${RATE} HTTP req/s (keep-alive and close), ${RATE / 4} TFTP/s, 1 dropped firmware download and 1 PIN registration a second; apsd pid ${pid}, ${PROVISIONED} provisioned devices`);
  const ka = new DigestClient(host, Number(hp), new http.Agent({ keepAlive: true, maxSockets: 16 }));
  const close = new DigestClient(host, Number(hp), false);
  const c = { http: 0, httpFail: 0, tftp: 0, tftpFail: 0, dropped: 0, registered: 0, regFail: 0 };
  const samples: { t: number; rss: number; fds: number }[] = [];
  const end = Date.now() + SECONDS * 1000;
  const started = Date.now();
  let reg = 0;
  let tick = 0;
  const inflight = new Set<Promise<unknown>>();
  const track = (x: Promise<unknown>) => {
    inflight.add(x);
    void x.finally(() => inflight.delete(x));
  };
  while (Date.now() < end) {
    const slice = Date.now();
    // a tenth of a second's worth of each kind of request
    for (let i = 0; i < RATE / 10; i++) {
      const m = macOf(Math.floor(Math.random() * PROVISIONED));
      const cl = i % 4 === 0 ? close : ka;
      track(cl.get(`/provisioning/${m}.cfg`).then((st) => (st === 200 ? c.http++ : c.httpFail++)));
    }
    for (let i = 0; i < RATE / 40; i++) {
      const k = Math.floor(Math.random() * PROVISIONED);
      track(tftpGet(tftpPort, `${macOf(k)}.cfg`, phoneIp(k)).then((ok) => (ok ? c.tftp++ : c.tftpFail++)));
    }
    if (tick % 10 === 0) {
      track(droppedDownload(host, Number(hp)).then(() => c.dropped++));
      if (agiPort && reg < s.registrations) {
        const n = reg++;
        track(register(agiPort, macOf(n, '805ec1'), String(10000 + PROVISIONED + n)).then((r) => (r === 'OK' ? c.registered++ : c.regFail++)));
      }
    }
    if (tick % 100 === 0) {
      const x = { t: (Date.now() - started) / 60_000, rss: rss(), fds: fds() };
      samples.push(x);
      if (tick % 600 === 0) log(`soak: ${x.t.toFixed(1)} min: RSS ${x.rss.toFixed(1)} MB, ${x.fds} descriptors, ${c.http} HTTP ok / ${c.httpFail} failed, ${c.tftp} TFTP ok / ${c.tftpFail} failed, ${c.registered} registered / ${c.regFail} failed`);
    }
    tick++;
    if (inflight.size > 5000) await Promise.race(inflight);
    const wait = slice + 100 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await Promise.all(inflight);
  if (process.env.APS_SOAK_DEBUG) {
    process.stderr.write(`fds right after: ${fds()}\n`);
    await new Promise((r) => setTimeout(r, 7000));
    const kinds = new Map<string, number>();
    for (const f of fs.readdirSync(`/proc/${pid}/fd`)) {
      let t = '?';
      try { t = fs.readlinkSync(`/proc/${pid}/fd/${f}`).replace(/[0-9]+/g, 'N'); } catch { /* gone */ }
      kinds.set(t, (kinds.get(t) ?? 0) + 1);
    }
    process.stderr.write(`fds: ${JSON.stringify([...kinds])}\n`);
    const tcp = fs.readFileSync(`/proc/${pid}/net/udp`, 'utf8').split('\n').slice(1).filter(Boolean).map((l) => l.trim().split(/\s+/)[3]);
    const st = new Map<string, number>();
    for (const x of tcp) st.set(x!, (st.get(x!) ?? 0) + 1);
    process.stderr.write(`tcp states: ${JSON.stringify([...st])}\n`);
  }
  const last = { t: (Date.now() - started) / 60_000, rss: rss(), fds: fds() };
  samples.push(last);
  const half = samples.filter((x) => x.t >= last.t / 2);
  const rssSlope = slope(half.map((x) => [x.t, x.rss]));
  const fdSlope = slope(half.map((x) => [x.t, x.fds]));
  log(`soak: done after ${last.t.toFixed(1)} min: ${c.http} HTTP ok / ${c.httpFail} failed, ${c.tftp} TFTP ok / ${c.tftpFail} failed, ${c.dropped} firmware downloads dropped, ${c.registered} PIN registrations ok / ${c.regFail} failed`);
  log(`soak: RSS ${samples[0]!.rss.toFixed(1)} MB at start, ${Math.max(...samples.map((x) => x.rss)).toFixed(1)} MB at most, ${last.rss.toFixed(1)} MB at the end; last half: ${rssSlope >= 0 ? '+' : ''}${rssSlope.toFixed(3)} MB/min; descriptors ${samples[0]!.fds} → ${last.fds} (last half ${fdSlope >= 0 ? '+' : ''}${fdSlope.toFixed(2)}/min)`);
  const outDir = path.join(ROOT, 'bench-out');
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ seconds: SECONDS, rate: RATE, counts: c, rssSlopeMbPerMin: rssSlope, fdSlopePerMin: fdSlope, samples }, null, 2));
  await new Promise<void>((r) => {
    p.on('exit', () => r());
    p.kill('SIGTERM');
  });
  fs.rmSync(s.dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
