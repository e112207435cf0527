/**
 * A phone (curl here) fetches its files from the real apsd over HTTP on loopback: common
 * files freely, files with secrets only with proof, and hostile paths refused.
 */
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { startDaemon, curl, type Daemon } from './support/daemon.js';
import { VendorRegistry, fileNameFor } from '../src/vendors/registry.js';
import { VENDORS_DIR } from './support/paths.js';

const registry = VendorRegistry.load(VENDORS_DIR);
const MAC = '805ec0a1b2c3';
const UNKNOWN = '805ec0ffffff';
const CREDS = 'phones:Prov;Secret#1';
let d: Daemon;
let base: string;

function names(vendor: string, mac: string, model: string) {
  const v = registry.get(vendor)!;
  const m = registry.model(vendor, model)!;
  return v.compiledFiles.map((f) => ({ name: fileNameFor(f.spec, mac as never, m.code), secrets: f.spec.secrets, scope: f.scope }));
}

test.before(async () => {
  d = await startDaemon();
  base = `http://${d.http}`;
  const add = d.ctl('device', 'add', '80:5E:C0:A1:B2:C3', '--tenant', 'acme', '--template', 'yealink-full', '--label', 'Reception');
  assert.is(add.status, 0, add.stderr);
  const line = d.ctl('line', 'set', '805e.c0a1.b2c3', '1', '--extension', '101', '--label', 'Alice', '--cid-source', 'pai-from', '--srtp');
  assert.is(line.status, 0, line.stderr);
});

test.after(async () => {
  if (d) {
    await d.stop();
    d.cleanup();
  }
});

test('a file with secrets is refused with a digest challenge when no credentials are given', () => {
  const r = curl(['-D', '-', `${base}/provisioning/${MAC}.cfg`]);
  assert.is(r.status, 401);
  assert.match(r.body, /WWW-Authenticate: Digest realm="aps", qop="auth", algorithm=SHA-256/);
  assert.match(r.body, /WWW-Authenticate: Digest realm="aps", qop="auth", algorithm=MD5/);
  assert.not.match(r.body, /S3cr3t/);
});

test('with the site digest credentials the phone gets its config with its line and the mapped FQDN', () => {
  const r = curl(['--digest', '-u', CREDS, `${base}/provisioning/${MAC}.cfg`]);
  assert.is(r.status, 200, r.body);
  assert.ok(r.body.startsWith('#!version:1.0.0.1'), r.body.slice(0, 80));
  assert.match(r.body, /S3cr3t&<101>/);
  assert.match(r.body, /acme101/);
  assert.match(r.body, /pbx\.acme\.example/);
  assert.not.match(r.body, /(?<![0-9.])1\.1\.1\.1(?![0-9])/);
});

test('what curl receives is byte for byte what apsctl render prints', () => {
  const r = curl(['--digest', '-u', CREDS, `${base}/${MAC}.cfg`]);
  const p = d.ctl('render', MAC, `${MAC}.cfg`);
  assert.is(p.status, 0, p.stderr);
  assert.is(r.body, p.stdout);
});

test('every file a Yealink asks for is served, under /<alias>/ and under /', () => {
  const model = JSON.parse(d.ctl('device', 'show', MAC, '--json').stdout).model;
  const files = names('yealink', MAC, model);
  assert.ok(files.length >= 2);
  for (const f of files) {
    for (const prefix of ['/provisioning/', '/']) {
      const r = curl([...(f.secrets ? ['--digest', '-u', CREDS] : []), `${base}${prefix}${f.name}`]);
      assert.is(r.status, 200, `${prefix}${f.name}: ${r.body}`);
      assert.ok(r.body.length > 20, f.name);
    }
  }
});

test('a wrong password gets 401 again and no secret', () => {
  const r = curl(['--digest', '-u', 'phones:wrong', `${base}/provisioning/${MAC}.cfg`]);
  assert.is(r.status, 401);
  assert.not.match(r.body, /S3cr3t/);
});

test('basic credentials are not accepted while auth = digest', () => {
  const r = curl(['--basic', '-u', CREDS, `${base}/provisioning/${MAC}.cfg`]);
  assert.is(r.status, 401);
});

test('an unknown MAC gets 404 with credentials, and the same 401 as a known one without', () => {
  assert.is(curl(['--digest', '-u', CREDS, `${base}/provisioning/${UNKNOWN}.cfg`]).status, 404);
  assert.is(curl([`${base}/provisioning/${UNKNOWN}.cfg`]).status, 401);
});

test('HEAD answers the headers of GET without a body', () => {
  const r = curl(['-I', '--digest', '-u', CREDS, `${base}/provisioning/${MAC}.cfg`]);
  assert.is(r.status, 200);
  assert.match(r.body, /Content-Length: \d+/i);
  assert.match(r.body, /ETag: "/i);
  assert.not.match(r.body, /#!version/);
});

test('a conditional GET with the ETag gets 304', () => {
  const h = curl(['-I', '--digest', '-u', CREDS, `${base}/${MAC}.cfg`]).body;
  const etag = /ETag: (".*")/i.exec(h)![1];
  const r = curl(['--digest', '-u', CREDS, '-H', `If-None-Match: ${etag}`, `${base}/${MAC}.cfg`]);
  assert.is(r.status, 304);
});

test('uploads and other methods are refused with 405', () => {
  for (const m of ['PUT', 'POST', 'DELETE']) {
    const r = curl(['-X', m, '--data', 'x', `${base}/provisioning/${MAC}.cfg`]);
    assert.is(r.status, 405, m);
  }
});

test('traversal, encoded dots, absolute paths, NUL bytes and over-long names are refused', () => {
  const bad = [
    '/provisioning/../../etc/passwd',
    '/provisioning/%2e%2e/%2e%2e/etc/passwd',
    '/%2e%2e%2fetc%2fpasswd',
    '//etc/passwd',
    '/provisioning//etc/passwd',
    `/provisioning/${MAC}.cfg%00.txt`,
    '/provisioning/..%5c..%5cetc%5cpasswd',
    '/' + 'a'.repeat(300),
  ];
  for (const p of bad) {
    const r = curl(['--path-as-is', `${base}${p}`]);
    assert.ok([400, 403, 414].includes(r.status), `${p} → ${r.status}`);
    assert.not.match(r.body, /root:/);
  }
});

test('firmware files are served from firmware_dir, and a symlink out of it is refused', () => {
  const fw = path.join(d.stateDir, 'firmware');
  fs.mkdirSync(fw, { recursive: true });
  const blob = Buffer.alloc(200_000, 7);
  fs.writeFileSync(path.join(fw, 'T46S-66.86.0.15.rom'), blob);
  fs.symlinkSync('/etc/passwd', path.join(fw, 'passwd.rom'));
  const r = curl([`${base}/provisioning/T46S-66.86.0.15.rom`]);
  assert.is(r.status, 200);
  assert.is(r.body.length, blob.length);
  const s = curl([`${base}/provisioning/passwd.rom`]);
  assert.is(s.status, 403);
  assert.not.match(s.body, /root:/);
});

test('a change made with apsctl shows in the next fetch, without a restart', () => {
  const before = curl(['--digest', '-u', CREDS, `${base}/${MAC}.cfg`]).body;
  assert.match(before, /Alice/);
  const r = d.ctl('line', 'set', MAC, '1', '--extension', '102', '--label', 'Bobby');
  assert.is(r.status, 0, r.stderr);
  const after = curl(['--digest', '-u', CREDS, `${base}/${MAC}.cfg`]).body;
  assert.match(after, /bobsecret102/);
  assert.match(after, /Bobby/);
  assert.not.match(after, /S3cr3t/);
  d.ctl('line', 'set', MAC, '1', '--extension', '101', '--label', 'Alice', '--cid-source', 'pai-from', '--srtp');
});

test('with auth = none, only the IP that holds the MAC lease gets the secrets', async () => {
  const e = await startDaemon({
    setup: (cfg) => {
      const ini = path.join(cfg, 'aps.ini');
      fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('auth = digest', 'auth = none'));
    },
  });
  try {
    assert.is(e.ctl('device', 'add', MAC, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
    assert.is(e.ctl('line', 'set', MAC, '1', '--extension', '101').status, 0);
    const url = `http://${e.http}/${MAC}.cfg`;
    assert.is(curl([url]).status, 403);
    const db = new Database(path.join(e.stateDir, 'aps.db'));
    const now = Date.now();
    db.prepare('INSERT INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)').run(MAC, '127.0.0.1', 'lo', 'test', now + 60_000, now);
    db.close();
    const r = curl([url]);
    assert.is(r.status, 200);
    assert.match(r.body, /S3cr3t/);
    await e.waitLog(/security event=secret-served proto=http ip=127\.0\.0\.1 mac=805ec0a1b2c3 .*proof=lease/);
  } finally {
    await e.stop();
    e.cleanup();
  }
});

test('every refused or served secret is written on the security channel, and no secret is logged', () => {
  assert.ok(d.logs.some((l) => /security event=secret-refused proto=http ip=127\.0\.0\.1 mac=805ec0a1b2c3/.test(l)));
  assert.ok(d.logs.some((l) => /security event=secret-served proto=http .*proof=credentials/.test(l)));
  for (const l of d.logs) assert.not.match(l, /S3cr3t|Prov;Secret|Adm1n|Ld4p/);
});

test.run();
