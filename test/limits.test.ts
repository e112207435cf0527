/**
 * No one source starves the rest, and every resource a request takes is given back (issue 14,
 * points 2 and 3), against the built apsd on loopback: 1,000 HTTP firmware downloads and 1,000
 * TFTP transfers dropped by their clients leave apsd with its idle descriptor count; past its
 * connection budget apsd answers 503 (logged once); one address flooding TFTP with
 * `timeout=255` requests it never acknowledges, or holding FastAGI and HTTP connections idle,
 * does not keep a real phone (tftp-hpa, curl, an Asterisk FastAGI call) from being served.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { curl, run, startDaemon, type Daemon } from './support/daemon.js';
import { agiCall } from './support/pin-peers.js';
import { waitUntil } from '../scripts/lib/netns.js';

const FW = Buffer.alloc(16 * 1024 * 1024, 0x3c);
const FLOODER = '127.0.0.3';

/** curl fetches the image; its status and byte count */
function fetchImage(http: string): string {
  return run('curl', ['-sS', '--max-time', '20', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `http://${http}/fw.rom`]).text;
}
const WHOLE = `200 ${FW.length}`;

const fds = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

function firmwareDir(stateDir: string): void {
  fs.mkdirSync(path.join(stateDir, 'firmware'), { recursive: true });
  fs.writeFileSync(path.join(stateDir, 'firmware', 'fw.rom'), FW);
}

/** Starts a GET of the image and drops the connection at its first bytes. */
function dropDownload(http: string): Promise<void> {
  const [host, port] = http.split(':');
  return new Promise((resolve) => {
    const s = net.connect({ host, port: Number(port) }, () => s.write('GET /fw.rom HTTP/1.1\r\nHost: x\r\n\r\n'));
    const t = setTimeout(() => s.destroy(), 5000);
    s.once('data', () => s.destroy());
    s.on('error', () => s.destroy());
    s.on('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

function rrq(file: string, opts: Record<string, string>): Buffer {
  const parts = [file, 'octet', ...Object.entries(opts).flat()];
  return Buffer.concat([Buffer.from([0, 1]), ...parts.map((p) => Buffer.from(p + '\0', 'latin1'))]);
}

/** A TFTP client that asks for the image, receives the OACK or first block, and vanishes without an ACK. */
function dropTransfer(port: number, from = '127.0.0.1', opts: Record<string, string> = { blksize: '1428' }): Promise<string> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const t = setTimeout(() => done('silent'), 3000);
    const done = (what: string) => {
      clearTimeout(t);
      s.close();
      resolve(what);
    };
    s.on('message', (m) => done(m[1] === 6 ? 'oack' : m[1] === 3 ? 'data' : m[1] === 5 ? `error ${m.subarray(4, m.length - 1).toString()}` : 'other'));
    s.bind(0, from, () => s.send(rrq('fw.rom', opts), port, '127.0.0.1'));
  });
}

async function inBatches(n: number, width: number, one: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += width) await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, k) => one(i + k)));
}

let d: Daemon;
test.before(async () => {
  d = await startDaemon({
    setup: (configDir, stateDir) => {
      firmwareDir(stateDir);
      fs.appendFileSync(path.join(configDir, 'aps.ini'), '\n[tftp]\nfirst_ack_timeout = 1s\nper_source = 2000\n');
      const ini = path.join(configDir, 'aps.ini');
      fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('[http]\n', '[http]\nmax_connections = 100\n'));
    },
  });
});
test.after(() => d?.cleanup());

test('1,000 HTTP firmware downloads dropped by their clients leave apsd with its idle descriptor count', async () => {
  const pid = d.proc.pid!;
  assert.is(fetchImage(d.http), WHOLE);
  const idle = fds(pid);
  await inBatches(1000, 50, () => dropDownload(d.http));
  let now = 0;
  await waitUntil(() => (now = fds(pid)) <= idle + 2, 15_000, `descriptors back to ${idle}`, 100);
  console.log(`  http: ${idle} descriptors idle, ${now} after 1,000 dropped downloads`);
  assert.is(fetchImage(d.http), WHOLE, 'and the image is still served whole');
});

test('1,000 TFTP transfers dropped by their clients are given up within seconds, descriptors and all', async () => {
  const pid = d.proc.pid!;
  const idle = fds(pid);
  const got = new Map<string, number>();
  await inBatches(1000, 100, async () => {
    const r = await dropTransfer(d.tftpPort);
    got.set(r, (got.get(r) ?? 0) + 1);
  });
  // (a datagram may be lost on a loaded loopback: the client then never learns of its transfer)
  assert.ok((got.get('oack') ?? 0) >= 990, JSON.stringify([...got]));
  let now = 0;
  await waitUntil(() => (now = fds(pid)) <= idle + 2, 15_000, `descriptors back to ${idle}`, 100);
  console.log(`  tftp: ${idle} descriptors idle, ${now} after 1,000 dropped transfers`);
  const out = path.join(d.dir, 'fw.tftp');
  run('tftp', ['127.0.0.1', String(d.tftpPort), '-m', 'octet', '-c', 'get', 'fw.rom', out], { timeout: 60_000 });
  assert.is(fs.statSync(out).size, FW.length);
});

test('past max_connections a new HTTP connection gets 503 at once, logged once; the others are served', async () => {
  const [host, port] = d.http.split(':');
  const idle: net.Socket[] = [];
  for (let i = 0; i < 100; i++) idle.push(await new Promise<net.Socket>((r) => { const s = net.connect({ host, port: Number(port) }, () => r(s)); s.on('error', () => {}); }));
  try {
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 3; i++) {
      const r = curl([`http://${d.http}/fw.rom`]);
      assert.is(r.status, 503);
    }
    await d.waitLog(/level=warn msg="http: connection limit reached, new connections are refused" open=100 max=100/);
    await new Promise((r) => setTimeout(r, 200));
    assert.is(d.logs.filter((l) => /http: connection limit reached/.test(l)).length, 1);
  } finally {
    for (const s of idle) s.destroy();
  }
  await waitUntil(() => fetchImage(d.http) === WHOLE, 5000, 'served again once the idle connections are gone');
});

// --------------------------------------------------------------- one address floods, a phone is served

let e: Daemon;
test('one address flooding TFTP with timeout=255 requests it never acknowledges holds at most its share, and only for seconds', async () => {
  e = await startDaemon({
    setup: (configDir, stateDir) => {
      firmwareDir(stateDir);
      const ini = path.join(configDir, 'aps.ini');
      fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('[provisioning]\n', '[provisioning]\npin = 739146\n') + '\n[pin]\nagi_listen = 127.0.0.1:0\n');
    },
  });
  const flood: Promise<string>[] = [];
  const counts = new Map<string, number>();
  const t0 = Date.now();
  for (let i = 0; i < 2000; i++) flood.push(dropTransfer(e.tftpPort, FLOODER, { timeout: '255', blksize: '1428' }).then((r) => { counts.set(r, (counts.get(r) ?? 0) + 1); return r; }));
  // a phone on another address fetches its image meanwhile
  const out = path.join(e.dir, 'fw.tftp');
  const r = run('tftp', ['127.0.0.1', String(e.tftpPort), '-m', 'octet', '-c', 'get', 'fw.rom', out], { timeout: 30_000 });
  assert.is(fs.existsSync(out) ? fs.statSync(out).size : -1, FW.length, r.stdout + r.stderr);
  await Promise.all(flood);
  console.log(`  tftp flood of 2,000 never-acknowledged RRQs from one address: ${JSON.stringify(Object.fromEntries(counts))}; phone fetched 16 MiB meanwhile (${Date.now() - t0} ms)`);
  assert.is(counts.get('oack'), 32, 'the default per_source share');
  assert.is(counts.get('error server busy'), 2000 - 32);
  // the OACK did not acknowledge timeout=255 (above max_timeout) and the slots come back within seconds
  await new Promise((res) => setTimeout(res, 6500));
  assert.is(await dropTransfer(e.tftpPort, FLOODER, { timeout: '255', blksize: '1428' }), 'oack', 'the flooder\'s slots were given back');
  assert.is(e.logs.filter((l) => /tftp: one address holds its share/.test(l)).length >= 1, true);
});

test('64 idle connections from one address to FastAGI do not keep the PBX from a registration call; they are closed within seconds', async () => {
  const port = Number(/agi=127\.0\.0\.1:(\d+)/.exec((await e.waitLog(/apsd ready/)))![1]);
  const idle: net.Socket[] = [];
  const closed: number[] = [];
  const t0 = Date.now();
  for (let i = 0; i < 64; i++) {
    idle.push(await new Promise<net.Socket>((r) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: FLOODER }, () => r(s));
      s.on('error', () => {});
      s.on('close', () => closed.push(Date.now() - t0));
    }));
  }
  try {
    const call = await agiCall(port, { endpoint: 'unprov-805ec0999999', args: ['111111', '101'] }, 5000);
    assert.ok(call.vars.get('APS_RESULT'), `the call got an answer: ${call.commands.join(' | ')}`);
    await waitUntil(() => closed.length === 64, 10_000, 'the idle connections closed by apsd', 100);
    console.log(`  fastagi: 64 idle connections from one address, ${closed.filter((c) => c < 100).length} refused at once (per_source 16), the rest closed after ${Math.max(...closed)} ms; the PBX's call answered ${call.vars.get('APS_RESULT')}`);
    assert.ok(Math.max(...closed) < 7000);
  } finally {
    for (const s of idle) s.destroy();
  }
});

test('one address holding 300 idle HTTP connections gets 503 past its per_source share; a phone elsewhere is served', async () => {
  const [host, port] = e.http.split(':');
  const idle: net.Socket[] = [];
  let refused = 0;
  for (let i = 0; i < 300; i++) {
    idle.push(await new Promise<net.Socket>((r) => {
      const s = net.connect({ host, port: Number(port), localAddress: FLOODER }, () => r(s));
      s.on('error', () => {});
      s.on('data', (b) => { if (b.toString().startsWith('HTTP/1.1 503')) refused++; });
    }));
  }
  try {
    await waitUntil(() => refused === 300 - 256, 5000, `${300 - 256} answered 503 (got ${refused})`, 50);
    assert.is(fetchImage(e.http), WHOLE);
  } finally {
    for (const s of idle) s.destroy();
    await e.stop();
    e.cleanup();
  }
});

test.run();
