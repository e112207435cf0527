/**
 * Firmware over HTTP under an upgrade storm (not part of the tests; everything on 127.0.0.1).
 *
 *   npm run build && node --import tsx scripts/bench-firmware.ts     (or APS_BENCH_ONLY=firmware-http npm run bench)
 *
 *  1. a 30 MiB image downloaded with curl, three times each, from apsd and from nginx (one
 *     worker, sendfile) serving the same file on the same machine: MB/s;
 *  2. rendered-config requests/s (digest auth, keep-alive, c50, wrk) alone, and again while 200
 *     clients download the 30 MiB image over and over; apsd's resident memory during the storm
 *     (the images are streamed from disk, never held in memory).
 *
 * Every load is bounded in time (wrk -d, the downloads stop with it). APS_BENCH_QUICK=1: 3 s runs.
 * Prints a summary and one JSON line ("json: {...}").
 */
import { APSD, rssMb, startApsd } from './lib/apsd.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../src/store/index.js';
import type { Mac } from '../src/mac.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// the team's wrk/paths.lua: beside the repository, or two levels up from a worktree
const BENCH = path.resolve(process.env.APS_BENCH_DIR ?? [path.join(ROOT, '../shared/bench'), path.join(ROOT, '../../shared/bench')].find((d) => fs.existsSync(d)) ?? path.join(ROOT, '../shared/bench'));
const QUICK = process.env.APS_BENCH_QUICK === '1';
const SECS = QUICK ? 3 : 10;
const DEVICES = 1000;
const DOWNLOADS = 200;
const IMAGE = 30 * 1024 * 1024;

const log = (s: string) => process.stdout.write(s + '\n');
const macOf = (i: number) => ('805ec0' + i.toString(16).padStart(6, '0')) as Mac;


async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

function makeSite(): { dir: string; cfg: string; state: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-bench-fw-'));
  const cfg = path.join(dir, 'etc');
  const state = path.join(dir, 'state');
  fs.mkdirSync(path.join(cfg, 'templates.d'), { recursive: true });
  fs.mkdirSync(path.join(cfg, 'extensions.d'), { recursive: true });
  fs.writeFileSync(path.join(cfg, 'aps.ini'), `[server]\nstate_dir = ${state}\nlog_level = info\n[provisioning]\nsip_server = 1.1.1.1\nurl = http://1.1.1.1:8080/provisioning/\n[security]\nauth = digest\nusername = phone\npassword = secret\n`);
  const tpl = fs.readFileSync(path.join(ROOT, 'test/fixtures/config/templates.d/yealink-full.ini'), 'utf8').replace('tenant = acme', 'tenant = *');
  fs.writeFileSync(path.join(cfg, 'templates.d/yealink.ini'), tpl);
  const model = /model = (\S+)/.exec(tpl)![1];
  fs.writeFileSync(path.join(cfg, 'extensions.d/bench.ini'), Array.from({ length: DEVICES }, (_, i) => `[${1000 + i}]\nsecret = s${i}x\n`).join('\n'));
  const store = Store.open(state);
  store.addDevices(Array.from({ length: DEVICES }, (_, i) => ({ mac: macOf(i), tenant: 'default', vendor: 'yealink', model, template: 'yealink', state: 'provisioned' as const })));
  for (let i = 0; i < DEVICES; i++) store.setLine({ mac: macOf(i), idx: 1, extension: String(1000 + i), label: '', cid_source: 'from', local_port: '', srtp: false });
  store.close();
  fs.mkdirSync(path.join(state, 'firmware'), { recursive: true });
  fs.writeFileSync(path.join(state, 'firmware/firmware-30m.bin'), crypto.randomBytes(IMAGE));
  fs.writeFileSync(path.join(dir, 'paths.txt'), Array.from({ length: DEVICES }, (_, i) => `/provisioning/${macOf(i)}.cfg`).join('\n') + '\n');
  return { dir, cfg, state };
}

async function startNginx(dir: string, image: string): Promise<{ proc: ChildProcess; http: string } | null> {
  if (spawnSync('sh', ['-c', 'command -v nginx']).status !== 0) return null;
  const root = path.join(dir, 'nginx-root');
  // nginx's worker (www-data) walks into the folder
  fs.chmodSync(dir, 0o755);
  fs.mkdirSync(path.join(root, 'fw'), { recursive: true });
  fs.linkSync(image, path.join(root, 'fw/firmware-30m.bin'));
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  fs.mkdirSync(path.join(dir, 'nginx-tmp'), { recursive: true });
  fs.writeFileSync(conf, `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/nginx-error.log warn;\nevents { worker_connections 4096; }\nhttp {\n  default_type application/octet-stream;\n  sendfile on;\n  tcp_nopush on;\n  access_log off;\n  client_body_temp_path ${dir}/nginx-tmp;\n  proxy_temp_path ${dir}/nginx-tmp;\n  fastcgi_temp_path ${dir}/nginx-tmp;\n  uwsgi_temp_path ${dir}/nginx-tmp;\n  scgi_temp_path ${dir}/nginx-tmp;\n  server { listen 127.0.0.1:${port}; root ${root}; }\n}\n`);
  const p = spawn('nginx', ['-c', conf, '-p', dir, '-g', 'daemon off;'], { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    if (spawnSync('curl', ['-s', '-o', '/dev/null', '-I', `http://127.0.0.1:${port}/fw/firmware-30m.bin`]).status === 0) return { proc: p, http: `127.0.0.1:${port}` };
  }
  p.kill('SIGKILL');
  return null;
}

/** MB/s of `n` sequential curl downloads; the median. */
function curlSpeeds(url: string, n = 3): number {
  const speeds: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', url], { encoding: 'utf8', timeout: 60_000 });
    const [speed, size] = r.stdout.split(' ').map(Number);
    if (size !== IMAGE) throw new Error(`download of ${url} got ${size} bytes`);
    speeds.push(speed / 1e6);
  }
  return speeds.sort((a, b) => a - b)[Math.floor(n / 2)];
}

function wrkConfigs(base: string, pathsFile: string, secs: number): Promise<{ rps: number; p99: number } | null> {
  return new Promise((resolve) => {
    const p = spawn('wrk', ['-t1', '-c50', `-d${secs}s`, '--latency', '-s', path.join(BENCH, 'wrk/paths.lua'), base, '--', pathsFile, 'auth=digest', 'user=phone', 'pass=secret'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    const t = setTimeout(() => p.kill('SIGKILL'), (secs + 30) * 1000);
    p.on('close', () => {
      clearTimeout(t);
      const m = /RESULT (\{.*\})/.exec(out);
      const j = m ? JSON.parse(m[1]) : null;
      resolve(j ? { rps: j.rps, p99: j.lat_ms?.p99 } : null);
    });
  });
}

/**
 * `n` clients downloading the image over and over until stop(); bytes and completed downloads.
 * `perClient` (bytes/s) paces each client as a phone behind its link would read; 0 = as fast as loopback goes.
 */
function downloadStorm(url: string, n: number, perClient = 0) {
  let stopped = false;
  let bytes = 0;
  let done = 0;
  let errors = 0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: n });
  const reqs = new Set<http.ClientRequest>();
  const one = () => {
    if (stopped) return;
    const req = http.get(url, { agent, headers: { 'User-Agent': 'Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:01' } }, (res) => {
      let got = 0;
      const t0 = Date.now();
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        got += c.length;
        if (perClient) {
          const ahead = (got / perClient) * 1000 - (Date.now() - t0);
          if (ahead > 20) {
            res.pause();
            setTimeout(() => res.resume(), ahead);
          }
        }
      });
      res.on('end', () => {
        reqs.delete(req);
        done++;
        one();
      });
      res.on('error', () => undefined);
    });
    reqs.add(req);
    req.on('error', () => {
      reqs.delete(req);
      if (!stopped) errors++;
      setTimeout(one, 50);
    });
  };
  for (let i = 0; i < n; i++) one();
  return {
    stats: () => ({ bytes, done, errors }),
    stop() {
      stopped = true;
      for (const r of reqs) r.destroy();
      agent.destroy();
    },
  };
}

async function main() {
  if (!fs.existsSync(APSD)) throw new Error('build first: npm run build');
  const site = makeSite();
  const image = path.join(site.state, 'firmware/firmware-30m.bin');
  let a: Awaited<ReturnType<typeof startApsd>>;
  try {
    a = await startApsd(site.cfg);
  } catch (e) {
    fs.rmSync(site.dir, { recursive: true, force: true });
    throw e;
  }
  const nginx = await startNginx(site.dir, image);
  const result: Record<string, unknown> = {};
  try {
    const apsdMBs = curlSpeeds(`http://${a.http}/provisioning/firmware-30m.bin`);
    const nginxMBs = nginx ? curlSpeeds(`http://${nginx.http}/fw/firmware-30m.bin`) : null;
    log(`30 MiB image over HTTP, curl, median of 3: apsd ${apsdMBs.toFixed(0)} MB/s${nginxMBs ? `, nginx (1 worker, sendfile) ${nginxMBs.toFixed(0)} MB/s, ratio ${(apsdMBs / nginxMBs).toFixed(2)}` : ' (nginx not installed)'}`);
    result.image30m = { apsdMBs, nginxMBs };
    const pathsFile = path.join(site.dir, 'paths.txt');
    const haveWrk = spawnSync('sh', ['-c', 'command -v wrk']).status === 0 && fs.existsSync(path.join(BENCH, 'wrk/paths.lua'));
    if (!haveWrk) log(`(no wrk or no ${BENCH}/wrk/paths.lua: config requests not measured)`);
    else {
      await wrkConfigs(`http://${a.http}`, pathsFile, 2); // every config rendered once: the storm meets a warm cache
      const alone = await wrkConfigs(`http://${a.http}`, pathsFile, SECS);
      log(`config requests/s (digest, keep-alive, c50), no download running: ${alone?.rps.toFixed(0) ?? '?'} (p99 ${alone?.p99?.toFixed(1) ?? '?'} ms)`);
      result.configsAlone = alone;
      // paced: 200 phones sharing 100 MB/s (a gigabit link nearly full); unpaced: as fast as loopback and the client's CPU go
      for (const [label, perClient] of [['paced', 100e6 / DOWNLOADS], ['unpaced', 0]] as const) {
        const rss0 = rssMb(a.proc.pid!);
        const storm = downloadStorm(`http://${a.http}/provisioning/firmware-30m.bin`, DOWNLOADS, perClient);
        await new Promise((r) => setTimeout(r, 1000));
        let rssMax = rssMb(a.proc.pid!);
        const sampler = setInterval(() => (rssMax = Math.max(rssMax, rssMb(a.proc.pid!))), 250);
        const t0 = Date.now();
        const b0 = storm.stats().bytes;
        const during = await wrkConfigs(`http://${a.http}`, pathsFile, SECS);
        const s = storm.stats();
        const mbs = (s.bytes - b0) / 1e6 / ((Date.now() - t0) / 1000);
        clearInterval(sampler);
        storm.stop();
        await new Promise((r) => setTimeout(r, 500));
        log(`config requests/s while ${DOWNLOADS} firmware downloads run (${label}${perClient ? `, ${(perClient / 1e6).toFixed(1)} MB/s each` : ''}): ${during?.rps.toFixed(0) ?? '?'} (p99 ${during?.p99?.toFixed(1) ?? '?'} ms, ratio to none running ${alone && during ? (during.rps / alone.rps).toFixed(2) : '?'}); downloads ${mbs.toFixed(0)} MB/s together, ${s.errors} errors; apsd RSS ${rss0.toFixed(0)} MB before, at most ${rssMax.toFixed(0)} MB during`);
        result[`storm-${label}`] = { during, downloads: DOWNLOADS, perClient, downloadMBs: mbs, finished: s.done, errors: s.errors, rssBeforeMb: rss0, rssMaxMb: rssMax };
      }
    }
  } finally {
    nginx?.proc.kill('SIGTERM');
    a.proc.kill('SIGTERM');
    await new Promise((r) => a.proc.once('exit', r));
    fs.rmSync(site.dir, { recursive: true, force: true });
  }
  log(`json: ${JSON.stringify(result)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
