/**
 * apsd as a service: TFTP fetches by real clients, start-up refusal of bad ini, SIGHUP
 * reload (good and bad), SIGTERM, and the systemd unit.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { APSD, copyFixtureConfig, curl, run, startDaemon, type Daemon } from './support/daemon.js';
import { ROOT } from './support/paths.js';

const MAC = '805ec0a1b2c3';
let d: Daemon;
let tmp: string;

function tftpGet(file: string, mode: 'binary' | 'ascii' = 'binary') {
  const out = path.join(tmp, `tftp-${Math.random().toString(36).slice(2)}`);
  const r = run('tftp', ['127.0.0.1', String(d.tftpPort), '-m', mode, '-c', 'get', file, out], { timeout: 15_000 });
  const body = fs.existsSync(out) ? fs.readFileSync(out) : null;
  return { ...r, body, out: r.text + r.stderr };
}

function atftpGet(file: string, opts: string[]) {
  const out = path.join(tmp, `atftp-${Math.random().toString(36).slice(2)}`);
  const r = run('atftp', [...opts.flatMap((o) => ['--option', o]), '-g', '-r', file, '-l', out, '127.0.0.1', String(d.tftpPort)], { timeout: 15_000 });
  const body = fs.existsSync(out) && fs.statSync(out).size > 0 ? fs.readFileSync(out) : null;
  return { ...r, body, out: r.text + r.stderr };
}

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-tftp-'));
  d = await startDaemon();
  assert.is(d.ctl('device', 'add', MAC, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  assert.is(d.ctl('line', 'set', MAC, '1', '--extension', '101').status, 0);
});

test.after(async () => {
  if (d) {
    await d.stop();
    d.cleanup();
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('tftp-hpa fetches a common file, byte for byte what apsctl render prints', () => {
  const model = JSON.parse(d.ctl('device', 'show', MAC, '--json').stdout).model as string;
  const files = JSON.parse(d.ctl('render', MAC, '--json').stdout) as { name: string; secrets: boolean; body: string }[];
  const common = files.find((f) => !f.secrets && !f.name.includes(MAC));
  assert.ok(common, `no common file for ${model}`);
  const r = tftpGet(common!.name);
  assert.is(r.status, 0, r.out);
  assert.is(r.body!.toString(), common!.body);
});

test('a file with secrets is refused over TFTP (error 2) while the requester holds no lease', () => {
  const r = tftpGet(`${MAC}.cfg`);
  assert.match(r.out, /Error code 2/i);
  assert.ok(!r.body || !r.body.includes('S3cr3t'));
});

test('an unknown MAC gets TFTP error 1 once the requester holds its lease', () => {
  const db = new Database(path.join(d.stateDir, 'aps.db'));
  const now = Date.now();
  db.prepare('INSERT OR REPLACE INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)').run('805ec0ffffff', '127.0.0.1', 'lo', 'test', now + 60_000, now);
  db.close();
  const r = tftpGet('805ec0ffffff.cfg');
  assert.match(r.out, /Error code 1/i);
});

test('the IP that holds the lease gets the secrets over TFTP, with blksize, tsize and windowsize (atftp)', () => {
  const db = new Database(path.join(d.stateDir, 'aps.db'));
  const now = Date.now();
  db.prepare('INSERT OR REPLACE INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)').run(MAC, '127.0.0.1', 'lo', 'test', now + 60_000, now);
  db.close();
  const expected = d.ctl('render', MAC, `${MAC}.cfg`).stdout;
  const r = atftpGet(`${MAC}.cfg`, ['blksize 1428', 'tsize', 'windowsize 8']);
  assert.ok(r.body, r.out);
  assert.is(r.body!.toString(), expected);
  const n = tftpGet(`${MAC}.cfg`, 'ascii');
  assert.is(n.status, 0, n.out);
  assert.is(n.body!.toString(), expected, 'netascii gives back the same text');
});

test('firmware over TFTP with windowsize 8 arrives whole', () => {
  const fw = path.join(d.stateDir, 'firmware', 'fw-test.rom');
  const blob = Buffer.alloc(3_000_000);
  for (let i = 0; i < blob.length; i += 4) blob.writeUInt32LE((i * 2654435761) >>> 0, i);
  fs.writeFileSync(fw, blob);
  const r = atftpGet('fw-test.rom', ['blksize 1428', 'tsize', 'windowsize 8']);
  assert.ok(r.body, r.out);
  assert.ok(r.body!.equals(blob), 'firmware bytes differ');
});

test('TFTP refuses traversal, absolute paths and uploads', () => {
  for (const name of ['../../etc/passwd', '/etc/passwd', 'a/../../etc/passwd']) {
    const r = tftpGet(name);
    assert.match(r.out, /Error code 2/i, name);
  }
  const src = path.join(tmp, 'up.txt');
  fs.writeFileSync(src, 'upload');
  const u = run('tftp', ['127.0.0.1', String(d.tftpPort), '-m', 'binary', '-c', 'put', src, 'up.txt'], { timeout: 15_000 });
  assert.match(u.text + u.stderr, /Error code 2/i);
  assert.not.ok(fs.existsSync(path.join(d.stateDir, 'firmware', 'up.txt')));
});

test('SIGHUP reloads the ini files: a template edit shows in the next fetch', async () => {
  const tpl = path.join(d.configDir, 'templates.d', 'yealink-full.ini');
  const before = d.ctl('render', MAC, `${MAC}.cfg`).stdout;
  assert.match(before, /pool\.ntp\.org/);
  fs.writeFileSync(tpl, fs.readFileSync(tpl, 'utf8').replace('ntp_server2 = pool.ntp.org', 'ntp_server2 = ntp2.acme.example'));
  d.proc.kill('SIGHUP');
  await d.waitLog(/configuration reloaded" generation=2/);
  const r = atftpGet(`${MAC}.cfg`, ['blksize 1428']);
  assert.match(r.body!.toString(), /ntp2\.acme\.example/);
});

test('a reload with an invalid ini file keeps the running configuration and logs file, line and key', async () => {
  const ini = path.join(d.configDir, 'aps.ini');
  const good = fs.readFileSync(ini, 'utf8');
  fs.writeFileSync(ini, good + '\n[tftp]\nmax_blksize = huge\n');
  d.proc.kill('SIGHUP');
  const line = await d.waitLog(/reload refused/);
  assert.match(line, /aps\.ini:\d+: \[tftp\] max_blksize: \\"huge\\" is not a whole number/);
  const r = atftpGet(`${MAC}.cfg`, ['blksize 1428']);
  assert.match(r.body!.toString(), /ntp2\.acme\.example/, 'still serving with the last good configuration');
  fs.writeFileSync(ini, good);
});

test('an invalid ini file stops start-up with exit 1, naming file, line and key', () => {
  const c = copyFixtureConfig();
  try {
    const tpl = path.join(c.configDir, 'templates.d', 'bad.ini');
    fs.writeFileSync(tpl, '[template]\nvendor = yealink\nmodel = T46S\n\n[network]\nvlan_id = 9999\n');
    const r = spawnSync(process.execPath, [APSD, '--config', c.configDir, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 20_000 });
    assert.is(r.status, 1);
    assert.match(r.stderr, /APS_ERR_CONFIG: .*templates\.d\/bad\.ini:6: \[network\] vlan_id: 9999 is out of range \(expected a number from 0 to 4094\)/);
  } finally {
    fs.rmSync(c.dir, { recursive: true, force: true });
  }
});

test('a port already in use stops start-up with a message naming it', async () => {
  const r = spawnSync(process.execPath, [APSD, '--config', d.configDir, '--http-listen', d.http, '--tftp-listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 20_000 });
  assert.is(r.status, 1);
  assert.match(r.stderr, new RegExp(`APS_ERR_BIND: .*${d.http.replace(/\./g, '\\.')}: EADDRINUSE`));
});

test('SIGTERM stops apsd with exit status 0', async () => {
  const e = await startDaemon();
  try {
    assert.is(curl([`http://${e.http}/nothing-here.cfg`]).status, 404);
    const code = await e.stop('SIGTERM');
    assert.is(code, 0);
    assert.ok(e.logs.some((l) => /apsd stopped/.test(l)));
  } finally {
    e.cleanup();
  }
});

test('under systemd, READY=1 reaches the notify socket only once HTTP and TFTP answer, and STOPPING=1 at SIGTERM', async () => {
  const sock = path.join(tmp, 'notify.sock');
  const recv = path.join(tmp, 'notify.log');
  // a unix datagram socket playing systemd's part (python3: Node has no unix datagram sockets)
  const py = spawn('python3', ['-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
with open(sys.argv[2], 'a') as f:
    while True:
        try:
            m = s.recv(4096).decode()
        except socket.timeout:
            break
        f.write(m.replace('\\n', ' ') + '\\n'); f.flush()
        if 'STOPPING=1' in m:
            break
`, sock, recv], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 50 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    const e = await startDaemon({ env: { NOTIFY_SOCKET: sock } });
    try {
      for (let i = 0; i < 50 && !(fs.existsSync(recv) && /READY=1/.test(fs.readFileSync(recv, 'utf8'))); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(fs.readFileSync(recv, 'utf8'), /READY=1/);
      assert.is(curl([`http://${e.http}/none.cfg`]).status, 404, 'HTTP answers once READY was sent');
      assert.is(await e.stop('SIGTERM'), 0);
      for (let i = 0; i < 50 && !/STOPPING=1/.test(fs.readFileSync(recv, 'utf8')); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(fs.readFileSync(recv, 'utf8'), /STOPPING=1/);
    } finally {
      e.cleanup();
    }
  } finally {
    py.kill();
  }
});

test('systemd-analyze verify has nothing to say about systemd/apsd.service', () => {
  const unit = path.join(tmp, 'apsd.service');
  fs.writeFileSync(unit, fs.readFileSync(path.join(ROOT, 'systemd/apsd.service'), 'utf8').replace('/usr/local/bin/apsd', path.join(ROOT, 'bin/apsd')));
  const r = run('systemd-analyze', ['verify', unit]);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr.trim(), '', r.stderr);
  assert.is(r.text.trim(), '');
});

test.run();
