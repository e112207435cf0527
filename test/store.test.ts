/** The state database: migrations, transactions, and what survives a crash. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { Store, SCHEMA_VERSION } from '../src/store/index.js';
import { ApsError } from '../src/errors.js';
import type { Mac } from '../src/mac.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'aps-store-'));

test('a new database is created in WAL mode at the current schema version', () => {
  const dir = tmp();
  const s = Store.open(dir);
  assert.is(s.db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  assert.is(s.db.pragma('journal_mode', { simple: true }), 'wal');
  s.close();
  const again = Store.open(dir);
  assert.is(again.db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  again.close();
  fs.rmSync(dir, { recursive: true });
});

test('every migration applies from an empty file, one version after the other', () => {
  const dir = tmp();
  const db = new Database(path.join(dir, 'aps.db'));
  assert.is(db.pragma('user_version', { simple: true }), 0);
  db.close();
  const s = Store.open(dir);
  const tables = s.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all().map((r) => (r as { name: string }).name);
  for (const t of ['devices', 'events', 'leases', 'lines']) assert.ok(tables.includes(t), t);
  s.close();
  fs.rmSync(dir, { recursive: true });
});

test('a database written by a newer apsd is refused with a clear error', () => {
  const dir = tmp();
  const db = new Database(path.join(dir, 'aps.db'));
  db.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
  db.close();
  try {
    Store.open(dir);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, ApsError);
    assert.match((e as ApsError).message, /newer than this apsd knows/);
  }
  fs.rmSync(dir, { recursive: true });
});

test('adding many devices is all or nothing', () => {
  const dir = tmp();
  const s = Store.open(dir);
  const d = (mac: string) => ({ mac: mac as Mac, tenant: 'default', vendor: 'yealink', model: 'T46S', template: null });
  s.addDevice(d('805ec0000001'));
  assert.throws(() => s.addDevices([d('805ec0000002'), d('805ec0000003'), d('805ec0000001')]));
  assert.is(s.countDevices(), 1, 'the two new devices were not half-written');
  s.close();
  fs.rmSync(dir, { recursive: true });
});

test('a line change raises the device revision, so cached files are rendered again', () => {
  const dir = tmp();
  const s = Store.open(dir);
  const mac = '805ec0000001' as Mac;
  s.addDevice({ mac, tenant: 'default', vendor: 'yealink', model: 'T46S', template: null });
  const r0 = s.device(mac)!.rev;
  s.setLine({ mac, idx: 1, extension: '101', label: '', cid_source: 'from', local_port: '', srtp: false });
  assert.ok(s.device(mac)!.rev > r0);
  s.removeDevice(mac);
  assert.equal(s.lines(mac), [], 'lines go with their device');
  s.close();
  fs.rmSync(dir, { recursive: true });
});

test.run();
