/**
 * The rollout state machine (src/firmware/rollout.ts) step by step on a real SQLite file, with
 * apsd's clock replaced by the test's: the window, the soak, the upgrade limit and the failure
 * share, as `firmware rollout status` would show them. (test/firmware.test.ts drives the same
 * machine through apsd with curl and a SIP peer.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/log.js';
import type { Mac } from '../src/mac.js';
import { Store } from '../src/store/index.js';
import { FirmwareStore } from '../src/store/firmware.js';
import { Observations } from '../src/store/observations.js';
import { VendorRegistry } from '../src/vendors/registry.js';
import { inWindow, parseWaves, pauseRollout, resumeRollout, startRollout, tick } from '../src/firmware/rollout.js';
import { VENDORS_DIR } from './support/paths.js';

const registry = VendorRegistry.load(VENDORS_DIR);
const config = loadConfig(null);
const log = createLogger({ level: 'error', write: () => undefined });
const MIN = 60_000;

function site(n: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-rollout-'));
  const store = Store.open(dir);
  const macs = Array.from({ length: n }, (_, i) => `805ec0000${(0x500 + i).toString(16)}` as Mac);
  store.addDevices(macs.map((mac) => ({ mac, tenant: 'default', vendor: 'yealink', model: 'T46S', template: null, state: 'provisioned' as const })));
  const fw = new FirmwareStore(store);
  fw.addImage({ file: 'new.rom', vendor: 'yealink', models: 'T46S', version: '2.0', size: 1, sha256: 'x', added_at: 0 });
  const obs = new Observations(store);
  const report = (mac: Mac, version: string, at: number) =>
    obs.write([{ at, mac, ip: '127.0.0.1', proto: 'http', file: `${mac}.cfg`, answer: '200', proof: '', user_agent: '', ua_vendor: 'yealink', ua_model: 'T46S', ua_firmware: version, ua_mac: null }], 50);
  for (const m of macs) report(m, '1.0', 0);
  const resynced: Mac[] = [];
  let now = 0;
  const deps = { store, registry, config: () => config, log, now: () => now, resync: async (mac: Mac) => { resynced.push(mac); return { ok: true }; } };
  return {
    store, fw, macs, resynced, report,
    at: (t: number) => (now = t),
    step: () => tick(deps),
    states: (id = 1) => fw.rolloutDevices(id).map((d) => d.state),
    rollout: (id = 1) => fw.rollout(id)!,
    close: () => { store.close(); fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

test('waves are cumulative shares rounded up, and a window may span midnight', () => {
  assert.equal(parseWaves('5%,25%,100%'), [5, 25, 100]);
  const at = (h: number, m: number) => new Date(2026, 0, 1, h, m).getTime();
  assert.ok(inWindow('01:00-05:00', at(1, 0)));
  assert.not.ok(inWindow('01:00-05:00', at(5, 0)));
  assert.ok(inWindow('22:00-04:00', at(23, 30)));
  assert.ok(inWindow('22:00-04:00', at(3, 59)));
  assert.not.ok(inWindow('22:00-04:00', at(12, 0)));
  assert.ok(inWindow('', at(12, 0)));
});

test('a wave starts only inside the window, waits for its soak, and the last wave ends the rollout', () => {
  const s = site(4);
  try {
    const noon = new Date(2026, 0, 1, 12, 0).getTime();
    const night = new Date(2026, 0, 2, 1, 30).getTime();
    const r = startRollout({ store: s.store, registry, config: () => config }, { version: '2.0', models: ['T46S'], waves: '50%,100%', window: '01:00-05:00', maxFailed: '0%', soak: '10m' });
    assert.equal(r.waves, [2, 2]);
    s.at(noon);
    s.step();
    assert.equal(s.states(), ['pending', 'pending', 'pending', 'pending'], 'outside the window nothing starts');
    assert.equal(s.resynced, []);
    s.at(night);
    s.step();
    assert.equal(s.states(), ['sent', 'sent', 'pending', 'pending']);
    assert.equal(s.resynced, s.macs.slice(0, 2));
    assert.is(s.fw.override(s.macs[0])?.version, '2.0');
    for (const m of s.macs.slice(0, 2)) s.report(m, '2.0', night + MIN);
    s.at(night + MIN);
    s.step();
    assert.equal(s.states(), ['upgraded', 'upgraded', 'pending', 'pending']);
    s.at(night + 5 * MIN);
    s.step();
    assert.equal(s.states().slice(2), ['pending', 'pending'], 'the soak is not over');
    s.at(night + 11 * MIN);
    s.step();
    assert.is(s.rollout().wave, 1);
    s.step();
    assert.equal(s.states(), ['upgraded', 'upgraded', 'sent', 'sent']);
    assert.is(s.resynced.length, 4, 'each phone is told once');
    for (const m of s.macs.slice(2)) s.report(m, '2.0', night + 12 * MIN);
    s.at(night + 12 * MIN);
    s.step();
    s.at(night + 23 * MIN);
    s.step();
    assert.is(s.rollout().state, 'done');
  } finally {
    s.close();
  }
});

test('phones not back within the upgrade limit fail; within --max-failed the rollout goes on, past it it halts, and resume sends the image again', () => {
  const s = site(10);
  try {
    startRollout({ store: s.store, registry, config: () => config }, { version: '2.0', models: ['T46S'], waves: '100%', maxFailed: '10%', soak: '0', upgradeLimit: '5m' });
    s.at(1000);
    s.step();
    for (const m of s.macs.slice(0, 9)) s.report(m, '2.0', 2000);
    s.at(1000 + 4 * MIN);
    s.step();
    assert.is(s.states().filter((x) => x === 'upgraded').length, 9);
    assert.is(s.rollout().state, 'running', 'the limit has not passed');
    s.at(1000 + 6 * MIN);
    s.step();
    assert.is(s.rollout().state, 'done', 'one failed phone of ten is within 10%');
    assert.is(s.states()[9], 'failed');
  } finally {
    s.close();
  }
  const h = site(10);
  try {
    startRollout({ store: h.store, registry, config: () => config }, { version: '2.0', models: ['T46S'], waves: '100%', maxFailed: '10%', soak: '0', upgradeLimit: '5m' });
    h.at(1000);
    h.step();
    for (const m of h.macs.slice(0, 8)) h.report(m, '2.0', 2000);
    h.report(h.macs[8], '1.0', 3000);
    h.at(1000 + 6 * MIN);
    h.step();
    const r = h.rollout();
    assert.is(r.state, 'halted');
    assert.match(r.reason, /^wave 1 of 1 \(100%\): 2 of 10 phones failed, more than --max-failed 10% allows \(1\): 805ec0000508 came back with 1\.0 \(not upgraded after 360s\); 805ec0000509 not back after 360s$/);
    h.step();
    assert.is(h.rollout().state, 'halted', 'a halted rollout stays halted');
    resumeRollout(h.store, 1, 1000 + 7 * MIN);
    assert.equal(h.states().slice(8), ['sent', 'sent']);
    h.at(1000 + 7 * MIN);
    h.step();
    assert.is(h.resynced.filter((m) => m === h.macs[9]).length, 2, 'resume tells the failed phones again');
    pauseRollout(h.store, 1);
    h.at(1000 + 20 * MIN);
    h.step();
    assert.equal(h.states().slice(8), ['sent', 'sent'], 'a paused rollout counts nothing');
  } finally {
    h.close();
  }
});

test.run();
