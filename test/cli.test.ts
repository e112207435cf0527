/** apsctl as an administrator types it: devices, lines, rendering, catalogue, errors. */
import fs from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFixtureConfig, ctl } from './support/daemon.js';
import { ROOT } from './support/paths.js';

const runNode = (args: string[]) => spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });

const c = copyFixtureConfig();
const run = (...a: string[]) => ctl(c.configDir, ...a);

test.after(() => fs.rmSync(c.dir, { recursive: true, force: true }));

test('device add accepts every MAC form and refuses a second add of the same phone', () => {
  const r = run('device', 'add', '80-5E-C0-00-00-01', '--tenant', 'acme', '--template', 'yealink-full', '--label', 'Lobby');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /added 80:5e:c0:00:00:01: Yealink/);
  const again = run('device', 'add', '805ec0.000001'.replace('.', ''), '--tenant', 'acme', '--template', 'yealink-full');
  assert.is(again.status, 1);
  assert.match(again.stderr, /APS_ERR_EXISTS/);
  assert.is(run('device', 'add', '805e.c000.0002', '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  assert.is(run('device', 'add', '805EC0000003', '--tenant', 'acme', '--template', 'yealink-full').status, 0);
});

test('a malformed MAC, unknown tenant, template or model is refused with what was expected', () => {
  let r = run('device', 'add', '80:5e:c0:00:00', '--tenant', 'acme', '--template', 'yealink-full');
  assert.is(r.status, 1);
  assert.match(r.stderr, /APS_ERR_MAC: "80:5e:c0:00:00" is not a MAC address \(expected 12 hex digits/);
  r = run('device', 'add', '805ec0000009', '--tenant', 'nobody', '--template', 'yealink-full');
  assert.match(r.stderr, /no tenant "nobody" \(expected one of .*acme/);
  r = run('device', 'add', '805ec0000009', '--tenant', 'acme', '--template', 'nope');
  assert.match(r.stderr, /no template "nope"/);
  r = run('device', 'add', '805ec0000009', '--tenant', 'acme', '--template', 'yealink-full', '--model', 'T99X');
  assert.match(r.stderr, /Yealink has no model "T99X" \(expected one of /);
  r = run('device', 'add', '805ec0000009');
  assert.is(r.status, 2);
});

test('a template naming an unknown vendor or model is refused by apsd --check and apsctl with file:line: of that key', () => {
  const t = copyFixtureConfig();
  try {
    const file = `${t.configDir}/templates.d/snom-full.ini`;
    const orig = fs.readFileSync(file, 'utf8');
    const lineOf = (text: string, key: string) => text.split('\n').findIndex((l) => l.startsWith(`${key} =`)) + 1;
    for (const [key, value, says] of [['vendor', 'nosuch', 'no vendor .{1,2}nosuch'], ['model', 'X99', 'Snom has no model .{1,2}X99']] as const) {
      const text = orig.replace(new RegExp(`^${key} = .*$`, 'm'), `${key} = ${value}`);
      fs.writeFileSync(file, text);
      const where = `${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${lineOf(text, key)}: \\[template\\] ${key}: ${says}`;
      const check = runNode(['dist/src/daemon.js', '--check', '--config', t.configDir]);
      assert.is(check.status, 1);
      assert.match(check.stderr, new RegExp(`APS_ERR_CONFIG: ${where}`));
      const cc = ctl(t.configDir, 'config', 'check');
      assert.is(cc.status, 1);
      assert.match(cc.stderr, new RegExp(`^apsctl: APS_ERR_CONFIG: ${where}`));
    }
  } finally {
    fs.rmSync(t.dir, { recursive: true, force: true });
  }
});

test('model ids are matched without regard to case', () => {
  const r = run('device', 'add', '805ec0000004', '--tenant', 'acme', '--template', 'yealink-full', '--model', 't46s');
  assert.is(r.status, 0, r.stderr);
  assert.is(JSON.parse(run('device', 'show', '805ec0000004', '--json').stdout).model, 'T46S');
});

test('line set assigns an extension; a missing, taken or out-of-range one is refused', () => {
  let r = run('line', 'set', '805ec0000001', '1', '--extension', '101', '--label', 'Alice', '--local-port', '10000-20000', '--srtp');
  assert.is(r.status, 0, r.stderr);
  r = run('line', 'set', '805ec0000002', '1', '--extension', '101');
  assert.is(r.status, 1);
  assert.match(r.stderr, /extension 101 is already line 1 of 80:5e:c0:00:00:01/);
  r = run('line', 'set', '805ec0000002', '1', '--extension', '999');
  assert.match(r.stderr, /extension 999 does not exist in tenant acme/);
  r = run('line', 'set', '805ec0000002', '99', '--extension', '102');
  assert.match(r.stderr, /there is no line 99/);
  r = run('line', 'set', '805ec0000002', '1', '--extension', '102', '--cid-source', 'caller');
  assert.is(r.status, 2);
  r = run('line', 'set', '805ec0000002', '1', '--extension', '102', '--local-port', '80');
  assert.is(r.status, 2);
});

test('device list and show print tables, and JSON with --json', () => {
  const t = run('device', 'list');
  assert.match(t.stdout, /^MAC\s+TENANT\s+VENDOR\s+MODEL/);
  assert.match(t.stdout, /80:5e:c0:00:00:01\s+acme\s+yealink\s+\S+\s+yealink-full\s+provisioned\s+101\s+Lobby/);
  const j = JSON.parse(run('device', 'list', '--json').stdout);
  assert.is(j.length, 4);
  const one = j.find((x: { mac: string }) => x.mac === '805ec0000001');
  assert.equal(one.lines, [{ line: 1, extension: '101', label: 'Alice', cidSource: 'from', localPort: '10000-20000', srtp: true }]);
  // a phone without any line is in the unprovisioned stage
  const unprov = JSON.parse(run('device', 'list', '--state', 'unprovisioned', '--json').stdout) as { mac: string; lines: unknown[] }[];
  assert.ok(unprov.length > 0 && unprov.every((x) => x.lines.length === 0), JSON.stringify(unprov));
  assert.not.ok(unprov.some((x) => x.mac === '805ec0000001'), 'the device with a line is provisioned');
  const s = run('device', 'show', '80:5e:c0:00:00:01');
  assert.match(s.stdout, /holds secrets: needs proof/);
});

test('render prints the files the phone would get, secrets included, and picks one port from a range', () => {
  const all = JSON.parse(run('render', '805ec0000001', '--json').stdout) as { name: string; secrets: boolean; body: string }[];
  assert.ok(all.length >= 2);
  const dev = all.find((f) => f.name === '805ec0000001.cfg')!;
  assert.ok(dev.secrets);
  assert.match(dev.body, /S3cr3t&<101>/);
  const port = Number(/\b(1\d{4})\b/.exec(dev.body.split('\n').filter((l) => /port/i.test(l) && /1\d{4}/.test(l)).join('\n'))?.[1]);
  assert.ok(port >= 10000 && port <= 20000, `local port from the range, got ${port}`);
  const one = run('render', '805ec0000001', '805ec0000001.cfg');
  assert.is(one.stdout, dev.body);
  assert.is(run('render', '805ec0000001', 'nothing.cfg').status, 1);
});

test('device remove deletes the device and frees its extension', () => {
  assert.is(run('device', 'remove', '805ec0000001').status, 0);
  assert.is(run('device', 'show', '805ec0000001').status, 1);
  assert.is(run('line', 'set', '805ec0000002', '1', '--extension', '101').status, 0);
  assert.is(run('device', 'remove', '805ec0000001').status, 1);
});

test('vendor list, template list and config check describe the catalogue', () => {
  const v = JSON.parse(run('vendor', 'list', '--json').stdout) as { id: string; models: unknown[] }[];
  for (const id of ['yealink', 'polycom', 'snom', 'aastra']) assert.ok(v.some((x) => x.id === id), id);
  const t = run('template', 'list');
  assert.match(t.stdout, /yealink-full\s+yealink\s+\S+\s+acme/);
  const chk = run('config', 'check', '--json');
  assert.is(chk.status, 0, chk.stderr);
  const j = JSON.parse(chk.stdout);
  assert.is(j.valid, true);
  assert.ok(j.templates >= 4);
});

test("dhcp classes --tenant gives that tenant's phones its own provisioning_url, over the protocol it names", () => {
  fs.writeFileSync(`${c.configDir}/tenants.d/tftpsite.ini`, '[tenant]\nname = Over TFTP\nprovisioning_url = tftp://10.20.0.1\n');
  try {
    const own = run('dhcp', 'classes', '--format', 'dnsmasq', '--tenant', 'tftpsite');
    assert.is(own.status, 0, own.stderr);
    assert.match(own.stdout, /dhcp-option-force=tag:aps-tftpsite-yealink,66,"tftp:\/\/10\.20\.0\.1\/"/);
    const other = run('dhcp', 'classes', '--format', 'dnsmasq');
    assert.not.match(other.stdout, /tftp:\/\//);
    fs.writeFileSync(`${c.configDir}/tenants.d/tftpsite.ini`, '[tenant]\nprovisioning_url = gopher://x/\n');
    const bad = run('dhcp', 'classes', '--format', 'dnsmasq', '--tenant', 'tftpsite');
    assert.is.not(bad.status, 0);
    assert.match(bad.stderr, /tftpsite\.ini.*provisioning_url|provisioning_url.*tftpsite\.ini/s);
  } finally {
    fs.rmSync(`${c.configDir}/tenants.d/tftpsite.ini`);
  }
});

test.run();
