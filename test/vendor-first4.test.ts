/**
 * The first four vendors completed (Yealink, Polycom, Snom, Aastra/Mitel): every peer-sample row
 * of theirs (copied into vendors/<id>/samples with its source) identifies to the right vendor
 * and model; every file name their phones ask for is served or refused on purpose with a reason
 * in the README; the model files of the older models name their model. Then the real apsd
 * answers each new file to curl (with the phone's own User-Agent) and to tftp-hpa, and gives
 * the refused ones a 404 / TFTP error 1.
 */
import { readTsv } from './support/samples.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VendorRegistry, fileNameFor, modelKey, refusedBy } from '../src/vendors/registry.js';
import { parseMac } from '../src/mac.js';
import { startDaemon, curl, run, type Daemon } from './support/daemon.js';
import { VENDORS_DIR } from './support/paths.js';

const registry = VendorRegistry.load(VENDORS_DIR);
const CREDS = 'phones:Prov;Secret#1';

const fromPeers = (rows: Record<string, string>[]) => rows.filter((r) => /^(wazo-platform|fusionpbx)\//.test(r.source ?? ''));

/** Rows of /work/shared/peer-samples/*.tsv per vendor (README there): the copies must all be here. */
const PEER_ROWS: Record<string, { ua: number; vc: number; oui: number; fn: number }> = {
  yealink: { ua: 53, vc: 0, oui: 12, fn: 11 },
  polycom: { ua: 8, vc: 0, oui: 4, fn: 11 },
  snom: { ua: 13, vc: 33, oui: 2, fn: 5 },
  aastra: { ua: 13, vc: 22, oui: 3, fn: 1 },
};

for (const id of Object.keys(PEER_ROWS)) {
  const v = registry.get(id)!;
  const dir = path.join(v.dir, 'samples');
  const ua = readTsv(path.join(dir, 'user-agents.tsv'));
  const vc = readTsv(path.join(dir, 'dhcp-classes.tsv'));
  const ouis = readTsv(path.join(dir, 'ouis.tsv'));
  const names = readTsv(path.join(dir, 'filenames.tsv'));

  test(`${v.name}: every peer-sample row of the vendor is copied into vendors/${id}/samples with its source`, () => {
    const want = PEER_ROWS[id];
    assert.is(fromPeers(ua).length, want.ua, 'User-Agent rows');
    assert.is(fromPeers(vc).length, want.vc, 'DHCP vendor-class rows');
    assert.is(fromPeers(ouis).length, want.oui, 'OUI rows');
    assert.is(fromPeers(names).length, want.fn, 'file-name rows');
  });

  test(`${v.name}: every User-Agent sample names ${v.name}, its model (or none when the UA has none) and its MAC`, () => {
    for (const s of ua) {
      const ids = registry.identify({ userAgent: s.user_agent }).filter((i) => i.by === 'userAgent');
      assert.equal(ids.map((i) => i.vendor), [id], s.user_agent);
      assert.is(ids[0].model && modelKey(ids[0].model), s.model ? modelKey(s.model) : undefined, `${s.user_agent}: model`);
      if (s.mac) assert.is(ids[0].mac, s.mac, `${s.user_agent}: mac`);
    }
  });

  test(`${v.name}: every DHCP option-60 sample and every OUI sample identifies to ${v.name}`, () => {
    for (const s of vc) {
      const ids = registry.identify({ vendorClass: s.vendor_class }).filter((i) => i.by === 'vendorClass');
      assert.equal(ids.map((i) => i.vendor), [id], s.vendor_class);
      if (s.model) assert.is(ids[0].model, registry.model(id, s.model)!.id, `${s.vendor_class}: model`);
    }
    for (const s of ouis) {
      const ids = registry.identify({ mac: parseMac(s.oui + '123456')! });
      assert.equal(ids.map((i) => i.vendor), [id], s.oui);
    }
  });

  test(`${v.name}: every file name its phones ask for is served, or refused on purpose with the reason in the README`, () => {
    const readme = fs.readFileSync(path.join(v.dir, 'README.md'), 'utf8');
    const sectionAt = readme.indexOf('## Files asked for at boot that aps refuses on purpose');
    assert.ok(sectionAt >= 0, 'README has no section "Files asked for at boot that aps refuses on purpose"');
    const section = readme.slice(sectionAt, readme.indexOf('\n## ', sectionAt + 4) >>> 0);
    const code = v.models.find((m) => m.code)?.code ?? v.models[0].id;
    const mac = v.ouis[0] + 'a1b2c3';
    for (const s of names) {
      const name = s.filename.replace('{mac}', mac).replace('{MAC}', mac.toUpperCase()).replace('{model}', code);
      const served = registry.matchFile(name).some((m) => m.file.vendor.id === id);
      const refused = refusedBy(registry, name).filter((r) => r.vendor.id === id);
      assert.ok(served !== (refused.length > 0), `${s.filename} (${name}): served ${served}, refused ${refused.length > 0}`);
    }
    for (const r of v.refused ?? []) {
      const shown = r.name.replace('{mac}', '<mac>').replace('{MAC}', '<MAC>').replace('{code}', '<model>');
      assert.ok(section.includes('`' + shown + '`'), `${r.name} is refused but the README section does not name ${shown}`);
      assert.ok(r.why.length > 20, `${r.name}: the reason is too short`);
    }
  });

  test(`${v.name}: the model file of every model code names a model with that code`, () => {
    for (const cf of v.compiledFiles.filter((c) => c.scope === 'model')) {
      for (const m of v.models.filter((x) => x.code)) {
        const name = fileNameFor(cf.spec, undefined, m.code);
        const hit = registry.matchFile(name).find((x) => x.file.spec === cf.spec);
        assert.ok(hit?.model, `${name} names no model`);
        assert.is(hit!.model!.code, m.code, name);
      }
    }
  });
}

test('the older models each get their own model file', () => {
  const modelOf = (name: string) => registry.matchFile(name).find((m) => m.model)?.model?.id;
  assert.is(modelOf('y000000000000.cfg'), 'T28P');
  assert.is(modelOf('y000000000009.cfg'), 'T18');
  assert.is(modelOf('y000000000031.cfg'), 'T19P');
  assert.is(modelOf('y000000000032.cfg'), 'T32G');
  assert.is(modelOf('y000000000023.cfg'), 'VP530');
  assert.is(modelOf('y000000000037.cfg'), 'CP860');
  assert.is(modelOf('snomM900.htm'), 'M900');
  assert.is(modelOf('snomM300.htm'), 'M300');
  assert.is(modelOf('6867i.cfg'), '6867i');
  assert.is(modelOf('6930.cfg'), '6930');
  assert.is(registry.model('yealink', 'T23P')?.id, 'T23G');
  assert.is(registry.model('aastra', '6930w')?.id, '6930');
  assert.is(registry.model('polycom', 'SPIP_301')?.id, 'SPIP301');
});

// ------------------------------------------------------------------ the real daemon

const YEALINK = '00156513ae0b'; // T28P of the sample UA
const POLYCOM = '0004f2335335';
const SNOM = '000413b60680'; // M900 of the sample UA
const AASTRA = '1400e91edb52'; // 6930 of the sample UA
const UA = {
  yealink: 'yealink SIP-T28P 2.70.0.140 00:15:65:13:ae:0b',
  polycom: 'FileTransport PolycomSoundPointIP-SPIP_335-UA/3.2.1.0078',
  snom: 'Mozilla/4.0 (compatible; Snom M900 05.20.0001 000413b60680)',
  aastra: 'Mitel6930 MAC:14-00-E9-1E-DB-52 V:6.4.0.140-SIP',
};
let d: Daemon;
let base: string;
let tmp: string;

function get(file: string, ua: string, auth = false) {
  return curl(['-A', ua, ...(auth ? ['--digest', '-u', CREDS] : []), `${base}/provisioning/${file}`]);
}
function tftpGet(file: string) {
  const out = path.join(tmp, `tftp-${Math.random().toString(36).slice(2)}`);
  const r = run('tftp', ['127.0.0.1', String(d.tftpPort), '-m', 'binary', '-c', 'get', file, out], { timeout: 15_000 });
  return { body: fs.existsSync(out) && fs.statSync(out).size > 0 ? fs.readFileSync(out, 'utf8') : null, out: r.text + r.stderr };
}
function wellFormed(xml: string) {
  const f = path.join(tmp, `xml-${Math.random().toString(36).slice(2)}.xml`);
  fs.writeFileSync(f, xml);
  const r = run('xmllint', ['--noout', f]);
  return r.status === 0 ? '' : r.stderr;
}

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-first4-'));
  d = await startDaemon({
    setup(configDir) {
      // plain templates for the older models (the fixture's full templates name newer ones)
      const t = (name: string, vendor: string, model: string) =>
        fs.writeFileSync(path.join(configDir, 'templates.d', `${name}.ini`), `[template]\nvendor = ${vendor}\nmodel = ${model}\ntenant = acme\n`);
      t('first4-t28p', 'yealink', 'T28P');
      t('first4-spip335', 'polycom', 'SPIP335');
      t('first4-m900', 'snom', 'M900');
      t('first4-6930', 'aastra', '6930');
      // one extension per phone: the fixture has 101-103
      fs.writeFileSync(path.join(configDir, 'extensions.d', 'first4.ini'), '[201]\ntenant = acme\nsecret = y201secret\n\n[202]\ntenant = acme\nsecret = p202secret\n\n[203]\ntenant = acme\nsecret = s203secret\n\n[204]\ntenant = acme\nsecret = a204secret\n');
    },
  });
  base = `http://${d.http}`;
  for (const [mac, tpl, ext] of [[YEALINK, 'first4-t28p', '201'], [POLYCOM, 'first4-spip335', '202'], [SNOM, 'first4-m900', '203'], [AASTRA, 'first4-6930', '204']]) {
    const a = d.ctl('device', 'add', mac, '--tenant', 'acme', '--template', tpl);
    assert.is(a.status, 0, a.stderr);
    const l = d.ctl('line', 'set', mac, '1', '--extension', ext);
    assert.is(l.status, 0, l.stderr);
  }
});

test.after(async () => {
  if (d) {
    await d.stop();
    d.cleanup();
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('a Yealink T28P gets its boot file naming y000000000000.cfg, and that model file over HTTP and TFTP', () => {
  const boot = get(`${YEALINK}.boot`, UA.yealink);
  assert.is(boot.status, 200, boot.body);
  assert.match(boot.body, /include:config "y000000000000\.cfg"\ninclude:config "00156513ae0b\.cfg"/);
  const r = get('y000000000000.cfg', UA.yealink);
  assert.is(r.status, 200, r.body);
  assert.ok(r.body.startsWith('#!version:1.0.0.1'));
  assert.match(r.body, /Yealink T28P/);
  const t = tftpGet('y000000000000.cfg');
  assert.is(t.body, r.body, t.out);
  for (const [file, model] of [['y000000000031.cfg', 'T19P'], ['y000000000004.cfg', 'T26P'], ['y000000000091.cfg', 'VP59']]) {
    const x = tftpGet(file);
    assert.ok(x.body?.includes(`Yealink ${model}`), `${file}: ${x.out}`);
  }
});

test('a Yealink is refused the common boot file and its local-settings files: 404 over HTTP, error 1 over TFTP', () => {
  for (const file of ['y000000000000.boot', `${YEALINK}-local.cfg`, `${YEALINK}-contact.xml`]) {
    assert.is(get(file, UA.yealink).status, 404, file);
    assert.match(tftpGet(file).out, /Error code 1/i, file);
  }
});

test('a SoundPoint IP 335 gets the empty directory seed, well-formed, the same over HTTP and TFTP', () => {
  const r = get('000000000000-directory.xml', UA.polycom);
  assert.is(r.status, 200, r.body);
  assert.match(r.body, /<directory>\s*<item_list\/>\s*<\/directory>/);
  assert.is(wellFormed(r.body), '');
  assert.is(tftpGet('000000000000-directory.xml').body, r.body);
});

test('a SoundPoint IP 335 is refused its own directory, licence file and log names: 404 / TFTP error 1', () => {
  for (const file of [`${POLYCOM}-directory.xml`, `${POLYCOM}-license.cfg`, `${POLYCOM}-app.log`, 'sip.cfg', 'phone1.cfg']) {
    assert.is(get(file, UA.polycom).status, 404, file);
    assert.match(tftpGet(file).out, /Error code 1/i, file);
  }
  const phone = get(`${POLYCOM}-phone.cfg`, UA.polycom, true);
  assert.is(phone.status, 200, 'its settings file is still served');
  assert.is(wellFormed(phone.body), '');
});

test('a Snom M900 DECT base gets the desk-phone files: setting-file lists freely, its settings only with proof', () => {
  const MAC = SNOM.toUpperCase();
  const common = get('snomM900.htm', UA.snom);
  assert.is(common.status, 200, common.body);
  assert.is(wellFormed(common.body), '');
  const list = get(`snomM900-${MAC}.htm`, UA.snom);
  assert.is(list.status, 200, list.body);
  assert.match(list.body, new RegExp(`${MAC}\\.xml`));
  assert.is(tftpGet('snomM900.htm').body, common.body);
  assert.is(get(`${MAC}.xml`, UA.snom).status, 401);
  const s = get(`${MAC}.xml`, UA.snom, true);
  assert.is(s.status, 200, s.body);
  assert.is(wellFormed(s.body), '');
  assert.match(s.body, /<user_name idx="1" perm="R">203<\/user_name>/);
  assert.is(get('snomM900-firmware.xml', UA.snom).status, 404);
  assert.match(tftpGet('snomM900-firmware.xml').out, /Error code 1/i);
});

test('a Mitel 6930 gets startup.cfg and 6930.cfg without proof, its <MAC>.cfg only with it', () => {
  const aastra = get('aastra.cfg', UA.aastra);
  const startup = get('startup.cfg', UA.aastra);
  assert.is(startup.status, 200, startup.body);
  assert.is(startup.body, aastra.body, 'startup.cfg is aastra.cfg under its newer name');
  const model = get('6930.cfg', UA.aastra);
  assert.is(model.status, 200, model.body);
  assert.match(model.body, /^# 6930\.cfg: model file of every Aastra\/Mitel 6930/);
  assert.not.match(model.body, /^[^#\n]*password\s*:/im, 'no password setting');
  assert.is(tftpGet('6930.cfg').body, model.body);
  assert.is(tftpGet('startup.cfg').body, startup.body);
  assert.match(tftpGet('6867i.cfg').body ?? '', /Aastra\/Mitel 6867i/);
  const MAC = AASTRA.toUpperCase();
  assert.is(get(`${MAC}.cfg`, UA.aastra).status, 401);
  const dev = get(`${MAC}.cfg`, UA.aastra, true);
  assert.is(dev.status, 200, dev.body);
  assert.match(dev.body, /Read after aastra\.cfg and 6930\.cfg/);
  assert.match(dev.body, /^http digest username: aps1400e91edb52$/m, 'the phone gets its own provisioning credentials');
});

test('a Mitel 6930 is refused the encrypted files: security.tuz and the *.tuz twins get 404 / TFTP error 1', () => {
  for (const file of ['security.tuz', 'startup.tuz', 'aastra.tuz', '6930.tuz', `${AASTRA.toUpperCase()}.tuz`]) {
    assert.is(get(file, UA.aastra).status, 404, file);
    assert.match(tftpGet(file).out, /Error code 1/i, file);
  }
});

test('apsctl config check names the template keys a vendor has no setting for', () => {
  const r = d.ctl('config', 'check');
  const all = r.stdout + r.stderr;
  assert.match(all, /snom-full\.ini: general\.check_time: Snom has no "check_time" key: left out/);
  assert.match(all, /aastra-full\.ini: phone\.dial_plan: Aastra\/Mitel has no "dial_plan" key: left out/);
});

test.run();
