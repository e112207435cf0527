/**
 * Security as an attacker and an auditor meet it, against the real apsd on loopback:
 * per-device credentials, HTTPS with device certificates, lease binding limited to trusted
 * subnets, bans (per IP, across protocols, surviving a restart), the global budget against a
 * scan spread over 256 addresses, replayed digests, fuzzing, fail2ban, and the unit's score.
 * Loopback is not a trusted subnet here (trusted_subnets = 127.0.0.9/32), so it can be banned.
 */
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { curl, run, startDaemon, type Daemon } from './support/daemon.js';
import { ROOT } from './support/paths.js';

const MAC = '805ec0a1b2c3';
const OTHER = '805ec0d4e5f6';
const SECRETS = [/S3cr3t/, /bobsecret102/, /Adm1n/, /Ld4p/];
let d: Daemon;
let tmp: string;

const SECURITY = [
  'trusted_subnets = 127.0.0.9/32',
  'ban_after = 10',
  'ban_window = 60s',
  'ban_time = 1h',
  'unknown_budget = 100',
].join('\n');

function withSecurity(extra = '') {
  return (cfg: string) => {
    const ini = path.join(cfg, 'aps.ini');
    fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('tftp_secrets = lease', `tftp_secrets = lease\n${SECURITY}\n${extra}`));
  };
}

interface Resp {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One GET from a chosen loopback source address (127.0.0.0/8 is all local on Linux). */
function get(port: number, p: string, opts: { from?: string; headers?: Record<string, string> } = {}): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, localAddress: opts.from, headers: { Connection: 'close', ...opts.headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function digestHeader(challenge: string, user: string, pass: string, uri: string, nc = 1, method = 'GET'): string {
  const nonce = /nonce="([^"]+)"/.exec(challenge)![1];
  const realm = /realm="([^"]+)"/.exec(challenge)![1];
  const md5 = (s: string) => crypto.createHash('md5').update(s).digest('hex');
  const ncs = nc.toString(16).padStart(8, '0');
  const cnonce = crypto.randomBytes(8).toString('hex');
  const response = md5(`${md5(`${user}:${realm}:${pass}`)}:${nonce}:${ncs}:${cnonce}:auth:${md5(`${method}:${uri}`)}`);
  return `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", algorithm=MD5, response="${response}", qop=auth, nc=${ncs}, cnonce="${cnonce}"`;
}

async function digestGet(port: number, uri: string, user: string, pass: string, from?: string): Promise<Resp> {
  const first = await get(port, uri, { from });
  const ch = ([] as string[]).concat(first.headers['www-authenticate'] ?? []).find((h) => /MD5/.test(h));
  if (!ch) return first;
  return get(port, uri, { from, headers: { Authorization: digestHeader(ch, user, pass, uri) } });
}

function httpPort(x: Daemon) {
  return Number(x.http.split(':')[1]);
}

/** A TFTP read request from a given source address; resolves with the first answer or null after waitMs. */
function tftpAsk(port: number, file: string, from: string, waitMs = 300): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    let done = false;
    const finish = (v: Buffer | null) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.close();
      resolve(v);
    };
    const t = setTimeout(() => finish(null), waitMs);
    s.on('message', (m) => finish(m));
    s.on('error', () => finish(null));
    s.bind(0, from, () => s.send(Buffer.concat([Buffer.from([0, 1]), Buffer.from(file + '\0octet\0')]), port, '127.0.0.1'));
  });
}

function randomMac(): string {
  return '805ec0' + crypto.randomBytes(3).toString('hex');
}

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-sec-'));
  d = await startDaemon({ setup: withSecurity() });
  assert.is(d.ctl('device', 'add', MAC, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  assert.is(d.ctl('line', 'set', MAC, '1', '--extension', '101').status, 0);
  assert.is(d.ctl('device', 'add', OTHER, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  assert.is(d.ctl('line', 'set', OTHER, '1', '--extension', '102').status, 0);
});

test.after(async () => {
  if (d) {
    await d.stop();
    d.cleanup();
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("each phone gets its own credentials in its config, and they open its files and no other phone's", async () => {
  const c = JSON.parse(d.ctl('device', 'credentials', MAC, '--json').stdout);
  assert.match(c.username, /^aps805ec0a1b2c3$/);
  assert.ok(c.password.length >= 20);
  const rendered = d.ctl('render', MAC, `${MAC}.cfg`).stdout;
  assert.match(rendered, new RegExp(`static\\.auto_provision\\.server\\.username = ${c.username}`));
  assert.ok(rendered.includes(`static.auto_provision.server.password = ${c.password}`));
  const own = await digestGet(httpPort(d), `/provisioning/${MAC}.cfg`, c.username, c.password, '127.0.0.20');
  assert.is(own.status, 200);
  assert.match(own.body, /S3cr3t/);
  const other = await digestGet(httpPort(d), `/provisioning/${OTHER}.cfg`, c.username, c.password, '127.0.0.20');
  assert.is(other.status, 401);
  assert.not.match(other.body, /bobsecret102/);
});

test('rotating the credentials makes the old ones useless at once', async () => {
  const old = JSON.parse(d.ctl('device', 'credentials', MAC, '--json').stdout);
  const r = d.ctl('device', 'credentials', MAC, '--rotate', '--json');
  assert.is(r.status, 0, r.stderr);
  const fresh = JSON.parse(r.stdout);
  assert.is.not(fresh.password, old.password);
  assert.is((await digestGet(httpPort(d), `/${MAC}.cfg`, old.username, old.password, '127.0.0.21')).status, 401);
  assert.is((await digestGet(httpPort(d), `/${MAC}.cfg`, fresh.username, fresh.password, '127.0.0.21')).status, 200);
});

test('(d) a replayed digest answer is refused', async () => {
  const uri = `/provisioning/${MAC}.cfg`;
  const first = await get(httpPort(d), uri, { from: '127.0.0.22' });
  const ch = ([] as string[]).concat(first.headers['www-authenticate']!).find((h) => /MD5/.test(h))!;
  const auth = digestHeader(ch, 'phones', 'Prov;Secret#1', uri);
  const a = await get(httpPort(d), uri, { from: '127.0.0.22', headers: { Authorization: auth } });
  assert.is(a.status, 200);
  const replay = await get(httpPort(d), uri, { from: '127.0.0.23', headers: { Authorization: auth } });
  assert.is(replay.status, 401);
  assert.is(replay.body.includes('S3cr3t'), false);
});

test('(c) a valid MAC asked from an address that does not hold its lease, without credentials, gets no secret', async () => {
  const db = new Database(path.join(d.stateDir, 'aps.db'));
  const now = Date.now();
  db.prepare('INSERT OR REPLACE INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)').run(MAC, '127.0.0.9', 'lo', 'test', now + 60_000, now);
  db.close();
  const r = await get(httpPort(d), `/provisioning/${MAC}.cfg`, { from: '127.0.0.24' });
  assert.is(r.status, 401);
  for (const s of SECRETS) assert.not.match(r.body, s);
  const t = await tftpAsk(d.tftpPort, `${MAC}.cfg`, '127.0.0.24');
  assert.ok(t && t.readUInt16BE(0) === 5 && t.readUInt16BE(2) === 2, 'TFTP error 2');
  // the lease holder, inside trusted_subnets, is served over both
  const ok = await get(httpPort(d), `/provisioning/${MAC}.cfg`, { from: '127.0.0.9' });
  assert.is(ok.status, 200);
  const tf = await tftpAsk(d.tftpPort, `${MAC}.cfg`, '127.0.0.9');
  assert.ok(tf && tf.readUInt16BE(0) === 3, 'TFTP DATA for the lease holder');
});

test('a lease held outside trusted_subnets proves nothing', async () => {
  const db = new Database(path.join(d.stateDir, 'aps.db'));
  const now = Date.now();
  db.prepare('INSERT OR REPLACE INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)').run(OTHER, '127.0.0.25', 'lo', 'test', now + 60_000, now);
  db.close();
  assert.is((await get(httpPort(d), `/provisioning/${OTHER}.cfg`, { from: '127.0.0.25' })).status, 401);
  const e = d.ctl('explain', '127.0.0.25', `${OTHER}.cfg`);
  assert.match(e.stdout, /holds the lease but is outside trusted_subnets/);
  assert.match(e.stdout, /HTTP:\s+401 without credentials/);
});

test('(a) one address asking for 10,000 random MACs over HTTP is banned within 10 misses and never sees a secret', async () => {
  const from = '127.0.0.30';
  let misses = 0;
  let bannedAt = -1;
  for (let i = 0; i < 10_000; i++) {
    const r = await get(httpPort(d), `/provisioning/${randomMac()}.cfg`, { from });
    for (const s of SECRETS) assert.not.match(r.body, s);
    if (r.status === 403 && r.body === '') {
      if (bannedAt < 0) bannedAt = i;
      if (i - bannedAt > 50) break; // banned for good: the rest would be the same 403
    } else misses++;
  }
  assert.ok(bannedAt >= 0, 'never banned');
  assert.ok(misses <= 10, `${misses} misses before the ban`);
  await d.waitLog(/security event=ban ip=127\.0\.0\.30 reason=unproved-macs count=10/);
  // the ban holds on every protocol: TFTP answers nothing at all
  assert.is(await tftpAsk(d.tftpPort, 'y000000000066.cfg', from), null);
});

/** What a prober sees of one answer: status, headers that are not per-request, body. */
function seen(r: Resp): string {
  const h = { ...r.headers } as Record<string, unknown>;
  for (const k of ['date', 'www-authenticate', 'connection', 'keep-alive']) delete h[k];
  const ch = ([] as string[]).concat(r.headers['www-authenticate'] ?? []).map((x) => x.replace(/nonce="[^"]+"/g, 'nonce=…'));
  return JSON.stringify([r.status, h, ch, r.body]);
}

test('a scanner cannot tell known MACs from unknown ones: the same answers, and the ban after as many MACs, over HTTP and TFTP', async () => {
  const known = Array.from({ length: 14 }, (_, i) => `805ec0f0${(i + 16).toString(16)}01`);
  for (const m of known) assert.is(d.ctl('device', 'add', m, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  const unknown = Array.from({ length: 14 }, () => randomMac());
  const scan = async (from: string, macs: string[]) => {
    const out: string[] = [];
    for (const m of macs) out.push(seen(await get(httpPort(d), `/provisioning/${m}.cfg`, { from })));
    return out;
  };
  const a = await scan('127.0.0.70', known);
  const b = await scan('127.0.0.71', unknown);
  assert.equal(a, b, 'the same answers, one by one, for known and unknown MACs');
  assert.is(a.filter((x) => x.startsWith('[403')).length, 14 - 10 + 1 - 1, 'banned after ten MACs in both cases');
  const tscan = async (from: string, macs: string[]) => {
    const out: string[] = [];
    for (const m of macs) out.push((await tftpAsk(d.tftpPort, `${m}.cfg`, from, 150))?.toString('hex') ?? 'silence');
    return out;
  };
  const ta = await tscan('127.0.0.72', known);
  const tb = await tscan('127.0.0.73', unknown);
  assert.equal(ta, tb, 'the same TFTP answers for known and unknown MACs');
  assert.is(ta.filter((x) => x === 'silence').length, 4);
  const bans = JSON.parse(d.ctl('ban', 'list', '--json').stdout) as { ip: string; reason: string; count: number }[];
  for (const ip of ['127.0.0.70', '127.0.0.71', '127.0.0.72', '127.0.0.73']) assert.ok(bans.some((x) => x.ip === ip && x.reason === 'unproved-macs' && x.count === 10), ip);
  for (const m of known) d.ctl('device', 'remove', m);
});

test('thirty phones behind one NAT that proves itself are never banned by their own first requests', async () => {
  const from = '127.0.0.80';
  const phones = Array.from({ length: 30 }, (_, i) => `805ec0f1${(i + 16).toString(16)}02`);
  for (const m of phones) assert.is(d.ctl('device', 'add', m, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  const all = new Map(phones.map((m) => [m, JSON.parse(d.ctl('--json', 'device', 'credentials', m).stdout) as { username: string; password: string }]));
  const creds = (m: string) => all.get(m)!;
  // the site has been seen proving itself before (one phone's digest), then all of them boot at once
  const c0 = creds(phones[0]!);
  assert.is((await digestGet(httpPort(d), `/provisioning/${phones[0]}.cfg`, c0.username, c0.password, from)).status, 200);
  const firsts = await Promise.all(phones.map((m) => get(httpPort(d), `/provisioning/${m}.cfg`, { from })));
  assert.equal([...new Set(firsts.map((r) => r.status))], [401], 'the first step of digest, for each of them');
  const proved = await Promise.all(phones.map((m) => { const c = creds(m); return digestGet(httpPort(d), `/provisioning/${m}.cfg`, c.username, c.password, from); }));
  assert.equal([...new Set(proved.map((r) => r.status))], [200], d.logs.filter((l) => /127\.0\.0\.80/.test(l) && /auth-failed|ban/.test(l)).slice(0, 5).join('\n'));
  await new Promise((r) => setTimeout(r, 2200));
  assert.is((await get(httpPort(d), `/provisioning/${phones[1]}.cfg`, { from })).status, 401, 'still not banned after the grace');
  const bans = JSON.parse(d.ctl('ban', 'list', '--json').stdout) as { ip: string }[];
  assert.not.ok(bans.some((x) => x.ip === from));
  for (const m of phones) d.ctl('device', 'remove', m);
});

test('(a) the same over TFTP: banned within 10 misses, then silence', async () => {
  const from = '127.0.0.31';
  let answers = 0;
  for (let i = 0; i < 10_000; i++) {
    const a = await tftpAsk(d.tftpPort, `${randomMac()}.cfg`, from, i < 20 ? 300 : 30);
    if (a === null) {
      if (i >= 20) break; // silent: banned (the loop stays bounded)
      continue;
    }
    answers++;
    assert.ok(a.readUInt16BE(0) === 5, 'only errors, never DATA');
  }
  assert.ok(answers <= 10, `${answers} answers before the ban`);
  const b = JSON.parse(d.ctl('ban', 'list', '--json').stdout) as { ip: string }[];
  assert.ok(b.some((x) => x.ip === from));
});

test('(b) a scan spread over 256 addresses spends the global budget, then costs one miss per address', async () => {
  const e = await startDaemon({ setup: withSecurity() });
  try {
    assert.is(e.ctl('device', 'add', MAC, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
    assert.is(e.ctl('line', 'set', MAC, '1', '--extension', '101').status, 0);
    let answered = 0;
    const addrs = Array.from({ length: 256 }, (_, i) => `127.0.${100 + (i >> 8)}.${i & 255}`);
    // every address asks for 20 random MACs, 16 addresses at a time
    for (let k = 0; k < addrs.length; k += 16) {
      await Promise.all(addrs.slice(k, k + 16).map(async (from) => {
        for (let j = 0; j < 20; j++) {
          const r = await get(httpPort(e), `/provisioning/${j === 7 ? MAC : randomMac()}.cfg`, { from });
          for (const s of SECRETS) assert.not.match(r.body, s);
          if (!(r.status === 403 && r.body === '')) answered++;
        }
      }));
    }
    // 100 misses within the budget, then at most one per address
    assert.ok(answered <= 100 + 256 + 16, `${answered} answers`);
    assert.ok(e.logs.some((l) => /security event=budget-exhausted budget=100/.test(l)));
    const bans = JSON.parse(e.ctl('ban', 'list', '--json').stdout) as unknown[];
    assert.ok(bans.length >= 240, `${bans.length} addresses banned`);
  } finally {
    await e.stop();
    e.cleanup();
  }
});

test('bans survive a restart and apsctl ban lift ends one at once', async () => {
  const e = await startDaemon({ setup: withSecurity() });
  try {
    for (let i = 0; i < 12; i++) await get(httpPort(e), `/provisioning/${randomMac()}.cfg`, { from: '127.0.0.40' });
    assert.is((await get(httpPort(e), '/provisioning/y000000000066.cfg', { from: '127.0.0.40' })).status, 403);
    await e.stop();
    const again = await startDaemon({ setup: (cfg) => fs.cpSync(path.join(e.configDir, 'aps.ini'), path.join(cfg, 'aps.ini')) });
    try {
      assert.is((await get(httpPort(again), '/provisioning/y000000000066.cfg', { from: '127.0.0.40' })).status, 403, 'still banned after the restart');
      assert.match(again.ctl('ban', 'list').stdout, /127\.0\.0\.40\s+\S+\s+unproved-macs\s+10/);
      assert.is(again.ctl('ban', 'lift', '127.0.0.40').status, 0);
      assert.is((await get(httpPort(again), '/provisioning/y000000000066.cfg', { from: '127.0.0.40' })).status, 200);
      assert.match(again.ctl('explain', '127.0.0.40', 'y000000000066.cfg').stdout, /not banned/);
    } finally {
      await again.stop();
      again.cleanup();
    }
  } finally {
    e.cleanup();
  }
});

test('a trusted address is never banned, but still needs proof for secrets', async () => {
  for (let i = 0; i < 15; i++) await get(httpPort(d), `/provisioning/${randomMac()}.cfg`, { from: '127.0.0.9' });
  assert.is((await get(httpPort(d), '/provisioning/y000000000066.cfg', { from: '127.0.0.9' })).status, 200);
  assert.is((await get(httpPort(d), `/provisioning/${OTHER}.cfg`, { from: '127.0.0.9' })).status, 401);
});

test('a User-Agent of another vendor, or carrying another MAC, counts as an offence', async () => {
  await get(httpPort(d), `/provisioning/${MAC}.boot`, { from: '127.0.0.50', headers: { 'User-Agent': 'FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application' } });
  await d.waitLog(/security event=ua-mismatch .*mac=805ec0a1b2c3 ua_vendor=polycom .*mac_vendor=yealink/);
  await get(httpPort(d), `/provisioning/${MAC}.boot`, { from: '127.0.0.50', headers: { 'User-Agent': 'Yealink SIP-T46S 66.86.0.15 80:5e:c0:99:99:99' } });
  await d.waitLog(/security event=ua-mismatch .*ua_mac=805ec0999999/);
});

test('apsctl explain says why a phone gets 401, 403 or 404', () => {
  let e = d.ctl('explain', '127.0.0.77', `${MAC}.cfg`);
  assert.is(e.status, 0, e.stderr);
  assert.match(e.stdout, /device:\s+80:5e:c0:a1:b2:c3: Yealink T46S, tenant acme, template yealink-full/);
  assert.match(e.stdout, /credentials:.*site user "phones" or the device's own user "aps805ec0a1b2c3"/);
  e = d.ctl('explain', '127.0.0.30', `${MAC}.cfg`);
  assert.match(e.stdout, /banned until/);
  assert.match(e.stdout, /HTTP:\s+403 with no body/);
  e = d.ctl('explain', '127.0.0.77', '805ec0000000.cfg', '--json');
  const j = JSON.parse(e.stdout);
  assert.match(j.steps.map((s: { says: string }) => s.says).join('\n'), /not a device/);
  e = d.ctl('explain', '127.0.0.77', '../etc/passwd');
  assert.match(e.stdout, /refused: path traversal/);
});

test('(e) traversal, encoded dots, NUL bytes and over-long names are refused over TFTP too', async () => {
  for (const name of ['../etc/passwd', '..%2fetc', 'a/../../b', '/etc/shadow', 'x'.repeat(300), 'a\\..\\b']) {
    const a = await tftpAsk(d.tftpPort, name, '127.0.0.9');
    assert.ok(a && a.readUInt16BE(0) === 5, `${name.slice(0, 20)}: an error`);
    assert.ok([1, 2, 4].includes(a!.readUInt16BE(2)), `${name.slice(0, 20)}: error ${a!.readUInt16BE(2)}`);
  }
});

test('(f) 100,000 fuzzed HTTP requests and 100,000 fuzzed TFTP packets leave apsd up and serving', async () => {
  let seed = 0x5eed;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const pieces = ['GET', 'HEAD', 'PUT', 'POST', 'G\x00ET', '/', '/provisioning/', `${MAC}.cfg`, '../', '%2e%2e/', '%00', '%', ' ', 'HTTP/1.1', 'HTTP/9.9', '\r\n', '\n', ':', 'Host: x', 'Authorization: Digest ', 'username="', 'nonce="', 'Content-Length: -1', 'Transfer-Encoding: chunked', 'Range: bytes=0-', 'A'.repeat(200), '\xff\xfe', '"', ',', '='];
  const port = httpPort(d);
  const from = '127.0.0.9'; // trusted: fuzzing must not get itself banned half-way
  let sent = 0;
  const deadline = Date.now() + 240_000;
  const one = (payload: string) => new Promise<void>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    s.on('error', () => resolve());
    s.setTimeout(2000, () => s.destroy());
    s.on('close', () => resolve());
    s.on('data', () => {});
    s.on('connect', () => s.end(payload, 'latin1'));
  });
  // 100,000 inputs: several per connection, 50 connections in flight
  const perConn = 20;
  const conns = 100_000 / perConn;
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < conns && Date.now() < deadline) {
      next++;
      let payload = '';
      for (let k = 0; k < perConn; k++) {
        let line = '';
        const n = 1 + Math.floor(rnd() * 12);
        for (let j = 0; j < n; j++) line += pick(pieces) + (rnd() < 0.3 ? ' ' : '');
        payload += line + (rnd() < 0.5 ? '\r\n\r\n' : '\r\n');
        sent++;
      }
      await one(payload);
    }
  }));
  assert.ok(sent >= 100_000, `only ${sent} HTTP inputs within the time bound`);
  // TFTP: 100,000 datagrams of garbage and mutated requests at the listening port
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, from, () => r()));
  const good = Buffer.concat([Buffer.from([0, 1]), Buffer.from('y000000000066.cfg\x00octet\x00blksize\x001428\x00')]);
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    let b: Buffer;
    if (rnd() < 0.5) {
      b = crypto.randomBytes(1 + Math.floor(rnd() * 700));
    } else {
      b = Buffer.from(good);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < flips; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      if (rnd() < 0.3) b = b.subarray(0, Math.floor(rnd() * b.length));
      // never a valid read request: keep the opcode away from 1 so no transfer starts
      b[0] = 0;
      if (b.length > 1 && b[1] === 1) b[1] = 9;
    }
    sock.send(b, d.tftpPort, '127.0.0.1');
    if (i % 500 === 0) await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setTimeout(r, 300));
  sock.close();
  assert.is(d.proc.exitCode, null, 'apsd is still running');
  const ok = await digestGet(httpPort(d), `/provisioning/${MAC}.cfg`, 'phones', 'Prov;Secret#1', '127.0.0.9');
  assert.is(ok.status, 200);
  const t = run('tftp', ['127.0.0.1', String(d.tftpPort), '-m', 'binary', '-c', 'get', 'y000000000066.cfg', path.join(tmp, 'after-fuzz')]);
  assert.ok(fs.existsSync(path.join(tmp, 'after-fuzz')) && fs.statSync(path.join(tmp, 'after-fuzz')).size > 0, t.stderr);
});

test('Basic credentials are accepted over HTTPS only; a device certificate naming the MAC is proof, and only for that MAC', async () => {
  const pki = path.join(tmp, 'pki');
  fs.mkdirSync(pki);
  const o = (args: string[]) => {
    const r = run('openssl', args, { cwd: pki });
    assert.is(r.status, 0, r.stderr);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  o(['req', '-x509', ...ec, '-keyout', 'server.key', '-out', 'server.crt', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1']);
  o(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Phone Factory CA']);
  for (const [name, cn] of [['phone', '80:5E:C0:A1:B2:C3'], ['rogue', '80:5E:C0:00:00:01']]) {
    o(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/O=Yealink/CN=${cn}`]);
    o(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2']);
  }
  // a certificate from a CA apsd does not trust proves nothing
  o(['req', '-x509', ...ec, '-keyout', 'self.key', '-out', 'self.crt', '-days', '2', '-subj', '/CN=80:5E:C0:A1:B2:C3']);
  const e = await startDaemon({
    setup: (cfg) => {
      withSecurity(`[https]\nlisten = 127.0.0.1:0\ncert = ${pki}/server.crt\nkey = ${pki}/server.key\nclient_ca = ${pki}/ca.crt\n`)(cfg);
      const ini = path.join(cfg, 'aps.ini');
      fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('auth = digest', 'auth = basic'));
    },
    args: ['--https-listen', '127.0.0.1:0'],
  });
  try {
    assert.is(e.ctl('device', 'add', MAC, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
    assert.is(e.ctl('line', 'set', MAC, '1', '--extension', '101').status, 0);
    const hs = /https=([0-9.:]+)/.exec(e.logs.find((l) => /apsd ready/.test(l))!)![1];
    const url = `https://${hs}/provisioning/${MAC}.cfg`;
    const base = ['--cacert', `${pki}/server.crt`];
    let r = curl([...base, '--cert', `${pki}/phone.crt`, '--key', `${pki}/phone.key`, url]);
    assert.is(r.status, 200, r.stderr);
    assert.match(r.body, /S3cr3t/);
    r = curl([...base, '--cert', `${pki}/rogue.crt`, '--key', `${pki}/rogue.key`, url]);
    assert.is(r.status, 401, 'a certificate for another MAC');
    r = curl([...base, '--cert', `${pki}/self.crt`, '--key', `${pki}/self.key`, url]);
    assert.is(r.status, 401, 'a certificate from an untrusted CA');
    r = curl([...base, '--basic', '-u', 'phones:Prov;Secret#1', url]);
    assert.is(r.status, 200, 'Basic over HTTPS');
    r = curl(['--basic', '-u', 'phones:Prov;Secret#1', `http://${e.http}/provisioning/${MAC}.cfg`]);
    assert.is(r.status, 401, 'Basic over plain HTTP is refused');
    assert.not.match(r.body, /S3cr3t/);
  } finally {
    await e.stop();
    e.cleanup();
  }
});

test('fail2ban-regex with the shipped filter finds the offences apsd really wrote, with their addresses', () => {
  const log = path.join(tmp, 'apsd-security.log');
  fs.writeFileSync(log, d.logs.filter((l) => /security event=/.test(l)).join('\n') + '\n');
  const r = run('fail2ban-regex', ['--print-all-matched', log, path.join(ROOT, 'etc/fail2ban/filter.d/apsd.conf')], { timeout: 60_000 });
  assert.is(r.status, 0, r.stderr + r.text);
  const matched = Number(/Lines: \d+ lines, \d+ ignored, (\d+) matched/.exec(r.text)?.[1] ?? 0);
  const offences = d.logs.filter((l) => /security event=(unknown-mac|auth-failed|ua-mismatch|ban)\b/.test(l)).length;
  assert.ok(matched > 0 && matched === offences, `matched ${matched} of ${offences} offence lines\n${r.text.slice(0, 2000)}`);
  assert.match(r.text, /127\.0\.0\.30/);
  const normal = d.logs.filter((l) => /security event=secret-(refused .*reason=auth-missing|served)/.test(l));
  assert.ok(normal.length > 0);
  fs.writeFileSync(log, normal.join('\n') + '\n');
  const n = run('fail2ban-regex', [log, path.join(ROOT, 'etc/fail2ban/filter.d/apsd.conf')], { timeout: 60_000 });
  assert.match(n.text, /, 0 matched/, 'a first request without credentials, or a served file, is no offence');
});

test('systemd-analyze security scores the unit 3.0 or lower', () => {
  const unit = path.join(tmp, 'apsd.service');
  fs.writeFileSync(unit, fs.readFileSync(path.join(ROOT, 'systemd/apsd.service'), 'utf8').replace('/usr/local/bin/apsd', path.join(ROOT, 'bin/apsd')));
  const r = run('systemd-analyze', ['security', '--offline=yes', unit], { timeout: 60_000 });
  const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.text + r.stderr);
  assert.ok(m, r.text + r.stderr);
  assert.ok(Number(m![1]) <= 3.0, `exposure ${m![1]}`);
});

test.run();
