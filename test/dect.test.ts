/**
 * DECT bases against the built apsd: line N is handset N, bounded by the model's handsets;
 * device show names handsets; a PIN registration of an unprovisioned base assigns line 1; a
 * second base tied to the first is served the system's configuration under its own MAC and
 * proves itself with its own credentials.
 */
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { hashPin } from '../src/pin/pinhash.js';
import { curl, startDaemon, type Daemon } from './support/daemon.js';

const PIN = '739154';
const BASE = '7c2f80d0d0a1';
const SECOND = '7c2f80d0d0a2';
const SITE = ['--digest', '-u', 'phones:Prov;Secret#1'];
let d: Daemon;

test.before(async () => {
  const pinHash = await hashPin(PIN);
  d = await startDaemon({
    setup: (configDir) => {
      const ini = path.join(configDir, 'aps.ini');
      fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('[provisioning]\n', `[provisioning]\npin_hash = ${pinHash}\n`));
    },
  });
  await d.waitLog(/apsd ready/);
});

test.after(async () => {
  await d?.stop();
  d?.cleanup();
});

const json = (...a: string[]) => {
  const r = d.ctl('--json', ...a);
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
};
const fetch = (mac: string, creds = SITE) => curl([...creds, `http://${d.http}/provisioning/${mac.toUpperCase()}.xml`]);

test('a PIN registration of an unprovisioned base gives it line 1, which is handset 1', () => {
  assert.is(d.ctl('device', 'add', BASE, '--tenant', 'acme', '--template', 'gigaset-full').status, 0);
  assert.is(json('device', 'show', BASE).state, 'unprovisioned');
  const r = d.ctl('pin', 'register', '--mac', BASE, '--pin', PIN, '--extension', '101', '--no-resync');
  assert.is(r.status, 0, r.stdout + r.stderr);
  const show = json('device', 'show', BASE);
  assert.equal(show.lines.map((l: { line: number; extension: string }) => [l.line, l.extension]), [[1, '101']]);
  assert.match(d.ctl('device', 'show', BASE).stdout, /HANDSET\s+EXTENSION/);
});

test('line N of a base registers handset N; the handset count bounds N; the base file carries both extensions and secrets', () => {
  const r = d.ctl('line', 'set', BASE, '2', '--extension', '102');
  assert.is(r.status, 0, r.stderr);
  const over = d.ctl('line', 'set', BASE, '21', '--extension', '103');
  assert.is(over.status, 2);
  assert.match(over.stderr, /a N670 has 20 handsets; there is no handset 21/);
  const body = fetch(BASE).body;
  for (const s of ['101', '102', 'S3cr3t', 'bobsecret102']) assert.ok(body.includes(s), `${s} in the base's file`);
});

test('a second base tied to the first is served the system\'s configuration under its own MAC, with its own proof', () => {
  assert.is(d.ctl('device', 'add', SECOND, '--tenant', 'acme', '--template', 'gigaset-full').status, 0);
  assert.match(d.ctl('device', 'tie', SECOND, '--to', 'a0b1c2d3e4f5').stderr, /no device a0:b1:c2:d3:e4:f5/);
  const t = d.ctl('device', 'tie', SECOND, '--to', BASE);
  assert.is(t.status, 0, t.stderr);
  assert.match(d.ctl('device', 'show', SECOND).stdout, /multicell: served the configuration of 7c:2f:80:d0:d0:a1/);
  assert.match(d.ctl('device', 'show', BASE).stdout, /multicell: 7c:2f:80:d0:d0:a2 shares this configuration/);
  // its own credentials prove it; the file has the system's handsets
  const own = json('device', 'credentials', SECOND);
  const r = fetch(SECOND, ['--digest', '-u', `${own.username}:${own.password}`]);
  assert.is(r.status, 200, r.body);
  for (const s of ['S3cr3t', 'bobsecret102']) assert.ok(r.body.includes(s), `${s} in the second base's file`);
  const refused = d.ctl('line', 'set', SECOND, '3', '--extension', '103');
  assert.is(refused.status, 2);
  assert.match(refused.stderr, /set the system's lines there/);
  // a change on the first base reaches the second at its next fetch
  assert.is(d.ctl('line', 'set', BASE, '3', '--extension', '103').status, 0);
  assert.ok(fetch(SECOND).body.includes('carolsecret103'), 'handset 3 reaches the tied base');
  assert.is(d.ctl('device', 'untie', SECOND).status, 0);
  assert.not.ok(fetch(SECOND).body.includes('S3cr3t'), 'untied, it is a base of its own again (no lines)');
});

test.run();
