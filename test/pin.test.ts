/**
 * PIN registration, the workflow on its own (no adapter): every result reachable, lockout and
 * its expiry, brute force from one device, the PIN in no log line; the scrypt hash; the
 * extension catalogue with a real pjsip.conf; the PBX accounts and dialplan texts; and resync
 * to a phone on UDP 127.0.0.1 and through a fake Asterisk manager.
 */
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig, type Config } from '../src/config/index.js';
import { PIN_HASH_RE } from '../src/config/settings.js';
import { memoryLogger } from '../src/log.js';
import type { Mac } from '../src/mac.js';
import { asteriskDialplan, agiUrl } from '../src/pin/dialplan.js';
import { pjsipAccounts } from '../src/pin/accounts.js';
import { parsePjsip, readPjsipConf } from '../src/config/pjsip.js';
import { listExtensions } from '../src/pin/extensions.js';
import { findExtension, mergePjsipExtensions, pjsipExtensions } from '../src/config/extensions.js';
import { hashPin, parsePinHash, verifyPinHash, verifyPlainPin } from '../src/pin/pinhash.js';
import { parseSipAddress, resync, type ResyncDeps } from '../src/pin/resync.js';
import { register, type RegisterRequest, type WorkflowDeps } from '../src/pin/workflow.js';
import { Renderer } from '../src/render/index.js';
import { getHeader, parseCSeq } from '../src/wire/sip.js';
import { Store } from '../src/store/index.js';
import { pinStore } from '../src/store/pin.js';
import { VendorRegistry, fileFits, fileNameFor } from '../src/vendors/registry.js';
import { copyFixtureConfig } from './support/daemon.js';
import { ROOT, VENDORS_DIR } from './support/paths.js';
import { fakeManager, udpPhone } from './support/pin-peers.js';

const PIN = '482913';
const WRONG = ['739154', '915372', '264817'];
const A = '805ec0000001' as Mac; // Yealink, unprovisioned
const B = '805ec0000002' as Mac; // Yealink, provisioned with 102
const C = '000413000003' as Mac; // Snom, unprovisioned
const registry = VendorRegistry.load(VENDORS_DIR);

interface World {
  dir: string;
  config: Config;
  store: Store;
  log: ReturnType<typeof memoryLogger>;
  deps: WorkflowDeps;
  clock: { t: number };
  cleanup(): void;
}

let pinHashLine = '';

/** A fresh config dir (fixture + [provisioning] pin_hash + extra ini), a fresh state dir, devices A, B, C. */
function world(ini = '', opts: { plainPin?: boolean } = {}): World {
  const c = copyFixtureConfig();
  const apsIni = path.join(c.configDir, 'aps.ini');
  let text = fs.readFileSync(apsIni, 'utf8');
  text = text.replace('[provisioning]\n', `[provisioning]\n${opts.plainPin ? `pin = ${PIN}` : `pin_hash = ${pinHashLine}`}\n`);
  fs.writeFileSync(apsIni, text + '\n' + ini);
  const config = loadConfig(c.configDir);
  const store = Store.open(c.stateDir);
  store.addDevice({ mac: A, tenant: 'default', vendor: 'yealink', model: 'T46S', template: null, state: 'unprovisioned', source: 'dhcp' });
  store.addDevice({ mac: B, tenant: 'acme', vendor: 'yealink', model: 'T46S', template: 'yealink-full', state: 'provisioned' });
  store.setLine({ mac: B, idx: 1, extension: '102', label: '', cid_source: 'from', local_port: '', srtp: false });
  store.addDevice({ mac: C, tenant: 'default', vendor: 'snom', model: 'D735', template: null, state: 'unprovisioned', source: 'dhcp' });
  const log = memoryLogger('debug');
  const clock = { t: Date.parse('2026-11-26T10:00:00Z') };
  return {
    dir: c.dir,
    config,
    store,
    log,
    clock,
    deps: { store, config: () => config, log, now: () => clock.t },
    cleanup() {
      store.close();
      fs.rmSync(c.dir, { recursive: true, force: true });
    },
  };
}

const req = (r: Partial<RegisterRequest>): RegisterRequest => ({ pin: PIN, extension: '101', via: 'test', ...r });

/** No log line, main or security, holds a PIN keyed or configured. */
function assertNoPin(lines: string[], pins = [PIN, ...WRONG]): void {
  for (const l of lines) for (const p of pins) assert.not.ok(l.includes(p), `a PIN appears in a log line: ${l}`);
}

test.before(async () => {
  pinHashLine = await hashPin(PIN);
});

// ------------------------------------------------------------------ the hash

test('apsctl pin hash output is an scrypt line the ini accepts, and it verifies only the right PIN', async () => {
  assert.match(pinHashLine, PIN_HASH_RE);
  assert.match(pinHashLine, /^scrypt\$32768\$8\$1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  assert.ok(await verifyPinHash(PIN, pinHashLine));
  assert.not.ok(await verifyPinHash('482914', pinHashLine));
  assert.not.ok(await verifyPinHash('', pinHashLine));
  const again = await hashPin(PIN);
  assert.is.not(again, pinHashLine, 'each hash has its own salt');
});

test('a malformed hash or one with absurd scrypt parameters verifies nothing and costs nothing', async () => {
  const [, , , , salt, hash] = pinHashLine.split('$');
  for (const bad of ['', 'scrypt$1$1', `bcrypt$32768$8$1$${salt}$${hash}`, `scrypt$1073741824$8$1$${salt}$${hash}`, `scrypt$32768$8$1$${salt}$!!`, `scrypt$3$8$1$${salt}$${hash}`]) {
    assert.is(parsePinHash(bad), null, bad);
    const t0 = Date.now();
    assert.not.ok(await verifyPinHash(PIN, bad));
    assert.ok(Date.now() - t0 < 50);
  }
  assert.not.ok(await verifyPinHash('1'.repeat(65), pinHashLine), 'an over-long PIN is refused before scrypt');
  assert.ok(verifyPlainPin(PIN, PIN));
  assert.not.ok(verifyPlainPin('48291', PIN));
  assert.not.ok(verifyPlainPin('', ''), 'an empty configured PIN matches nothing');
});

// ------------------------------------------------------------------ every result

test('the right PIN and a free extension: OK, the phone becomes extension 101 of acme in one step, with an audit event', async () => {
  const w = world();
  try {
    const before = w.store.device(A)!;
    const r = await register(w.deps, req({ mac: A }));
    assert.equal({ result: r.result, mac: r.mac, tenant: r.tenant, extension: r.extension }, { result: 'OK', mac: A, tenant: 'acme', extension: '101' });
    const d = w.store.device(A)!;
    assert.is(d.state, 'provisioned');
    assert.is(d.tenant, 'acme', 'the device moved to the extension\'s tenant');
    assert.ok(d.rev > before.rev, 'its revision moved, so every cached file of it is dropped');
    assert.equal(w.store.lines(A).map((l) => [l.idx, l.extension]), [[1, '101']]);
    const ev = w.store.events(10).find((e) => e.kind === 'pin.registered');
    assert.ok(ev, 'an audit event');
    assert.is(ev!.detail, 'extension=101 tenant=acme via=test');
    assert.is(pinStore(w.store).state(A), undefined, 'the PIN failures are forgotten');
    assert.ok(w.log.lines.some((l) => /security event=pin-attempt result=OK mac=805ec0000001 .*extension=101 tenant=acme/.test(l)), w.log.lines.join('\n'));
    assertNoPin(w.log.lines);
  } finally {
    w.cleanup();
  }
});

test('after OK the rendered config of the phone carries the extension\'s credentials', async () => {
  const w = world();
  try {
    assert.is((await register(w.deps, req({ mac: A }))).result, 'OK');
    const renderer = new Renderer({ registry, store: w.store, config: () => w.config, generation: () => 1 });
    const v = registry.get('yealink')!;
    const f = v.compiledFiles.find((x) => x.spec.secrets)!;
    const body = renderer.renderUncached(f, undefined, w.store.device(A)).body.toString();
    assert.match(body, 'account.1.user_name = 101');
    assert.match(body, 'account.1.auth_name = acme101');
    assert.match(body, 'account.1.password = S3cr3t&<101>');
    assert.match(body, 'account.1.display_name = Alice Example');
  } finally {
    w.cleanup();
  }
});

test('a device found by its unprov account (the calling PBX endpoint) registers like one found by MAC', async () => {
  const w = world();
  try {
    const acct = pinStore(w.store).unprovAccount(A, 'unprov-').account;
    assert.is(acct, 'unprov-805ec0000001');
    const r = await register(w.deps, req({ account: ['no-such-endpoint', acct] }));
    assert.is(r.result, 'OK');
    assert.is(r.mac, A);
  } finally {
    w.cleanup();
  }
});

test('UNKNOWN: a MAC or account apsd does not know, or a disabled device; nothing is counted', async () => {
  const w = world();
  try {
    assert.is((await register(w.deps, req({ mac: '805ec0999999' as Mac }))).result, 'UNKNOWN');
    assert.is((await register(w.deps, req({ account: 'unprov-805ec0999999' }))).result, 'UNKNOWN');
    assert.is((await register(w.deps, req({ account: '101' }))).result, 'UNKNOWN', 'an ordinary extension calling in is no unprovisioned phone');
    assert.is((await register(w.deps, req({}))).result, 'UNKNOWN', 'no device named at all');
    w.store.updateDevice(C, { state: 'disabled' });
    assert.is((await register(w.deps, req({ mac: C }))).result, 'UNKNOWN');
    assert.is(pinStore(w.store).state(C), undefined);
  } finally {
    w.cleanup();
  }
});

test('BADPIN: a wrong PIN is refused and counted; the device stays unprovisioned', async () => {
  const w = world();
  try {
    const r = await register(w.deps, req({ mac: A, pin: WRONG[0] }));
    assert.is(r.result, 'BADPIN');
    assert.is(pinStore(w.store).state(A)!.failures, 1);
    assert.is(w.store.device(A)!.state, 'unprovisioned');
    assert.equal(w.store.lines(A), []);
    for (const junk of ['', '4829 13', '1'.repeat(200)]) assert.is((await register(w.deps, req({ mac: C, pin: junk }))).result, 'BADPIN', JSON.stringify(junk));
    assertNoPin(w.log.lines);
  } finally {
    w.cleanup();
  }
});

test('LOCKED: three wrong PINs lock the device for [pin] lockout; then even the right PIN is refused', async () => {
  const w = world();
  try {
    const results = [];
    for (const p of WRONG) results.push((await register(w.deps, req({ mac: A, pin: p }))).result);
    assert.equal(results, ['BADPIN', 'BADPIN', 'BADPIN']);
    const r = await register(w.deps, req({ mac: A }));
    assert.is(r.result, 'LOCKED');
    assert.is(r.lockedUntil, w.clock.t + 15 * 60_000, 'the default lockout is 15 minutes');
    assert.is(w.store.device(A)!.state, 'unprovisioned');
    assert.ok(w.store.events(10).some((e) => e.kind === 'pin.locked' && e.mac === A));
    assert.ok(w.log.lines.some((l) => /level=warn msg="device locked after wrong PINs" mac=805ec0000001/.test(l)));
    // another device is not affected
    assert.is((await register(w.deps, req({ mac: C, extension: '103' }))).result, 'OK');
    assertNoPin(w.log.lines);
  } finally {
    w.cleanup();
  }
});

test('the lockout ends after [pin] lockout: the device gets its attempts back', async () => {
  const w = world('[pin]\nmax_attempts = 2\nlockout = 10m\n');
  try {
    for (const p of WRONG.slice(0, 2)) assert.is((await register(w.deps, req({ mac: A, pin: p }))).result, 'BADPIN');
    assert.is((await register(w.deps, req({ mac: A }))).result, 'LOCKED', 'max_attempts = 2');
    w.clock.t += 10 * 60_000 - 1;
    assert.is((await register(w.deps, req({ mac: A }))).result, 'LOCKED', 'one millisecond before the end');
    w.clock.t += 1;
    assert.is((await register(w.deps, req({ mac: A, pin: WRONG[2] }))).result, 'BADPIN', 'a fresh count after the lock');
    assert.is(pinStore(w.store).state(A)!.failures, 1);
    assert.is((await register(w.deps, req({ mac: A }))).result, 'OK');
  } finally {
    w.cleanup();
  }
});

test('wrong PINs far apart do not add up: failures older than the lockout period are forgotten', async () => {
  const w = world();
  try {
    assert.is((await register(w.deps, req({ mac: A, pin: WRONG[0] }))).result, 'BADPIN');
    assert.is((await register(w.deps, req({ mac: A, pin: WRONG[1] }))).result, 'BADPIN');
    w.clock.t += 16 * 60_000;
    assert.is((await register(w.deps, req({ mac: A, pin: WRONG[2] }))).result, 'BADPIN');
    assert.is(pinStore(w.store).lockedUntil(A, w.clock.t), 0, 'not locked: only one failure within 15 minutes');
  } finally {
    w.cleanup();
  }
});

test('NOEXT: an extension that exists nowhere, or in several tenants none of which is the device\'s; the right PIN is not counted', async () => {
  const w = world();
  try {
    assert.is((await register(w.deps, req({ mac: A, extension: '999' }))).result, 'NOEXT');
    assert.is((await register(w.deps, req({ mac: A, extension: '10;1' }))).result, 'NOEXT');
    assert.is(pinStore(w.store).state(A)?.failures ?? 0, 0, 'the right PIN costs no attempt');
    // 101 in a second tenant: ambiguous for a device of the default tenant
    w.config.tenants.set('beta', { id: 'beta', name: 'Beta', file: '(test)', ipDnsMap: [] });
    w.config.extensions.set('beta/101', { ...w.config.extensions.get('acme/101')!, tenant: 'beta' });
    assert.is((await register(w.deps, req({ mac: A }))).result, 'NOEXT');
    assert.ok(w.log.lines.some((l) => /result=NOEXT .*reason="in several tenants: acme,beta"/.test(l)));
    // a device already in beta gets beta's 101
    w.store.updateDevice(C, { tenant: 'beta' });
    const r = await register(w.deps, req({ mac: C }));
    assert.equal([r.result, r.tenant], ['OK', 'beta']);
    assert.is(findExtension(w.config, '101', 'acme').ext?.tenant, 'acme');
    // what was keyed at the extension prompt is not logged when it names no extension
    assert.not.ok(w.log.lines.some((l) => l.includes('999')));
  } finally {
    w.cleanup();
  }
});

test('TAKEN: an extension another phone holds; with allow_shared it may be shared within the device\'s tenant only', async () => {
  const w = world();
  try {
    assert.is((await register(w.deps, req({ mac: A, extension: '102' }))).result, 'TAKEN');
    assert.is(w.store.device(A)!.state, 'unprovisioned');
    w.config.settings.pbx.allowShared = true;
    assert.is((await register(w.deps, req({ mac: A, extension: '102' }))).result, 'TAKEN', 'the device is in default, the extension in acme');
    w.store.updateDevice(A, { tenant: 'acme' });
    const r = await register(w.deps, req({ mac: A, extension: '102' }));
    assert.is(r.result, 'OK');
    assert.ok(w.store.events(10).some((e) => e.kind === 'pin.registered' && e.detail.includes(`shared-with=${B}`)));
  } finally {
    w.cleanup();
  }
});

test('registering again with the extension the phone already has is OK', async () => {
  const w = world();
  try {
    assert.is((await register(w.deps, req({ mac: B, extension: '102' }))).result, 'OK');
  } finally {
    w.cleanup();
  }
});

test('a plain [provisioning] pin works too; with no PIN configured every attempt is BADPIN and an error names the key', async () => {
  const w = world('', { plainPin: true });
  try {
    assert.is((await register(w.deps, req({ mac: C, pin: WRONG[0] }))).result, 'BADPIN');
    assert.is((await register(w.deps, req({ mac: A }))).result, 'OK');
    w.config.settings.provisioning.pin = '';
    assert.is((await register(w.deps, req({ mac: C, extension: '103' }))).result, 'BADPIN');
    assert.ok(w.log.lines.some((l) => /level=error msg="PIN registration refused: no PIN is configured".*key="\[provisioning\] pin_hash"/.test(l)));
    assertNoPin(w.log.lines);
  } finally {
    w.cleanup();
  }
});

// ------------------------------------------------------------------ brute force

test('10,000 wrong PINs from one device: locked after 3, never OK, only 3 PINs ever checked, in bounded time', async () => {
  const w = world();
  try {
    let checked = 0;
    const real = w.deps;
    const deps: WorkflowDeps = { ...real, verify: async (p) => (checked++, p === PIN) };
    const counts: Record<string, number> = {};
    const t0 = performance.now();
    for (let i = 0; i < 10_000; i++) {
      const guess = String(100000 + ((i * 7919) % 900000));
      const r = await register(deps, req({ mac: A, pin: guess === PIN ? '000000' : guess }));
      counts[r.result] = (counts[r.result] ?? 0) + 1;
      if (i < 3) assert.is(r.result, 'BADPIN', `attempt ${i + 1}`);
    }
    const ms = performance.now() - t0;
    assert.equal(counts, { BADPIN: 3, LOCKED: 9997 });
    assert.is(checked, 3, 'a locked device never reaches the PIN check');
    assert.ok(ms < 20_000, `took ${ms} ms`);
    console.log(`  10,000 sequential wrong PINs: ${Math.round(ms)} ms (${((ms * 1000) / 10_000).toFixed(0)} µs each)`);
    // the right PIN, while locked
    assert.is((await register(deps, req({ mac: A }))).result, 'LOCKED');
    assert.is(w.store.device(A)!.state, 'unprovisioned');
    assert.is(w.log.lines.filter((l) => l.includes('result=LOCKED')).length, 9998, 'every refused attempt reaches the security channel');
    assertNoPin(w.log.lines, [PIN]);
  } finally {
    w.cleanup();
  }
});

test('a burst of 1,000 concurrent guesses from one device checks at most 3 PINs (attempts are reserved before the check)', async () => {
  const w = world();
  try {
    let checked = 0;
    const deps: WorkflowDeps = {
      ...w.deps,
      verify: async () => {
        checked++;
        await new Promise((r) => setTimeout(r, 20)); // as slow as scrypt, so that they overlap
        return false;
      },
    };
    const rs = await Promise.all(Array.from({ length: 1000 }, (_, i) => register(deps, req({ mac: A, pin: String(200000 + i) }))));
    const counts: Record<string, number> = {};
    for (const r of rs) counts[r.result] = (counts[r.result] ?? 0) + 1;
    assert.is(checked, 3);
    assert.equal(counts, { BADPIN: 3, LOCKED: 997 });
    assert.ok(pinStore(w.store).lockedUntil(A, w.clock.t) > w.clock.t, 'locked afterwards');
  } finally {
    w.cleanup();
  }
});

// ------------------------------------------------------------------ extensions from pjsip.conf

const PJSIP = path.join(ROOT, 'test/fixtures/pjsip/pjsip.conf');

test('pjsip.conf endpoints become extensions with their auth user and password; md5 and trunks are left out with the reason', () => {
  const w = world();
  try {
    const conf = readPjsipConf(PJSIP);
    const { extensions, skipped } = pjsipExtensions(conf, w.config);
    const e101 = extensions.find((e) => e.number === '101')!;
    assert.equal({ tenant: e101.tenant, authUser: e101.authUser, secret: e101.secret, name: e101.name }, { tenant: 'default', authUser: '101', secret: 's3cr;et;42', name: 'Alice Smith' });
    const e102 = extensions.find((e) => e.number === '102')!;
    assert.equal([e102.authUser, e102.secret], ['bob102', 'a=b#c"d\'e x']);
    const why = Object.fromEntries(skipped.map((s) => [s.name, s.reason]));
    assert.match(why['103'], /md5.*hash.*password itself/);
    assert.match(why.trunk, /no inbound auth/);
    assert.not.ok(extensions.some((e) => e.number === '103' || e.number === 'trunk'));
  } finally {
    w.cleanup();
  }
});

test('an endpoint whose context names a tenant belongs to it; extensions.d wins over pjsip.conf; unprov accounts are never extensions', () => {
  const w = world();
  try {
    w.config.tenants.set('sales', { id: 'sales', name: 'Sales', file: '(test)', ipDnsMap: [] });
    const conf = readPjsipConf(PJSIP);
    const warnings = mergePjsipExtensions(w.config, conf);
    assert.is(w.config.extensions.get('sales/102')?.authUser, 'bob102', 'context = sales');
    assert.is(w.config.extensions.get('default/101')?.secret, 's3cr;et;42');
    assert.is(w.config.extensions.get('acme/101')?.secret, 'S3cr3t&<101>', 'extensions.d of acme untouched');
    assert.ok(warnings.some((x) => x.includes('#exec ignored')));
    // the accounts file apsd writes, included from pjsip.conf, adds no extension
    const accounts = pjsipAccounts([{ mac: A, account: 'unprov-805ec0000001', secret: 'Zx9-Zx9_Zx9' }], { context: 'aps-unprov', sipServer: '1.1.1.1' });
    const both = parsePjsip(accounts, '/etc/asterisk/aps-unprov.conf');
    const r = pjsipExtensions(both, w.config);
    assert.equal(r.extensions, []);
    assert.match(r.skipped[0].reason, /unprovisioned phone's account/);
  } finally {
    w.cleanup();
  }
});

test('a phone registers by PIN to an extension that only pjsip.conf defines, and its config carries that password', async () => {
  const w = world();
  try {
    mergePjsipExtensions(w.config, readPjsipConf(PJSIP));
    const r = await register(w.deps, req({ mac: A, extension: '104' }));
    assert.equal([r.result, r.tenant], ['OK', 'default']);
    assert.is((await register(w.deps, req({ mac: C, extension: '103' }))).result, 'OK', 'acme/103 from extensions.d (pjsip.conf 103 is md5)');
    const renderer = new Renderer({ registry, store: w.store, config: () => w.config, generation: () => 1 });
    const f = registry.get('yealink')!.compiledFiles.find((x) => x.spec.secrets)!;
    const body = renderer.renderUncached(f, undefined, w.store.device(A)).body.toString();
    assert.match(body, 'account.1.password = "quoted-secret"');
    assert.match(body, 'account.1.display_name = Reception, Front Desk');
    const rows = listExtensions(w.config, w.store, pjsipExtensions(readPjsipConf(PJSIP), w.config).skipped);
    const r104 = rows.find((x) => x.number === '104' && x.tenant === 'default')!;
    assert.equal(r104.holders, [{ mac: A, line: 1 }]);
    assert.match(rows.find((x) => x.number === '103' && x.unusable)!.unusable!, /md5/);
  } finally {
    w.cleanup();
  }
});

// ------------------------------------------------------------------ accounts and dialplan

test('every unprovisioned device has its own account and secret from the moment it exists; the pjsip text parses back', () => {
  const w = world();
  try {
    const p = pinStore(w.store);
    assert.is(p.ensureUnprovAccounts('unprov-'), 0, 'the accounts were made with the devices: nothing to do');
    const rows = p.unprovAccounts();
    assert.equal(rows.map((r) => r.account), ['unprov-000413000003', 'unprov-805ec0000001']);
    assert.is.not(rows[0].secret, rows[1].secret);
    assert.ok(rows.every((r) => /^[A-Za-z0-9_-]{24}$/.test(r.secret)));
    const text = pjsipAccounts(rows, { context: 'aps-unprov', sipServer: '1.1.1.1' });
    const conf = parsePjsip(text, 'aps-unprov.conf');
    assert.equal(conf.warnings, []);
    const eps = conf.endpoints();
    assert.equal(
      eps.map((e) => ({ name: e.name, context: e.context, user: e.authUser, password: e.password, cred: e.credential, cid: e.callerIdNumber })),
      rows.map((r) => ({ name: r.account, context: 'aps-unprov', user: r.account, password: r.secret, cred: 'password', cid: r.account })),
    );
    for (const r of rows) {
      assert.is(conf.find(r.account, 'aor')!.get('max_contacts'), '1');
      assert.equal(conf.find(r.account, 'endpoint')!.getAll('allow'), ['ulaw', 'alaw']);
    }
    // a prefix change renames the accounts and keeps their secrets
    const secret = rows[1].secret;
    assert.is(p.ensureUnprovAccounts('aps-'), 2);
    assert.is(p.account(A)!.account, 'aps-805ec0000001');
    assert.is(p.account(A)!.secret, secret);
  } finally {
    w.cleanup();
  }
});

/** Every line of the dialplan as Asterisk's pbx_config reads it: a comment, a [context], or exten => pattern,priority[(label)],App(args). */
function parseDialplan(text: string) {
  const lines: { pattern: string; prio: string; label?: string; app: string; args: string }[] = [];
  let context = '';
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (l === '' || l.startsWith(';')) continue;
    const ctx = /^\[([A-Za-z0-9_-]+)\]$/.exec(l);
    if (ctx) {
      context = ctx[1];
      continue;
    }
    const m = /^exten => (_?[^,]+),(1|n|\d+)(?:\(([A-Za-z0-9_]+)\))?,([A-Za-z]+)\((.*)\)$/.exec(l);
    assert.ok(m, `not a valid dialplan line: ${l}`);
    let depth = 0;
    for (const ch of m![5]) {
      depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
      assert.ok(depth >= 0, `unbalanced parentheses: ${l}`);
    }
    assert.is(depth, 0, `unbalanced parentheses: ${l}`);
    lines.push({ pattern: m![1], prio: m![2], label: m![3], app: m![4], args: m![5] });
  }
  return { context, lines };
}

/** Runs the `s` extension as Asterisk would for a given APS_RESULT; returns the applications run. */
function runDialplan(dp: ReturnType<typeof parseDialplan>, result: string, input = { PIN: '482913', EXTEN_WANTED: '101' }): string[] {
  const steps = dp.lines.filter((l) => l.pattern === 's');
  const vars: Record<string, string> = {};
  const ran: string[] = [];
  const labels = new Map(steps.map((s, i) => [s.label, i]));
  const expand = (s: string) => s.replace(/\$\{([A-Z_]+)\}/g, (_, k) => vars[k] ?? '');
  const cond = (expr: string) =>
    expand(expr)
      .replace(/^\$\[|\]$/g, '')
      .split('|')
      .some((c) => {
        const m = /^\s*"(.*)" = "(.*)"\s*$/.exec(c);
        assert.ok(m, `cannot evaluate ${expr}`);
        return m![1] === m![2];
      });
  for (let i = 0, n = 0; i < steps.length && n < 100; n++) {
    const { app, args } = steps[i];
    ran.push(`${app}(${expand(args)})`);
    if (app === 'Hangup') break;
    if (app === 'Read') vars[args.split(',')[0]] = input[args.split(',')[0] as 'PIN'];
    if (app === 'AGI') vars.APS_RESULT = result;
    if (app === 'Set' && /^[A-Z_]+=$/.test(args)) vars[args.slice(0, -1)] = '';
    if (app === 'Goto') {
      i = labels.get(args)!;
      assert.ok(i !== undefined, `no label ${args}`);
      continue;
    }
    if (app === 'GotoIf') {
      const [expr, label] = args.split('?');
      if (cond(expr)) {
        i = labels.get(label)!;
        assert.ok(i !== undefined, `no label ${label}`);
        continue;
      }
    }
    i++;
  }
  return ran;
}

test('apsctl pbx dialplan: every line is a valid exten line, the AGI URL is the configured one, and every result plays its prompt', () => {
  const text = asteriskDialplan({ context: 'aps-unprov', agiHost: '127.0.0.1', agiPort: 4573 });
  const dp = parseDialplan(text);
  assert.is(dp.context, 'aps-unprov');
  const patterns = new Set(dp.lines.map((l) => l.pattern));
  assert.ok(patterns.has('_[*#+0-9].') && patterns.has('_[*#+0-9]'), 'any number, one digit or more, with * # +');
  const agi = dp.lines.find((l) => l.app === 'AGI')!;
  assert.is(agi.args, 'agi://127.0.0.1:4573/register,${PIN},${EXTEN_WANTED}');
  assert.is(agiUrl('::1', 4573), 'agi://[::1]:4573/register');
  const plays = (r: string) => runDialplan(dp, r).filter((a) => a.startsWith('Playback'));
  assert.equal(plays('OK'), ['Playback(auth-thankyou)', 'Playback(vm-goodbye)']);
  assert.equal(plays('BADPIN'), ['Playback(auth-incorrect)', 'Playback(vm-goodbye)']);
  assert.equal(plays('LOCKED'), ['Playback(auth-incorrect)', 'Playback(vm-goodbye)']);
  assert.equal(plays('NOEXT'), ['Playback(invalid)', 'Playback(vm-goodbye)']);
  assert.equal(plays('TAKEN'), ['Playback(invalid)', 'Playback(vm-goodbye)']);
  assert.equal(plays('UNKNOWN'), ['Playback(vm-goodbye)']);
  assert.equal(plays(''), ['Playback(vm-goodbye)'], 'apsd unreachable: APS_RESULT empty');
  const ok = runDialplan(dp, 'OK');
  assert.equal(ok.slice(0, 1), ['Answer()']);
  assert.ok(ok.includes('AGI(agi://127.0.0.1:4573/register,482913,101)'));
  assert.is(ok[ok.length - 1], 'Hangup()');
  const nothing = runDialplan(dp, 'OK', { PIN: '', EXTEN_WANTED: '' });
  assert.not.ok(nothing.some((a) => a.startsWith('AGI')), 'no PIN keyed: apsd is not called');
});

// ------------------------------------------------------------------ the unprovisioned stage in every vendor's files

test('every vendor: an unprovisioned phone\'s files register line 1 as its unprov account, show UNPROV, carry no template secret, and match their golden files', () => {
  const w = world();
  try {
    const pins = pinStore(w.store);
    const renderer = new Renderer({ registry, store: w.store, config: () => w.config, generation: () => 1 });
    for (const v of registry.list()) {
      const mac = (v.ouis[0].toLowerCase() + 'd0d0d0') as Mac;
      const t = w.config.templates.get(`${v.id}-full`)!;
      w.store.addDevice({ mac, tenant: 'default', vendor: v.id, model: t.model, template: t.name, state: 'unprovisioned', source: 'dhcp' });
      w.store.db.prepare('UPDATE credentials SET password = ? WHERE mac = ?').run(`Dev1ce&Pass<${v.id}>`, mac);
      const acct = pins.unprovAccount(mac, 'unprov-').account;
      w.store.db.prepare('UPDATE unprov_accounts SET secret = ? WHERE mac = ?').run('UnpR0v-Secret_' + v.id, mac);
      const model = registry.model(v.id, t.model)!;
      let sawAccount = false;
      for (const cf of v.compiledFiles.filter((f) => f.scope === 'device' && fileFits(v, f.spec, model))) {
        const name = fileNameFor(cf.spec, mac, model.code);
        const body = renderer.renderUncached(cf, model, w.store.device(mac)).body.toString();
        for (const leak of ['Adm1n', 'Ld4p', 'S3cr3t', 'bobsecret']) assert.not.ok(body.includes(leak), `${v.id}/${name} carries ${leak}`);
        if (body.includes(`UnpR0v-Secret_${v.id}`)) {
          sawAccount = true;
          assert.ok(cf.spec.secrets, `${name} holds the unprov secret but is not flagged as holding secrets`);
          assert.ok(body.includes(acct) && body.includes('UNPROV'), `${v.id}/${name}: account and UNPROV`);
        }
        const golden = path.join(ROOT, 'test/golden', v.id, 'unprov', name);
        if (process.env.UPDATE_GOLDEN === '1' || !fs.existsSync(golden)) {
          fs.mkdirSync(path.dirname(golden), { recursive: true });
          fs.writeFileSync(golden, body);
          if (process.env.UPDATE_GOLDEN !== '1') assert.unreachable(`golden file ${golden} was missing and has been written: check it`);
        }
        assert.fixture(body, fs.readFileSync(golden, 'utf8'), `${v.id}/unprov/${name}`);
      }
      assert.ok(sawAccount, `${v.name}: some file registers the unprov account`);
    }
  } finally {
    w.cleanup();
  }
});

// ------------------------------------------------------------------ resync

function resyncDeps(w: World, extra: Partial<ResyncDeps> = {}): ResyncDeps {
  return { store: w.store, registry, config: () => w.config, log: w.log, timers: { t1: 20, t2: 80, timerF: 600 }, ...extra };
}

function lease(w: World, mac: Mac, ip: string): void {
  const now = Date.now();
  w.store.putLease({ mac, ip, interface: 'lo', source: 'test', expires_at: now + 60_000, seen_at: now });
}

test('after OK the phone at its lease address gets a well-formed NOTIFY with its vendor\'s event, to its unprov account', async () => {
  const w = world();
  const phone = await udpPhone();
  try {
    lease(w, A, '127.0.0.1');
    const deps: WorkflowDeps = { ...w.deps, resync: (mac, o) => resync(resyncDeps(w, { port: phone.port }), mac, o) };
    const r = await register(deps, req({ mac: A }));
    assert.is(r.result, 'OK');
    const out = await r.resync!;
    assert.equal({ ok: out!.ok, status: out!.status, event: out!.event, target: out!.target }, { ok: true, status: 200, event: 'check-sync', target: `127.0.0.1:${phone.port}` });
    const [n] = await phone.waitFor(1);
    assert.is(n.method, 'NOTIFY');
    assert.is(n.uri, `sip:unprov-805ec0000001@127.0.0.1:${phone.port}`, 'the phone is still registered as its unprov account');
    assert.is(getHeader(n, 'Event'), 'check-sync');
    assert.is(getHeader(n, 'Subscription-State'), 'terminated');
    assert.equal(parseCSeq(getHeader(n, 'CSeq')), { seq: 1, method: 'NOTIFY' });
    assert.match(getHeader(n, 'Via')!, /^SIP\/2\.0\/UDP [^;]+;branch=z9hG4bK/);
    assert.ok(getHeader(n, 'Call-ID') && getHeader(n, 'From')!.includes('tag='), 'Call-ID and From tag');
    assert.is(getHeader(n, 'Max-Forwards'), '70');
    assert.ok(w.log.lines.some((l) => /msg="resync sent" mac=805ec0000001 method=notify target=127\.0\.0\.1:\d+ event=check-sync status=200/.test(l)), w.log.lines.join('\n'));
  } finally {
    await phone.close();
    w.cleanup();
  }
});

test('resync uses the contact the PBX saw first, the vendor\'s reboot event on request, and logs a phone that never answers', async () => {
  const w = world();
  const phone = await udpPhone();
  const deaf = await udpPhone({ status: null });
  try {
    lease(w, C, '127.0.0.9');
    const o = await resync(resyncDeps(w), C, { reboot: true, contact: { host: '127.0.0.1', port: phone.port } });
    assert.is(o.ok, true);
    assert.is(getHeader((await phone.waitFor(1))[0], 'Event'), 'check-sync;reboot=true', 'snom reboot event');
    const plain = await resync(resyncDeps(w), C, { contact: { host: '127.0.0.1', port: phone.port } });
    assert.is(plain.event, 'check-sync;reboot=false');
    lease(w, A, '127.0.0.1');
    const t0 = Date.now();
    const lost = await resync(resyncDeps(w, { port: deaf.port }), A);
    assert.is(lost.ok, false);
    assert.match(lost.reason!, /Timer F/);
    assert.ok(deaf.requests.length >= 3, `retransmitted: ${deaf.requests.length} copies`);
    assert.ok(Date.now() - t0 < 3000);
    assert.ok(w.log.lines.some((l) => /level=warn msg="resync failed" mac=805ec0000001 method=notify/.test(l)));
    const nowhere = await resync(resyncDeps(w), '805ec0000002' as Mac);
    assert.equal([nowhere.ok, nowhere.reason], [false, 'no address known for the phone: no DHCP lease, no fetch seen, no SIP contact asked (no AMI login: [resync] ami_user, ami_secret)']);
    assert.equal(parseSipAddress('[fd00::5]:5062'), { host: 'fd00::5', port: 5062 });
    assert.is(parseSipAddress('10.0.0.5'), null);
  } finally {
    await phone.close();
    await deaf.close();
    w.cleanup();
  }
});

test('[resync] method = ami: the manager receives PJSIPNotify for the endpoint the phone is registered as, with Event', async () => {
  const w = world();
  const m = await fakeManager();
  try {
    Object.assign(w.config.settings.resync, { method: 'ami', amiHost: '127.0.0.1', amiPort: m.port, amiUser: 'aps', amiSecret: 'amipass' });
    const deps: WorkflowDeps = { ...w.deps, resync: (mac, o) => resync(resyncDeps(w), mac, o) };
    const r = await register(deps, req({ mac: C, extension: '103' }));
    assert.is(r.result, 'OK');
    assert.is((await r.resync!)!.ok, true);
    const again = await resync(resyncDeps(w), B, { reboot: true });
    assert.is(again.ok, true);
    assert.equal(m.recorded(), [
      [['Action', 'PJSIPNotify'], ['Endpoint', 'unprov-000413000003'], ['Variable', 'Event=check-sync;reboot=false']],
      [['Action', 'PJSIPNotify'], ['Endpoint', '102'], ['Variable', 'Event=check-sync;reboot=true']],
    ]);
    assert.not.ok(w.log.lines.join('\n').includes('amipass'), 'the AMI secret is in no log line');
    w.config.settings.resync.amiSecret = 'wrong';
    const refused = await resync(resyncDeps(w), B);
    assert.is(refused.ok, false);
    assert.match(refused.reason!, /login as "aps" refused/);
  } finally {
    await m.close();
    w.cleanup();
  }
});

test('[resync] method = none sends nothing and says so', async () => {
  const w = world();
  const phone = await udpPhone();
  try {
    w.config.settings.resync.method = 'none';
    lease(w, A, '127.0.0.1');
    const o = await resync(resyncDeps(w, { port: phone.port }), A);
    assert.equal([o.ok, o.method], [false, 'none']);
    await new Promise((r) => setTimeout(r, 100));
    assert.is(phone.requests.length, 0);
    assert.ok(w.log.lines.some((l) => l.includes('resync not sent: [resync] method = none')));
  } finally {
    await phone.close();
    w.cleanup();
  }
});

test.run();
