/**
 * Gigaset, Panasonic, AudioCodes and Alcatel-Lucent phones fetch their files from the real apsd
 * on loopback, in their boot order and letter case: curl with each phone's real User-Agent over
 * HTTP, tftp-hpa over TFTP. Common files come to anyone; a file with secrets only with proof
 * (the site's digest credentials, or over TFTP the DHCP lease of that MAC). A DECT base carries
 * every assigned line as its handset's account. The model families other than the fixture
 * device's render as their golden files.
 */
import { readTsv } from './support/samples.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { curl, startDaemon, type Daemon } from './support/daemon.js';
import { makeFixture } from './support/fixture-device.js';
import { GOLDEN_DIR } from './support/paths.js';
import { fileFits, fileNameFor, loadVendor, VendorDataError } from '../src/vendors/registry.js';
import { isApsError } from '../src/errors.js';
import { VENDORS_DIR } from './support/paths.js';
import type { Mac } from '../src/mac.js';

const CREDS = 'phones:Prov;Secret#1';
const UPDATE = process.env.UPDATE_GOLDEN === '1';
let d: Daemon;
let base: string;
let tmp: string;

/** One phone of the test: MAC, vendor, model, the User-Agent it sends (a real one), its lines. */
interface Phone {
  mac: string;
  vendor: string;
  model: string;
  ua?: string;
  lines: string[];
}

const PHONES: Record<string, Phone> = {
  n670: { mac: '589ec600c8a9', vendor: 'gigaset', model: 'N670', ua: 'Gigaset N670 IP PRO/83.V2.23.0+build.f68eeed;589EC600C8A9', lines: ['101', '102'] },
  n510: { mac: '7c2f804df9a9', vendor: 'gigaset', model: 'N510', ua: 'N510 IP PRO/42.245.00.000.000;7C2F804DF9A9', lines: ['201', '202'] },
  n720: { mac: '7c2f80ca21e4', vendor: 'gigaset', model: 'N720', ua: 'Gigaset N720 DM PRO/70.089.00.000.000;7C2F80CA21E4', lines: ['203', '204'] },
  ut113: { mac: '0080f0c8c381', vendor: 'panasonic', model: 'KX-UT113', ua: 'Panasonic_KX-UT113/01.133 (0080f0c8c381)', lines: ['205'] },
  tgp550: { mac: '0080f0000550', vendor: 'panasonic', model: 'KX-TGP550', lines: ['206', '207'] },
  hd440: { mac: '00908f602aac', vendor: 'audiocodes', model: '440HD', ua: 'AUDC-IPPhone/2.2.8.61 (440HDG-Rev0; 00908F602AAC)', lines: ['208'] },
  m3: { mac: '3c28a620089e', vendor: 'alcatel', model: 'M3', ua: 'ALE M3-CE 2.11.01.1604 3c28a620089e', lines: ['209'] },
  ale8028: { mac: '487a55023075', vendor: 'alcatel', model: '8028s', ua: 'ALE 8028s-GE 1.51.52.2204 487a55023075', lines: ['210'] },
  ip4028: { mac: '487a55004028', vendor: 'alcatel', model: '4028', ua: 'Alcatel IP Touch 4028/2.01.20', lines: ['211'] },
  ip800: { mac: '7465d1000800', vendor: 'alcatel', model: 'IP800', lines: ['212'] },
};

function ua(p: Phone): string[] {
  return p.ua ? ['-A', p.ua] : [];
}

function get(p: Phone, name: string, withCreds = false) {
  return curl([...ua(p), ...(withCreds ? ['--digest', '-u', CREDS] : []), `${base}/provisioning/${name}`]);
}

function tftpGet(name: string): { ok: boolean; body: string; out: string } {
  const out = path.join(tmp, `tftp-${name.replace(/\W/g, '_')}-${Math.random().toString(36).slice(2)}`);
  const r = spawnSync('tftp', ['127.0.0.1', String(d.tftpPort), '-m', 'binary', '-c', 'get', name, out], { encoding: 'utf8', timeout: 20_000, cwd: tmp });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const ok = fs.existsSync(out) && fs.statSync(out).size > 0 && !/Error code/.test(text);
  return { ok, body: ok ? fs.readFileSync(out, 'utf8') : '', out: text };
}

function lease(mac: string): void {
  const db = new Database(path.join(d.stateDir, 'aps.db'));
  const now = Date.now();
  db.prepare('INSERT OR REPLACE INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)').run(mac, '127.0.0.1', 'lo', 'test', now + 60_000, now);
  db.close();
}

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-twelve-'));
  d = await startDaemon({
    setup: (cfg) => {
      const ini = path.join(cfg, 'aps.ini');
      fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('tftp_secrets = lease', 'tftp_secrets = lease\nban_after = 1000'));
      // one extension per line of every phone here (an extension is on one line of one phone)
      const exts = Array.from({ length: 12 }, (_, i) => 201 + i).map((n) => `[${n}]\ntenant = acme\nsecret = "sec${n}&x"\nname = Ext ${n}\n`);
      fs.writeFileSync(path.join(cfg, 'extensions.d', 'twelve.ini'), exts.join('\n'));
    },
  });
  base = `http://${d.http}`;
  for (const p of Object.values(PHONES)) {
    const add = d.ctl('device', 'add', p.mac, '--tenant', 'acme', '--template', `${p.vendor}-full`, '--model', p.model, '--label', 'Reception');
    assert.is(add.status, 0, `${p.vendor} ${p.model}: ${add.stderr}`);
    p.lines.forEach((ext, i) => {
      const line = d.ctl('line', 'set', p.mac, String(i + 1), '--extension', ext, '--label', `Handset ${i + 1}`);
      assert.is(line.status, 0, `${p.model} line ${i + 1}: ${line.stderr}`);
    });
  }
});

test.after(async () => {
  if (d) {
    await d.stop();
    d.cleanup();
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------ Gigaset

test('a Gigaset N670 base: provisioning.xml is not there, so it falls back to its <MAC>.xml, which needs proof', () => {
  const p = PHONES.n670;
  assert.is(get(p, 'provisioning.xml').status, 404);
  const refused = get(p, '589EC600C8A9.xml');
  assert.is(refused.status, 401);
  assert.not.match(refused.body, /S3cr3t/);
});

test('a Gigaset N670 base with two handset lines carries both extensions and both secrets, handset 1 and handset 2', () => {
  const p = PHONES.n670;
  for (const name of ['589EC600C8A9.xml', '589ec600c8a9.xml']) {
    const r = get(p, name, true);
    assert.is(r.status, 200, `${name}: ${r.body}`);
    assert.ok(r.body.startsWith('<?xml version="1.0" encoding="UTF-8"?>'), r.body.slice(0, 60));
    assert.match(r.body, /<provisioning version="1.1" productID="e2">/);
    assert.match(r.body, /<oper name="add_hs" value="00001">/);
    assert.match(r.body, /<oper name="add_hs" value="00002">/);
    assert.match(r.body, /<param name="SipAccount.00001.UserName" value="101"\/>/);
    assert.match(r.body, /<param name="SipAccount.00001.AuthPassword" value="S3cr3t&amp;&lt;101&gt;"\/>/);
    assert.match(r.body, /<param name="SipAccount.00002.UserName" value="102"\/>/);
    assert.match(r.body, /<param name="SipAccount.00002.AuthPassword" value="bobsecret102"\/>/);
    assert.match(r.body, /SipProvider.0.Domain" value="pbx.acme.example"/);
  }
});

test('a Gigaset N510 gets its ProviderFrame with its own MAC; account 2 is the _2 items', () => {
  const r = get(PHONES.n510, '7C2F804DF9A9.xml', true);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /<MAC_ADDRESS value="7C2F804DF9A9"\/>/);
  assert.match(r.body, /BS_IP_Data1.aucS_SIP_USER_ID" class="symb_item" value='"201"'/);
  assert.match(r.body, /BS_IP_Data1.aucS_SIP_USER_ID_2" class="symb_item" value='"202"'/);
  assert.match(r.body, /BS_IP_Data1.aucS_SIP_PASSWORD_2" class="symb_item" value='"sec202&amp;x"'/);
  assert.match(r.body, /BS_IP_Data1.uiI_SIP_SERVER_PORT" class="symb_item" value="0x13ce"/, 'port 5070 in hex');
});

test('a Gigaset N720 DECT manager gets VoIP accounts 0 and 1 for handsets 1 and 2', () => {
  const r = get(PHONES.n720, '7C2F80CA21E4.xml', true);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /astVoipAccounts\[0\].aucS_SIP_USER_ID\[0\]" class="symb_item" value='"203"'/);
  assert.match(r.body, /astVoipAccounts\[1\].aucS_SIP_PASSWORD\[0\]" class="symb_item" value='"sec204&amp;x"'/);
});

test('over TFTP a Gigaset base gets its file only from the address that holds its DHCP lease', () => {
  assert.not.ok(tftpGet('589EC600C8A9.xml').ok, 'served without a lease');
  lease(PHONES.n670.mac);
  const r = tftpGet('589EC600C8A9.xml');
  assert.ok(r.ok, r.out);
  assert.match(r.body, /SipAccount.00002.AuthPassword" value="bobsecret102"/);
});

// ---------------------------------------------------------------------------------- Panasonic

test('a Panasonic KX-UT113 asks KX-UT113.cfg (free, CR LF, the 44-byte header) and then its Config<MAC>.cfg (with proof)', () => {
  const p = PHONES.ut113;
  const pre = get(p, 'KX-UT113.cfg');
  assert.is(pre.status, 200, pre.body);
  assert.ok(pre.body.startsWith('# Panasonic SIP Phone Standard Format File #\r\n'.slice(0, 44)), JSON.stringify(pre.body.slice(0, 50)));
  assert.match(pre.body, /\r\nCFG_STANDARD_FILE_PATH="http:\/\/pbx\.example\.net:8080\/provisioning\/Config\{MAC\}\.cfg"\r\n/);
  assert.not.match(pre.body.replace(/\r\n/g, ''), /\n/, 'every line ends in CR LF');
  assert.is(get(p, 'Config0080F0C8C381.cfg').status, 401);
  const r = get(p, 'Config0080F0C8C381.cfg', true);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /\r\nSIP_AUTHID_1="205"\r\nSIP_PASS_1="sec205&x"\r\n/);
  assert.match(r.body, /\r\nCFG_RESYNC_FROM_SIP="check-sync"\r\n/);
  assert.ok(r.body.endsWith('\r\n\r\n'), 'the file ends with an empty line');
});

test('a Panasonic KX-TGP550 DECT base rings and dials line N on handset N only', () => {
  const pre = get(PHONES.tgp550, 'KX-TGP550T04.cfg');
  assert.is(pre.status, 200, pre.body);
  assert.ok(pre.body.startsWith('# PCC Standard Format File #'), pre.body.slice(0, 40));
  const r = get(PHONES.tgp550, 'Config0080F0000550.cfg', true);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /SIP_PASS_2="sec207&x"/);
  assert.match(r.body, /INCOMING_CALL_GROUP_1="1,0,0,0,0,0,0"/);
  assert.match(r.body, /INCOMING_CALL_GROUP_2="0,1,0,0,0,0,0"/);
  assert.match(r.body, /OUTGOING_CALL_LINE_HS2="0,1,0,0,0,0"/);
});

test('over TFTP a Panasonic gets its pre-provisioning file freely and Config<MAC>.cfg with its lease', () => {
  assert.ok(tftpGet('KX-UT113.cfg').ok);
  assert.not.ok(tftpGet('Config0080F0C8C381.cfg').ok, 'served without a lease');
  lease(PHONES.ut113.mac);
  const r = tftpGet('Config0080F0C8C381.cfg');
  assert.ok(r.ok, r.out);
  assert.match(r.body, /SIP_PASS_1="sec205&x"/);
});

// --------------------------------------------------------------------------------- AudioCodes

test('an AudioCodes 440HD gets its <mac>.cfg with proof only; lines are 0-based', () => {
  const p = PHONES.hd440;
  assert.is(get(p, '00908f602aac.cfg').status, 401);
  const r = get(p, '00908f602aac.cfg', true);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /^system\/type=440HD$/m);
  assert.match(r.body, /^voip\/line\/0\/auth_password=sec208&x$/m);
  assert.match(r.body, /^provisioning\/configuration\/url=http:\/\/pbx\.acme\.example:8080\/provisioning\/$/m);
  assert.is(get(p, '00908F602AAC.cfg', true).status, 200, 'the upper-case name too');
});

test('over TFTP an AudioCodes gets its <mac>.cfg only with its lease', () => {
  assert.not.ok(tftpGet('00908f602aac.cfg').ok);
  lease(PHONES.hd440.mac);
  assert.match(tftpGet('00908f602aac.cfg').body, /voip\/line\/0\/id=208/);
});

// ----------------------------------------------------------------------------- Alcatel-Lucent

test('an ALE M3 asks config.M3.xml (free) and then config.<mac>.xml (with proof); the IP Touch files are none of its files', () => {
  const p = PHONES.m3;
  const common = get(p, 'config.M3.xml');
  assert.is(common.status, 200, common.body);
  assert.match(common.body, /<settings>/);
  assert.is(get(p, 'config.3c28a620089e.xml').status, 401);
  const r = get(p, 'config.3c28a620089e.xml', true);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /<setting id="Account1Password" value="sec209&amp;x" \/>/);
  assert.match(r.body, /<setting id="DeviceProvisionServerUsername" value="aps3c28a620089e" \/>/, 'its own provisioning credentials');
  assert.is(get(p, 'sipconfig-3c28a620089e.txt', true).status, 404);
});

test('an ALE 8028s-GE asks config.8028s-GE.xml and its config.<mac>.xml with SIPGroup settings', () => {
  const p = PHONES.ale8028;
  assert.is(get(p, 'config.8028s-GE.xml').status, 200);
  const r = get(p, 'config.487a55023075.xml', true);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /<setting id="SIPGroup1AuthenticationPassword" value="sec210&amp;x" override="true"\/>/);
});

test('an IP Touch 4028 in SIP mode fetches lanpbx.cfg, sipconfig.txt and its sipconfig-<mac>.txt over TFTP', () => {
  const lan = tftpGet('lanpbx.cfg');
  assert.ok(lan.ok, lan.out);
  assert.is(lan.body, 'APPLICATION_TYPE=APPL_SIP\n');
  assert.match(tftpGet('sipconfig.txt').body, /\[admin\]\nconfig_polling_timer=1440/);
  assert.not.ok(tftpGet('sipconfig-487a55004028.txt').ok, 'served without a lease');
  lease(PHONES.ip4028.mac);
  const r = tftpGet('sipconfig-487a55004028.txt');
  assert.ok(r.ok, r.out);
  assert.match(r.body, /\nauthentication_password=sec211&x\n/);
  assert.match(r.body, /\nspeed_dial_3_uri=\*97\n/);
  assert.is(curl([...ua(PHONES.ip4028), '--digest', '-u', CREDS, `${base}/sipconfig-487a55004028.txt`]).status, 200, 'and over HTTP');
});

test('an Alcatel Temporis IP800 gets its <mac>.cfg with an [ account ] block per line', () => {
  const r = get(PHONES.ip800, '7465d1000800.cfg', true);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /\[ account \]\npath = \/config\/voip\/sipAccount0\.cfg\nEnable = 1\n/);
  assert.match(r.body, /\npassword = sec212&x\n/);
});

// ------------------------------------------------------------------------------- DECT bases

test('every DECT base in the catalogue says how many handsets it takes, with no more lines than handsets', () => {
  const fx = makeFixture();
  try {
    const bases = fx.registry.list().flatMap((v) => v.models.filter((m) => m.handsets !== undefined).map((m) => ({ v: v.id, m })));
    const ids = bases.map((b) => `${b.v}/${b.m.id}`);
    for (const id of ['gigaset/N510', 'gigaset/N670', 'gigaset/N720', 'gigaset/N870', 'panasonic/KX-TGP550', 'yealink/W52P', 'yealink/W60B', 'yealink/W90DM', 'snom/M300', 'snom/M900']) {
      if (fx.registry.get(id.split('/')[0])) assert.ok(ids.includes(id), `${id} is not marked as a DECT base`);
    }
    for (const b of bases) assert.ok(b.m.lines <= b.m.handsets!, `${b.v}/${b.m.id}: ${b.m.lines} lines for ${b.m.handsets} handsets`);
    assert.is(fx.registry.model('gigaset', 'N870')!.handsets, 250);
    assert.is(fx.registry.model('yealink', 'W52P')?.handsets ?? 5, 5);
  } finally {
    fx.cleanup();
  }
});

test('vendor data with a base of more lines than handsets, an unknown family or an unknown lacked setting is refused with file and field', () => {
  const cases: [(d: Record<string, any>) => void, RegExp][] = [
    [(d) => { d.models.find((m: { id: string }) => m.id === 'N670').lines = 30; }, /^models\[\d+\]\.lines$/],
    [(d) => { d.models[0].family = 'nope'; }, /^models\[0\]\.family$/],
    [(d) => { d.families.nx70.unsupported.push('phone.colour'); }, /^families\.nx70\.unsupported\[\d+\]$/],
    [(d) => { d.files[0].families = ['nope']; }, /^files\[0\]\.families\[0\]$/],
  ];
  for (const [change, key] of cases) {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'aps-vendor-')), 'gigaset');
    fs.cpSync(path.join(VENDORS_DIR, 'gigaset'), dir, { recursive: true });
    const data = JSON.parse(fs.readFileSync(path.join(dir, 'vendor.json'), 'utf8'));
    change(data);
    fs.writeFileSync(path.join(dir, 'vendor.json'), JSON.stringify(data));
    try {
      loadVendor(dir);
      assert.unreachable('accepted');
    } catch (e) {
      if (!isApsError(e)) throw e;
      assert.is(e.code, 'APS_ERR_VENDOR');
      const problems = e instanceof VendorDataError ? e.problems : [e];
      assert.ok(problems.some((x) => key.test(String(x.context.key)) && /gigaset\/vendor\.json$/.test(String(x.context.file))), e.message);
    } finally {
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  }
});

// ------------------------------------------------------------------------------ peer samples


for (const id of ['gigaset', 'panasonic', 'audiocodes', 'alcatel']) {
  test(`${id}: every OUI sample identifies to it, and every file name its phones ask for is served or refused on purpose (named in the README)`, () => {
    const fx = makeFixture();
    try {
      const v = fx.registry.get(id)!;
      for (const s of readTsv(path.join(v.dir, 'samples/ouis.tsv'))) {
        assert.equal(fx.registry.identify({ mac: (s.oui + '123456') as Mac }).map((i) => i.vendor), [id], s.oui);
      }
      const readme = fs.readFileSync(path.join(v.dir, 'README.md'), 'utf8');
      const at = readme.indexOf('## Files asked for at boot that aps refuses on purpose');
      assert.ok(at >= 0, 'README has no section on refused files');
      const mac = v.ouis[0] + 'a1b2c3';
      for (const s of readTsv(path.join(v.dir, 'samples/filenames.tsv'))) {
        const name = s.filename.replace('{mac}', mac).replace('{MAC}', mac.toUpperCase());
        const served = fx.registry.matchFile(name).some((m) => m.file.vendor.id === id);
        const refused = (v.refused ?? []).some((r) => r.name === s.filename);
        assert.ok(served !== refused, `${s.filename}: served ${served}, refused ${refused}`);
        if (refused) assert.ok(readme.slice(at).includes('`' + s.filename + '`'), `${s.filename} is refused but the README does not name it`);
      }
    } finally {
      fx.cleanup();
    }
  });
}

// ------------------------------------------------------------------------ every phone, every file

test('every phone here gets every file its model asks for, in boot order, over HTTP (its User-Agent) and over TFTP (its lease)', () => {
  const fx = makeFixture();
  try {
    for (const p of Object.values(PHONES)) {
      const v = fx.registry.get(p.vendor)!;
      const m = fx.registry.model(p.vendor, p.model)!;
      lease(p.mac);
      for (const cf of v.compiledFiles.filter((c) => fileFits(v, c.spec, m))) {
        const name = fileNameFor(cf.spec, p.mac as Mac, m.code);
        const h = get(p, name, cf.spec.secrets);
        assert.is(h.status, 200, `${p.model} ${name} over HTTP: ${h.body}`);
        const t = tftpGet(name);
        assert.ok(t.ok, `${p.model} ${name} over TFTP: ${t.out}`);
        assert.is(t.body, h.body, `${p.model} ${name}: TFTP and HTTP give the same bytes`);
        if (cf.spec.secrets) assert.ok(h.body.includes(`sec${p.lines[0]}&`) || h.body.includes('S3cr3t') || h.body.includes('sec' + p.lines[0] + '&amp;'), `${p.model} ${name} carries its line's secret`);
      }
    }
  } finally {
    fx.cleanup();
  }
});

// ------------------------------------------------------------------- every family as its golden file

const OTHER_FAMILIES: { vendor: string; model: string }[] = [
  { vendor: 'gigaset', model: 'N510' },
  { vendor: 'gigaset', model: 'N720' },
  { vendor: 'panasonic', model: 'KX-TGP550' },
  { vendor: 'alcatel', model: '8028s' },
  { vendor: 'alcatel', model: '4028' },
  { vendor: 'alcatel', model: 'IP800' },
];

test('each model family renders every file it asks for exactly as its golden file, with line 1 and handset 2', () => {
  const fx = makeFixture();
  try {
    OTHER_FAMILIES.forEach(({ vendor, model }, i) => {
      const v = fx.registry.get(vendor)!;
      const m = fx.registry.model(vendor, model)!;
      const mac = (v.ouis[0] + 'f0f0' + String(i).padStart(2, '0')) as Mac;
      fx.store.addDevice({ mac, tenant: 'acme', vendor, model: m.id, template: `${vendor}-full`, label: 'Reception' });
      fx.store.setLine({ mac, idx: 1, extension: '101', label: 'Alice', cid_source: 'pai-from', local_port: '5062', srtp: true });
      if (m.lines > 1) fx.store.setLine({ mac, idx: 2, extension: '102', label: 'Bob', cid_source: 'from', local_port: '', srtp: false });
      fx.store.db.prepare('UPDATE credentials SET password = ? WHERE mac = ?').run('Dev1ce&Pass<' + vendor + '>', mac);
      const device = fx.store.device(mac)!;
      for (const cf of v.compiledFiles.filter((c) => fileFits(v, c.spec, m))) {
        const name = fileNameFor(cf.spec, mac, m.code);
        const match = fx.registry.matchFile(name).find((x) => x.file.spec === cf.spec)!;
        const r = fx.renderer.render(match, cf.scope === 'device' ? device : undefined);
        const golden = path.join(GOLDEN_DIR, vendor, m.id, name);
        if (UPDATE || !fs.existsSync(golden)) {
          fs.mkdirSync(path.dirname(golden), { recursive: true });
          fs.writeFileSync(golden, r.body);
          if (!UPDATE) assert.unreachable(`golden file ${golden} was missing and has been written: check it and commit it`);
        }
        assert.fixture(r.body.toString('utf8'), fs.readFileSync(golden, 'utf8'), `${vendor}/${m.id}/${name}`);
        // left out by design: what the family lacks, and the fixture's keys beyond a smaller model's
        assert.equal(r.warnings.filter((w) => !/has no "[^"]+" key: left out|is beyond the \d+ keys of/.test(w)), [], `${vendor}/${m.id}/${name} warnings`);
        if (cf.spec.format === 'xml') {
          const x = spawnSync('xmllint', ['--noout', '-'], { input: r.body, encoding: 'utf8' });
          assert.is(x.status, 0, `${name} is not well-formed XML: ${x.stderr}`);
        }
        if (cf.scope === 'device' && m.lines > 1) assert.ok(r.body.includes('bobsecret102'), `${vendor}/${m.id}/${name}: line 2 is missing`);
      }
    });
  } finally {
    fx.cleanup();
  }
});

test.run();
