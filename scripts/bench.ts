/**
 * npm run bench — boot-storm figures for apsd on this machine (not part of the tests).
 *
 *  1. a store of 10,000 devices (one line each): rendered-config HTTP requests/s with digest
 *     auth at concurrency 200 with Connection: close (wrk), and with keep-alive;
 *  2. TFTP transfers/s of the same per-MAC configs at concurrency 200, blksize 1428, proof by
 *     lease, every file checked byte for byte (tftpbench);
 *  3. a 30 MiB firmware file over TFTP with windowsize 8;
 *  4. a store of 100,000 devices: time from start to READY and resident memory;
 *  5. scripts/bench-discovery.ts, bench-dhcp.ts (namespaces) and bench-firmware.ts (a 30 MiB
 *     image over HTTP beside nginx; config requests/s while 200 firmware downloads run).
 *
 * The load generators are the team's yardstick in ../shared/bench (wrk/paths.lua and
 * tftpbench.c, built into a temp dir); APS_BENCH_DIR points elsewhere. Everything targets
 * 127.0.0.1, and every load is bounded in count and time.
 */
import { APSD, rssMb, startApsd } from './lib/apsd.js';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Store } from '../src/store/index.js';
import { loadConfig } from '../src/config/index.js';
import { VendorRegistry, fileNameFor } from '../src/vendors/registry.js';
import { Renderer } from '../src/render/index.js';
import type { Mac } from '../src/mac.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCH = path.resolve(process.env.APS_BENCH_DIR ?? path.join(ROOT, '../shared/bench'));
const QUICK = process.env.APS_BENCH_QUICK === '1';
/** APS_BENCH_ONLY=http-close,http-ka,tftp,firmware,big,discovery,dhcp,firmware-http,soak runs only those parts */
const ONLY = process.env.APS_BENCH_ONLY?.split(',');
const want = (part: string) => !ONLY || ONLY.includes(part);
const N = 10_000;
const results: Record<string, unknown> = {};

function log(s: string) {
  process.stdout.write(s + '\n');
}

function macOf(i: number): Mac {
  return ('805ec0' + i.toString(16).padStart(6, '0')) as Mac;
}

function makeSite(devices: number, withLines: boolean): { dir: string; cfg: string; state: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-bench-'));
  const cfg = path.join(dir, 'etc');
  const state = path.join(dir, 'state');
  fs.mkdirSync(path.join(cfg, 'templates.d'), { recursive: true });
  fs.mkdirSync(path.join(cfg, 'extensions.d'), { recursive: true });
  fs.writeFileSync(path.join(cfg, 'aps.ini'), `[server]\nstate_dir = ${state}\nlog_level = info\n[provisioning]\nsip_server = 1.1.1.1\nurl = http://1.1.1.1:8080/provisioning/\n[security]\nauth = digest\nusername = phone\npassword = secret\ntftp_secrets = lease\n[ip_dns_map]\n1.1.1.1 = pbx.example.com\n`);
  const tpl = fs.readFileSync(path.join(ROOT, 'test/fixtures/config/templates.d/yealink-full.ini'), 'utf8').replace('tenant = acme', 'tenant = *');
  fs.writeFileSync(path.join(cfg, 'templates.d/yealink.ini'), tpl);
  const model = /model = (\S+)/.exec(tpl)![1];
  if (withLines) {
    const ext: string[] = [];
    for (let i = 0; i < devices; i++) ext.push(`[${1000 + i}]\nsecret = s${crypto.randomBytes(6).toString('hex')}\nname = User ${i}\n`);
    fs.writeFileSync(path.join(cfg, 'extensions.d/bench.ini'), ext.join('\n'));
  }
  const store = Store.open(state);
  const list = [];
  for (let i = 0; i < devices; i++) list.push({ mac: macOf(i), tenant: 'default', vendor: 'yealink', model, template: 'yealink', state: 'provisioned' as const });
  store.addDevices(list);
  store.db.transaction(() => {
    for (let i = 0; i < devices; i++) {
      if (withLines) store.db.prepare('INSERT INTO lines (mac, idx, extension) VALUES (?, 1, ?)').run(macOf(i), String(1000 + i));
    }
  })();
  store.close();
  return { dir, cfg, state };
}

/** TFTP has no credentials: its proof is the DHCP lease, here held by 127.0.0.1 for every MAC. */
function addLeases(state: string, devices: number) {
  const store = Store.open(state);
  const now = Date.now();
  store.db.transaction(() => {
    for (let i = 0; i < devices; i++) store.putLease({ mac: macOf(i), ip: '127.0.0.1', interface: 'lo', source: 'bench', expires_at: now + 3600_000, seen_at: now });
  })();
  store.close();
}

function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function wrk(url: string, paths: string, extra: string[], conc = 200, secs = QUICK ? 5 : 10) {
  const lua = path.join(BENCH, 'wrk/paths.lua');
  const r = spawnSync('wrk', ['-t2', `-c${conc}`, `-d${secs}s`, '--latency', '-s', lua, url, '--', paths, ...extra], { encoding: 'utf8', timeout: (secs + 30) * 1000 });
  const m = /RESULT (\{.*\})/.exec(r.stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  const errors = /Socket errors: (.*)/.exec(r.stdout)?.[1] ?? 'none';
  return { raw: r.stdout, result: m ? JSON.parse(m[1]) : null, non2xx, errors };
}

function tftpbench(bin: string, args: string[], secs = 120) {
  const r = spawnSync(bin, [...args, '-j'], { encoding: 'utf8', timeout: (secs + 30) * 1000 });
  const m = /RESULT (\{.*\})/.exec(r.stdout);
  return { status: r.status, raw: r.stdout + r.stderr, json: m ? JSON.parse(m[1]) : null };
}

async function main() {
  if (process.argv.includes('storm')) {
    // npm run bench -- storm [--full]: the boot storm end to end, against apsd and the hand-built
    // stack; it runs the daemon as built, so it builds dist/ first (as npm test does)
    const b = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'inherit' });
    if (b.status !== 0) process.exit(1);
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts/bench-storm.ts'), ...process.argv.slice(2).filter((a) => a !== 'storm')], { cwd: ROOT, stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
  if (!fs.existsSync(APSD)) throw new Error('build first: npm run build');
  const haveBench = fs.existsSync(path.join(BENCH, 'tftpbench.c'));
  log(`aps benchmark — ${new Date().toISOString()} — ${os.cpus().length} CPUs, node ${process.version}${QUICK ? ' (quick)' : ''}`);
  if (!haveBench) log(`(no load generators at ${BENCH}: set APS_BENCH_DIR to the bench folder with tftpbench.c and wrk/paths.lua)`);

  // --- 10,000 devices -------------------------------------------------------------------
  if (['http-close', 'http-ka', 'tftp', 'firmware'].some(want)) {
  log(`\npreparing ${N} devices with one line each …`);
  const site = makeSite(N, true);
  const work = path.join(site.dir, 'work');
  fs.mkdirSync(work);
  const cfg = loadConfig(site.cfg);
  const registry = VendorRegistry.load(path.join(ROOT, 'vendors'));
  const store = Store.open(site.state, { readonly: true });
  const renderer = new Renderer({ registry, store, config: () => cfg, generation: () => 1 });
  const yl = registry.get('yealink')!;
  const devSpec = yl.compiledFiles.find((f) => f.scope === 'device' && f.spec.secrets)!;
  const expectDir = path.join(work, 'expect');
  fs.mkdirSync(expectDir);
  const names: string[] = [];
  for (let i = 0; i < N; i++) {
    const mac = macOf(i);
    const name = fileNameFor(devSpec.spec, mac);
    const d = store.device(mac)!;
    fs.writeFileSync(path.join(expectDir, name), renderer.renderUncached(devSpec, undefined, d).body);
    names.push(name);
  }
  store.close();
  fs.writeFileSync(path.join(work, 'names.txt'), names.join('\n') + '\n');
  fs.writeFileSync(path.join(work, 'paths.txt'), names.map((n) => `/provisioning/${n}`).join('\n') + '\n');
  const sizes = names.map((n) => fs.statSync(path.join(expectDir, n)).size);
  log(`rendered config size: ${Math.min(...sizes)}–${Math.max(...sizes)} bytes`);

  const fwDir = path.join(site.state, 'firmware');
  fs.mkdirSync(fwDir, { recursive: true });
  const fw = path.join(fwDir, 'firmware-30m.bin');
  fs.writeFileSync(fw, crypto.randomBytes(30 * 1024 * 1024));

  const a = await startApsd(site.cfg);
  log(`apsd ready in ${a.readyMs.toFixed(0)} ms, RSS ${rssMb(a.pid).toFixed(1)} MB (10,000 devices)`);
  results.devices10k = { readyMs: a.readyMs, rssMb: rssMb(a.pid) };

  if (haveBench) {
    const url = `http://${a.http}`;
    const pathsFile = path.join(work, 'paths.txt');
    for (const [label, extra] of ([
      ['http-close', 'HTTP digest, Connection: close, c200', ['auth=digest', 'user=phone', 'pass=secret', 'close=1']],
      ['http-ka', 'HTTP digest, keep-alive, c200', ['auth=digest', 'user=phone', 'pass=secret']],
    ] as [string, string, string[]][]).filter((x) => want(x[0])).map((x) => [x[1], x[2]] as const)) {
      const cpu0 = cpuSeconds(a.pid);
      const t0 = Date.now();
      const w = wrk(url, pathsFile, extra);
      const cpu = ((cpuSeconds(a.pid) - cpu0) / ((Date.now() - t0) / 1000)) * 100;
      const r = w.result ?? {};
      log(`${label}: ${Math.round(r.rps ?? 0)} req/s, p50 ${fmt(r.lat_ms?.p50)} ms, p99 ${fmt(r.lat_ms?.p99)} ms, non-2xx ${w.non2xx} (the first 401 challenge per wrk thread), socket errors ${w.errors}, apsd CPU ${cpu.toFixed(0)}%`);
      if (!w.result) log(w.raw);
      results[label] = { ...r, non2xx: w.non2xx, errors: w.errors, apsdCpuPct: cpu };
    }
    log(`RSS after HTTP load: ${rssMb(a.pid).toFixed(1)} MB`);

    addLeases(site.state, N);
    const bin = path.join(work, 'tftpbench');
    execFileSync('gcc', ['-O2', '-o', bin, path.join(BENCH, 'tftpbench.c')]);
    const [host, port] = a.tftp.split(':');
    if (want('tftp')) {
    const t = tftpbench(bin, ['load', '-s', `${host}:${port}`, '-L', path.join(work, 'names.txt'), '-D', expectDir, '-c', '200', '-n', String(QUICK ? 3000 : N), '-b', '1428', '-t', '-d', '120']);
    log(`TFTP configs c200 blksize 1428: ${summarizeTftp(t.json) ?? t.raw}`);
    results['TFTP configs c200 b1428'] = t.json;
    }
    if (want('firmware')) {
    const f = tftpbench(bin, ['load', '-s', `${host}:${port}`, '-f', 'firmware-30m.bin', '-e', fw, '-b', '1428', '-w', '8', '-t', '-d', '60']);
    log(`TFTP 30 MiB firmware, windowsize 8: ${summarizeTftp(f.json) ?? f.raw}`);
    results['TFTP firmware w8'] = f.json;
    }
    log(`RSS after TFTP load: ${rssMb(a.pid).toFixed(1)} MB`);
  }
  await a.stop();
  fs.rmSync(site.dir, { recursive: true, force: true });
  }

  // --- 100,000 devices --------------------------------------------------------------------
  if (want('big')) {
  log(`\npreparing 100,000 devices …`);
  const big = makeSite(100_000, false);
  const b = await startApsd(big.cfg);
  const idle = rssMb(b.pid);
  const c = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--digest', '-u', 'phone:secret', `http://${b.http}/provisioning/805ec001869f.cfg`], { encoding: 'utf8' });
  log(`apsd ready in ${b.readyMs.toFixed(0)} ms with 100,000 devices; RSS ${idle.toFixed(1)} MB at READY, ${rssMb(b.pid).toFixed(1)} MB after a fetch (HTTP ${c.stdout})`);
  results.devices100k = { readyMs: b.readyMs, rssMb: idle };
  await b.stop();
  fs.rmSync(big.dir, { recursive: true, force: true });
  }

  // --- DHCP: passive capture and the built-in server (namespaces: needs root) ------------
  // --- firmware over HTTP: a 30 MiB image beside nginx; config requests during 200 downloads ---
  // --- soak: mixed load for 10 minutes (quick) or an hour, memory and descriptors over time ---
  for (const [part, script] of [['discovery', 'bench-discovery.ts'], ['dhcp', 'bench-dhcp.ts'], ['firmware-http', 'bench-firmware.ts'], ['soak', 'bench-soak.ts']] as const) {
    const file = path.join(ROOT, 'scripts', script);
    if (!want(part) || !fs.existsSync(file)) continue;
    log(`\n${part}: node --import tsx scripts/${script}`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: (part === 'soak' ? 80 : 15) * 60_000, env: { ...process.env, APS_BENCH_QUICK: QUICK ? '1' : '' } });
    log((r.stdout ?? '').trimEnd());
    if (r.status !== 0) log(`(${script} exited ${r.status}: ${(r.stderr ?? '').trim().split('\n').slice(-5).join(' / ')})`);
    results[part] = { exit: r.status, output: r.stdout };
  }

  const out = path.join(ROOT, 'bench-out');
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(results, null, 2));
  log(`\nraw figures: ${path.relative(ROOT, file)}`);
}

function fmt(n: unknown): string {
  return typeof n === 'number' ? n.toFixed(2) : String(n);
}

function summarizeTftp(j: { tps: number; mbps: number; ok: number; fail: number; retrans: number; neg_blksize: number; neg_window: number; lat_ms: { p50: number; p99: number }; client_cpu_us_per_xfer: number } | null): string | null {
  if (!j) return null;
  return `${j.tps.toFixed(0)} transfers/s, ${j.mbps.toFixed(1)} MB/s, p50 ${j.lat_ms.p50.toFixed(2)} ms, p99 ${j.lat_ms.p99.toFixed(2)} ms, ${j.ok} ok / ${j.fail} failed, ${j.retrans} retransmits, negotiated blksize ${j.neg_blksize} windowsize ${j.neg_window}, client ${j.client_cpu_us_per_xfer.toFixed(0)} us CPU/transfer`;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
