/**
 * The vendor catalogue, walked whole: every vendor loads and validates, every sample
 * identifies to its vendor and model and to no other, every matcher has a sample, and every
 * file of every vendor renders for the fixture device exactly as its golden file says.
 * UPDATE_GOLDEN=1 rewrites the golden files (then read the diff before committing).
 */
import { readTsv } from './support/samples.js';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import os from 'node:os';
import { fileFits, fileNameForModel, modelKey, VendorDataError, VendorRegistry } from '../src/vendors/registry.js';
import { parseMac } from '../src/mac.js';
import { makeFixture, fixtureMac } from './support/fixture-device.js';
import { GOLDEN_DIR, VENDORS_DIR } from './support/paths.js';

const fx = makeFixture();
const UPDATE = process.env.UPDATE_GOLDEN === '1';


test('the catalogue holds the four first vendors, each with at least five models', () => {
  const ids = fx.registry.list().map((v) => v.id);
  for (const id of ['yealink', 'polycom', 'snom', 'aastra']) assert.ok(ids.includes(id), `vendor ${id} is missing`);
  for (const v of fx.registry.list()) assert.ok(v.models.length >= 5, `${v.id} has only ${v.models.length} models`);
});

test('every problem of every vendor folder is reported at once, each with its file and field (the DHCP answers too)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-vendors-'));
  try {
    for (const id of ['yealink', 'snom']) fs.cpSync(path.join(VENDORS_DIR, id), path.join(dir, id), { recursive: true });
    const edit = (id: string, f: (d: Record<string, any>) => void) => {
      const file = path.join(dir, id, 'vendor.json');
      const d = JSON.parse(fs.readFileSync(file, 'utf8'));
      f(d);
      fs.writeFileSync(file, JSON.stringify(d));
    };
    edit('yealink', (d) => {
      d.ouis[1] = 'XYZ';
      d.dhcp = { answers: [{ code: 66, value: 'sub', suboption: 2 }, { code: 300, value: 'url' }] };
      d.models[0].lines = 0;
    });
    edit('snom', (d) => {
      delete d.resync;
      d.userAgents[0].pattern = '(';
    });
    let err: unknown;
    try {
      VendorRegistry.load(dir);
    } catch (e) {
      err = e;
    }
    assert.instance(err, VendorDataError);
    const problems = (err as VendorDataError).problems.map((p) => `${path.relative(dir, String(p.context.file))} ${p.context.key}`);
    assert.equal(problems.sort(), [
      'snom/vendor.json resync.event',
      'snom/vendor.json userAgents[0].pattern',
      'yealink/vendor.json dhcp.answers[0]',
      'yealink/vendor.json dhcp.answers[1].code',
      'yealink/vendor.json models[0].lines',
      'yealink/vendor.json ouis[1]',
    ]);
    assert.match((err as VendorDataError).describe(), /^6 problems in the vendor data:\n  APS_ERR_VENDOR: .*vendor\.json: /);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

for (const v of fx.registry.list()) {
  const uaSamples = readTsv(path.join(v.dir, 'samples/user-agents.tsv'));
  const vcSamples = readTsv(path.join(v.dir, 'samples/dhcp-classes.tsv'));

  test(`${v.name}: every User-Agent sample identifies to ${v.name} and its model, and to no other vendor`, () => {
    assert.ok(uaSamples.length > 0, 'no User-Agent samples');
    for (const s of uaSamples) {
      const ids = fx.registry.identify({ userAgent: s.user_agent }).filter((i) => i.by === 'userAgent');
      assert.equal(ids.map((i) => i.vendor), [v.id], `"${s.user_agent}" identified as ${JSON.stringify(ids)}`);
      if (s.model) assert.is(ids[0].model && modelKey(ids[0].model), modelKey(s.model), `"${s.user_agent}" model`);
      else assert.is(ids[0].model, undefined, `"${s.user_agent}" names no model`);
      if (s.mac) assert.is(ids[0].mac, s.mac, `"${s.user_agent}" mac`);
    }
  });

  test(`${v.name}: every User-Agent pattern is backed by a sample`, () => {
    v.uaRes.forEach((re, i) => {
      assert.ok(uaSamples.some((s) => re.test(s.user_agent)), `userAgents[${i}] ${re} matches no sample`);
    });
  });

  test(`${v.name}: every DHCP vendor-class sample identifies to ${v.name} and no other, and every pattern has a sample`, () => {
    for (const s of vcSamples) {
      const ids = fx.registry.identify({ vendorClass: s.vendor_class }).filter((i) => i.by === 'vendorClass');
      assert.equal(ids.map((i) => i.vendor), [v.id], `"${s.vendor_class}" identified as ${JSON.stringify(ids)}`);
      if (s.model) assert.is(ids[0].model && modelKey(ids[0].model), modelKey(s.model), `"${s.vendor_class}" model`);
    }
    v.vendorClasses.forEach((vc, i) => {
      const hit = vcSamples.some((s) => {
        const x = s.vendor_class;
        return vc.match === 'exact' ? x === vc.value : vc.match === 'prefix' ? x.startsWith(vc.value) : vc.match === 'suffix' ? x.endsWith(vc.value) : new RegExp(vc.value).test(x);
      });
      assert.ok(hit, `vendorClasses[${i}] ${vc.match} "${vc.value}" has no sample`);
    });
  });

  test(`${v.name}: every OUI identifies a MAC to ${v.name}`, () => {
    for (const oui of v.ouis) {
      const ids = fx.registry.identify({ mac: parseMac(oui + '000001')! });
      assert.equal(ids.map((i) => i.vendor), [v.id]);
    }
  });

  test(`${v.name}: every file renders for the fixture device exactly as its golden file`, () => {
    const mac = fixtureMac(v);
    const device = fx.store.device(mac)!;
    const model = fx.registry.model(v.id, device.model)!;
    for (const cf of v.compiledFiles.filter((c) => fileFits(v, c.spec, model))) {
      // a file named by a code the fixture model does not have belongs to another model family:
      // it is checked as rendered for the first model that has it
      const owner = fileNameForModel(cf.spec, mac, model) !== undefined ? model : v.models.find((m) => fileNameForModel(cf.spec, mac, m) !== undefined);
      assert.ok(owner, `no model of ${v.id} has the file ${cf.spec.name}`);
      const name = fileNameForModel(cf.spec, mac, owner!)!;
      const matches = fx.registry.matchFile(name).filter((m) => m.file.vendor.id === v.id && m.file.spec === cf.spec);
      assert.is(matches.length, 1, `${name} does not match its own pattern`);
      const r = fx.renderer.render(matches[0], cf.scope === 'device' ? device : undefined);
      const golden = path.join(GOLDEN_DIR, v.id, name);
      if (UPDATE || !fs.existsSync(golden)) {
        fs.mkdirSync(path.dirname(golden), { recursive: true });
        fs.writeFileSync(golden, r.body);
        if (!UPDATE) assert.unreachable(`golden file ${golden} was missing and has been written: check it and commit it`);
      }
      assert.fixture(r.body.toString('utf8'), fs.readFileSync(golden, 'utf8'), `${v.id}/${name}`);
      // a key type the vendor does not have is left out by design; anything else is a fault
      assert.equal(r.warnings.filter((w) => !/has no "[^"]+" key: left out/.test(w)), [], `${v.id}/${name} warnings`);
      if (cf.spec.format === 'xml') assert.ok(!/&(?!amp;|lt;|gt;|quot;|apos;|#)/.test(r.body.toString()), `${name}: unescaped & in XML`);
    }
  });

  test(`${v.name}: a template that extends the full one renders its own keys over the parent's, as its golden file says`, () => {
    const mac = fixtureMac(v);
    const device = fx.store.device(mac)!;
    const model = fx.registry.model(v.id, device.model)!;
    const child = fx.config.templates.get(`${v.id}-child`);
    assert.ok(child, `test/fixtures/config/templates.d/${v.id}-child.ini is missing`);
    assert.is(child!.extends, `${v.id}-full`);
    assert.equal([child!.server.expires, child!.network.vlanId, child!.vendor, child!.model], [900, 30, v.id, model.id], 'the child keeps vendor and model of its parent');
    const asChild = { ...device, template: child!.name, rev: device.rev + 1000 };
    let differs = false;
    for (const cf of v.compiledFiles.filter((c) => c.scope === 'device' && fileFits(v, c.spec, model))) {
      const name = fileNameForModel(cf.spec, mac, model);
      if (name === undefined) continue;
      const m = fx.registry.matchFile(name).find((x) => x.file.spec === cf.spec)!;
      const r = fx.renderer.render(m, asChild);
      const golden = path.join(GOLDEN_DIR, v.id, 'inherited', name);
      if (UPDATE || !fs.existsSync(golden)) {
        fs.mkdirSync(path.dirname(golden), { recursive: true });
        fs.writeFileSync(golden, r.body);
        if (!UPDATE) assert.unreachable(`golden file ${golden} was missing and has been written: check it and commit it`);
      }
      assert.fixture(r.body.toString('utf8'), fs.readFileSync(golden, 'utf8'), `${v.id}/inherited/${name}`);
      if (!r.body.equals(fx.renderer.render(m, device).body)) differs = true;
    }
    assert.ok(differs, 'the child\'s own keys (vlan_id, periodic_check, expires, key2) reach the phone');
  });

  test(`${v.name}: the secrets of the fixture appear only in files flagged as holding secrets`, () => {
    const mac = fixtureMac(v);
    const device = fx.store.device(mac)!;
    const model = fx.registry.model(v.id, device.model)!;
    for (const cf of v.compiledFiles.filter((c) => fileFits(v, c.spec, model))) {
      const name = fileNameForModel(cf.spec, mac, model);
      if (name === undefined) continue;
      const m = fx.registry.matchFile(name).find((x) => x.file.spec === cf.spec)!;
      const body = fx.renderer.render(m, cf.scope === 'device' ? device : undefined).body.toString();
      const leaks = ['S3cr3t', 'Adm1n', 'Ld4p', 'Dev1ce'].filter((s) => body.includes(s));
      if (cf.spec.secrets) assert.ok(leaks.includes('S3cr3t'), `${name} is flagged as holding secrets but has no SIP password`);
      else assert.equal(leaks, [], `${name} is not flagged as holding secrets but carries ${leaks.join(', ')}`);
    }
  });

  test(`${v.name}: the IP/DNS map of the tenant replaces the dummy IP in every device file`, () => {
    const mac = fixtureMac(v);
    const device = fx.store.device(mac)!;
    const model = fx.registry.model(v.id, device.model)!;
    for (const cf of v.compiledFiles.filter((c) => c.scope === 'device' && fileFits(v, c.spec, model))) {
      const m = fx.registry.matchFile(fileNameForModel(cf.spec, mac, model)!).find((x) => x.file.spec === cf.spec)!;
      const body = fx.renderer.render(m, device).body.toString();
      assert.not.match(body, /(?<![0-9.])1\.1\.1\.1(?![0-9])/, `${cf.spec.name} still holds 1.1.1.1`);
    }
  });
}

test.after(() => fx.cleanup());
test.run();
