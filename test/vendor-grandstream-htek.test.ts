/**
 * Grandstream and Htek phones against the real apsd: curl with the phones' own User-Agents and
 * tftp-hpa fetch every file in the order the firmware asks for it, the file with secrets only
 * with proof, the proprietary binary file answered "not found" so the phone moves on, the
 * unprovisioned stage with nothing of value, and unknown MACs of each vendor refused without
 * secrets.
 */
import { readTsv } from './support/samples.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { startDaemon, curl, run, type Daemon } from './support/daemon.js';
import { Store } from '../src/store/index.js';
import { VendorRegistry, refusedBy } from '../src/vendors/registry.js';
import { parseMac } from '../src/mac.js';
import { VENDORS_DIR } from './support/paths.js';
import type { Mac } from '../src/mac.js';

const SITE = 'phones:Prov;Secret#1';
const GS = '000b82a1b2c3' as Mac; // Grandstream GXP2170, provisioned, template grandstream-full
const GS_NEW = 'c074ad0b63ee' as Mac; // Grandstream GRP2614, unprovisioned
const GS_UNKNOWN = 'ec74d7ffffff';
const ATA = 'c074ad273a10' as Mac; // Grandstream HT801, provisioned, no template (built-in defaults)
const HT = '001fc1a1b2c3' as Mac; // Htek UC926, provisioned, template htek-full
const HT_NEW = '001fc11c22a9' as Mac; // Htek UC903, unprovisioned
const HT_UNKNOWN = '001fc1ffffff';
const UA = {
  gs: `Grandstream Model HW GXP2170 SW 1.0.11.79 DevId ${GS}`,
  gsNew: `Grandstream Model HW GRP2614 SW 1.0.5.15 DevId ${GS_NEW}`,
  gsUnknown: `Grandstream Model HW GXP2135 SW 1.0.7.97 DevId ${GS_UNKNOWN}`,
  ata: `Grandstream Model HW HT801 V1.1A SW 1.0.17.5 DevId ${ATA}`,
  ht: 'Htek UC926 2.0.4.2 00:1f:c1:a1:b2:c3',
  htNew: 'Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9',
  htUnknown: 'Htek UC926 2.0.4.2 00:1f:c1:ff:ff:ff',
};
let d: Daemon;
let base: string;
let tmp: string;

function get(name: string, ua: string, auth?: string) {
  return curl(['-A', ua, ...(auth ? ['--digest', '-u', auth] : []), `${base}/provisioning/${name}`]);
}

function tftpGet(name: string) {
  const out = path.join(tmp, `tftp-${Math.random().toString(36).slice(2)}`);
  const r = run('tftp', ['127.0.0.1', String(d.tftpPort), '-m', 'binary', '-c', 'get', name, out], { timeout: 15_000 });
  const body = fs.existsSync(out) && fs.statSync(out).size > 0 ? fs.readFileSync(out, 'utf8') : null;
  return { body, out: r.text + r.stderr };
}

function wellFormed(xml: string, what: string) {
  const f = path.join(tmp, `x-${Math.random().toString(36).slice(2)}.xml`);
  fs.writeFileSync(f, xml);
  const r = run('xmllint', ['--noout', f]);
  assert.is(r.status, 0, `${what} is not well-formed XML: ${r.stderr}`);
}

function lease(mac: string) {
  const db = new Database(path.join(d.stateDir, 'aps.db'));
  const now = Date.now();
  db.prepare('INSERT OR REPLACE INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)').run(mac, '127.0.0.1', 'lo', 'test', now + 60_000, now);
  db.close();
}

function deviceCreds(mac: string): string {
  const db = new Database(path.join(d.stateDir, 'aps.db'), { readonly: true });
  const row = db.prepare('SELECT username, password FROM credentials WHERE mac = ?').get(mac) as { username: string; password: string };
  db.close();
  return `${row.username}:${row.password}`;
}

const registry = VendorRegistry.load(VENDORS_DIR);


/** Rows of /work/shared/peer-samples/*.tsv per vendor: the copies must all be in vendors/<id>/samples. */
const PEER_ROWS: Record<string, { ua: number; oui: number; fn: number }> = {
  grandstream: { ua: 10, oui: 3, fn: 1 },
  htek: { ua: 2, oui: 1, fn: 21 },
};

for (const id of Object.keys(PEER_ROWS)) {
  const v = registry.get(id)!;
  const dir = path.join(v.dir, 'samples');
  const peers = (rows: Record<string, string>[]) => rows.filter((r) => /^(wazo-platform|fusionpbx)\//.test(r.source ?? ''));

  test(`${v.name}: every peer-sample row of the vendor is in vendors/${id}/samples, and every OUI sample identifies to ${v.name}`, () => {
    assert.is(peers(readTsv(path.join(dir, 'user-agents.tsv'))).length, PEER_ROWS[id].ua, 'User-Agent rows');
    assert.is(peers(readTsv(path.join(dir, 'ouis.tsv'))).length, PEER_ROWS[id].oui, 'OUI rows');
    assert.is(peers(readTsv(path.join(dir, 'filenames.tsv'))).length, PEER_ROWS[id].fn, 'file-name rows');
    for (const s of readTsv(path.join(dir, 'ouis.tsv'))) {
      assert.equal(registry.identify({ mac: parseMac(s.oui + '123456')! }).map((i) => i.vendor), [id], s.oui);
    }
  });

  test(`${v.name}: every file name its phones ask for is served, or refused on purpose with the reason in the README`, () => {
    const readme = fs.readFileSync(path.join(v.dir, 'README.md'), 'utf8');
    const at = readme.indexOf('## Files asked for at boot that aps refuses on purpose');
    assert.ok(at >= 0, 'README has no section on refused files');
    const section = readme.slice(at, readme.indexOf('\n## ', at + 4) >>> 0);
    const code = v.models.find((m) => m.code)!.code!;
    const mac = v.ouis[0] + 'a1b2c3';
    for (const s of readTsv(path.join(dir, 'filenames.tsv'))) {
      const name = s.filename.replace('{mac}', mac).replace('{MAC}', mac.toUpperCase()).replace('{model}', code);
      const served = registry.matchFile(name).some((m) => m.file.vendor.id === id);
      const refused = refusedBy(registry, name).some((r) => r.vendor.id === id);
      assert.ok(served !== refused, `${s.filename} (${name}): served ${served}, refused ${refused}`);
    }
    for (const r of v.refused ?? []) assert.ok(section.includes('`' + r.name.replace('{mac}', '<mac>') + '`'), `${r.name} is refused but not in the README section`);
  });
}

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-gs-htek-'));
  d = await startDaemon({
    setup: (_configDir, stateDir) => {
      const store = Store.open(stateDir);
      store.addDevice({ mac: GS, tenant: 'acme', vendor: 'grandstream', model: 'GXP2170', template: 'grandstream-full', label: 'Reception' });
      store.setLine({ mac: GS, idx: 1, extension: '101', label: 'Alice', cid_source: 'from', local_port: '5062', srtp: false });
      store.addDevice({ mac: GS_NEW, tenant: 'acme', vendor: 'grandstream', model: 'GRP2614', template: 'grandstream-full', state: 'unprovisioned', source: 'dhcp' });
      store.addDevice({ mac: ATA, tenant: 'acme', vendor: 'grandstream', model: 'HT801', template: null, label: 'Fax' });
      store.setLine({ mac: ATA, idx: 1, extension: '102', label: '', cid_source: 'from', local_port: '', srtp: false });
      store.addDevice({ mac: HT, tenant: 'acme', vendor: 'htek', model: 'UC926', template: 'htek-full', label: 'Desk' });
      store.setLine({ mac: HT, idx: 1, extension: '101', label: 'Alice', cid_source: 'from', local_port: '', srtp: false });
      store.addDevice({ mac: HT_NEW, tenant: 'acme', vendor: 'htek', model: 'UC903', template: 'htek-full', state: 'unprovisioned', source: 'dhcp' });
      store.close();
    },
  });
  base = `http://${d.http}`;
});

test.after(async () => {
  if (d) {
    await d.stop();
    d.cleanup();
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('a Grandstream GXP2170 boots over HTTP: cfg<mac> not found, cfg<mac>.xml only with digest proof, then its model and generic files', () => {
  // 1. the proprietary binary file: not made by aps, so not found, and the phone goes on
  assert.is(get(`cfg${GS}`, UA.gs).status, 404);
  // 2. the device file: a challenge without proof, the config with it
  const refused = get(`cfg${GS}.xml`, UA.gs);
  assert.is(refused.status, 401);
  assert.not.match(refused.body, /S3cr3t/);
  const r = get(`cfg${GS}.xml`, UA.gs, SITE);
  assert.is(r.status, 200, r.body);
  wellFormed(r.body, `cfg${GS}.xml`);
  assert.match(r.body, /<gs_provision version="1">/);
  assert.match(r.body, new RegExp(`<mac>${GS}</mac>`));
  assert.match(r.body, /<P47>pbx\.acme\.example:5070<\/P47>/);
  assert.match(r.body, /<P35>101<\/P35>/);
  assert.match(r.body, /<P34>S3cr3t&amp;&lt;101&gt;<\/P34>/);
  assert.match(r.body, /<P1365>11<\/P1365>\s*<P1366>0<\/P1366>\s*<P1467>Bob<\/P1467>\s*<P1468>102<\/P1468>/, 'BLF on line key 2');
  assert.match(r.body, /<P23804>11<\/P23804>/, 'BLF on fixed VPK 8 (second block)');
  assert.match(r.body, /<P23824>-1<\/P23824>[\s\S]*<P23828>1<\/P23828>/, 'dynamic VPK 13 written as none, so that the BLF on VPK 14 is kept');
  assert.match(r.body, /<P26015>1<\/P26015>/, 'Allow SIP Reset, so the phone acts on check-sync');
  assert.match(r.body, /<P23000>1<\/P23000>\s*<P23001>0<\/P23001>\s*<P23002>Carol<\/P23002>/, 'BLF on extension board key 1');
  assert.match(r.body, /<P1569>224\.0\.1\.116:10000<\/P1569>/, 'multicast paging group 1');
  assert.match(r.body, /<P64>CET-1CEST-2,M3\.5\.0\/02:00:00,M10\.5\.0\/03:00:00<\/P64>/, 'Europe/Paris as Grandstream time zone');
  assert.match(r.body, /<P1360>aps000b82a1b2c3<\/P1360>/, 'its own provisioning user');
  // the phone's own credentials work as well as the site's
  assert.is(get(`cfg${GS}.xml`, UA.gs, deviceCreds(GS)).status, 200);
  // 3./4. the model file (lower case) and the generic file: no account, no secrets
  for (const name of ['cfggxp2170.xml', 'cfg.xml']) {
    const c = get(name, UA.gs);
    assert.is(c.status, 200, `${name}: ${c.body}`);
    wellFormed(c.body, name);
    assert.match(c.body, /<P237>/);
    assert.not.match(c.body, /S3cr3t|Adm1n|Ld4p|Dev1ce|<P34>|<P1361>/);
  }
});

test('an HT801 ATA gets its port-1 account, and no Allow SIP Reset (on the ATA that P-value is a factory reset)', () => {
  assert.is(get(`cfg${ATA}`, UA.ata).status, 404);
  const r = get(`cfg${ATA}.xml`, UA.ata, deviceCreds(ATA));
  assert.is(r.status, 200, r.body);
  wellFormed(r.body, `cfg${ATA}.xml`);
  assert.match(r.body, /<P271>1<\/P271>/);
  assert.match(r.body, /<P35>102<\/P35>/);
  assert.not.match(r.body, /<P26015>/);
  assert.is(get('cfg.xml', UA.ata).status, 200, 'the ATA falls back to the generic file');
});

test('an Htek UC926 boots over HTTP: cfg0010.xml, cfg<mac> not found, then cfg<mac>.xml only with digest proof', () => {
  const c = get('cfg0010.xml', UA.ht);
  assert.is(c.status, 200, c.body);
  wellFormed(c.body, 'cfg0010.xml');
  assert.match(c.body, /<hl_provision version="1">/);
  assert.match(c.body, /<P237 para="FirmwareUpGrade.ConfigServerPath">http:\/\/pbx\.example\.net:8080\/provisioning\/<\/P237>/);
  assert.not.match(c.body, /S3cr3t|Adm1n|Ld4p|Dev1ce/);
  assert.is(get(`cfg${HT}`, UA.ht).status, 404);
  const refused = get(`cfg${HT}.xml`, UA.ht);
  assert.is(refused.status, 401);
  assert.not.match(refused.body, /S3cr3t/);
  const r = get(`cfg${HT}.xml`, UA.ht, deviceCreds(HT));
  assert.is(r.status, 200, r.body);
  wellFormed(r.body, `cfg${HT}.xml`);
  assert.match(r.body, /<P47 para="Profile1_Sipserver">pbx\.acme\.example:5070<\/P47>/);
  assert.match(r.body, /<P34 para="Account1_AuthenticatePassword">S3cr3t&amp;&lt;101&gt;<\/P34>/);
  assert.match(r.body, /<P41201 para="LineKey2_Type">3<\/P41201>/, 'BLF on line key 2');
  assert.match(r.body, /<P20200 para="LineKey5_Type">8<\/P20200>/, 'park on line key 5 (second P-value block)');
  assert.match(r.body, /<P24012 para="RemoteControl.Sipnotify">1<\/P24012>/, 'accepts the check-sync NOTIFY');
  assert.match(r.body, /<P60000 para="Exp1_Key1.KeyType">3<\/P60000>/, 'BLF on expansion module 1 key 1');
  assert.match(r.body, /<P60100 para="Exp1_Key21.KeyType">2<\/P60100>/, 'speed dial on module 1 key 21 (its second page)');
  assert.match(r.body, /<P64 para="Preference_TimeZone">49<\/P64>/, 'UTC+1 as Htek time-zone index');
});

test('every file of both vendors comes over TFTP in boot order; the secret file needs the lease', () => {
  // no lease yet: the device files are refused (error 2), the binary file is not found (error 1)
  for (const mac of [GS, HT]) {
    assert.match(tftpGet(`cfg${mac}`).out, /Error code 1/i);
    const r = tftpGet(`cfg${mac}.xml`);
    assert.match(r.out, /Error code 2/i);
    assert.ok(!r.body || !r.body.includes('S3cr3t'));
  }
  for (const name of ['cfggxp2170.xml', 'cfg.xml', 'cfg0010.xml']) {
    const r = tftpGet(name);
    assert.ok(r.body, `${name}: ${r.out}`);
    assert.is(r.body, get(name, UA.gs).body, `${name} over TFTP is what HTTP gives`);
  }
  for (const mac of [GS, HT]) {
    lease(mac);
    const r = tftpGet(`cfg${mac}.xml`);
    assert.ok(r.body, r.out);
    wellFormed(r.body!, `cfg${mac}.xml over TFTP`);
    assert.match(r.body!, /S3cr3t/);
  }
});

test('an unprovisioned GRP2614 and UC903 get their own unprov account labelled UNPROV and nothing else of value', () => {
  for (const [mac, ua] of [[GS_NEW, UA.gsNew], [HT_NEW, UA.htNew]] as const) {
    const r = get(`cfg${mac}.xml`, ua, deviceCreds(mac));
    assert.is(r.status, 200, r.body);
    wellFormed(r.body, `cfg${mac}.xml`);
    assert.match(r.body, /UNPROV/);
    assert.not.match(r.body, /S3cr3t|Adm1n|Ld4p|acme101|Bob|224\.0\.1\.116/, 'no template line, key, password, LDAP or paging');
    assert.not.match(r.body, /<P2>|<P2 para/, 'no admin password');
  }
  const gs = get(`cfg${GS_NEW}.xml`, UA.gsNew, deviceCreds(GS_NEW)).body;
  assert.match(gs, /<P270>UNPROV<\/P270>/);
  assert.not.match(gs, /<P1363>/, 'no line keys');
  const ht = get(`cfg${HT_NEW}.xml`, UA.htNew, deviceCreds(HT_NEW)).body;
  assert.match(ht, /<P20000 para="Account1_Label">UNPROV<\/P20000>/);
  assert.not.match(ht, /<P41200/, 'no line keys');
});

test('an unknown MAC of each vendor asking for its device file over HTTP is refused, learns no secret, and becomes a sighting naming its vendor and model', async () => {
  for (const [mac, ua, vendor] of [[GS_UNKNOWN, UA.gsUnknown, 'grandstream'], [HT_UNKNOWN, UA.htUnknown, 'htek']] as const) {
    const none = get(`cfg${mac}.xml`, ua);
    assert.is(none.status, 401, 'the same challenge as for a known MAC');
    assert.not.match(none.body, /S3cr3t|Adm1n|Ld4p|Dev1ce|<P34/);
    // the fetch is a sighting under the [discovery] rules (auto_create is on in the fixture): an unprovisioned phone of that vendor
    let seen: { mac: string; vendor: string; model: string | null; status: string } | undefined;
    for (let i = 0; i < 100 && !seen; i++) {
      const list = JSON.parse(d.ctl('--json', 'sighting', 'list').stdout) as { mac: string; vendor: string; model: string | null; status: string }[];
      seen = list.find((x) => x.mac === mac);
      if (!seen) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(seen, `no sighting of ${mac}`);
    assert.is(seen!.vendor, vendor);
    assert.ok(seen!.model, 'the User-Agent names the model');
    const site = get(`cfg${mac}.xml`, ua, SITE);
    assert.is(site.status, 200, 'now an unprovisioned device: its own unprov account, nothing of value');
    assert.not.match(site.body, /S3cr3t|Adm1n|Ld4p|Dev1ce/);
  }
});

test('apsctl render shows what the templates ask for and the vendors cannot take, as left-out warnings', () => {
  const r = d.ctl('render', GS);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /phone\.tone_country: Grandstream has no "tone_country" key: left out/);
  assert.match(r.stderr, /phone\.dial_plan: Grandstream has no "dial_plan" key: left out/);
  assert.match(r.stderr, /DSS key 7: Grandstream has no "url" key: left out/);
  assert.match(r.stderr, /programmable key 1: Grandstream GXP2170 has no "progkey" key: left out/);
  const h = d.ctl('render', HT);
  assert.is(h.status, 0, h.stderr);
  assert.match(h.stderr, /phone\.dial_plan: Htek has no "dial_plan" key: left out/);
  assert.not.match(h.stderr, /"paging"/);
});

test.run();
