/**
 * The installed firmware picks the parameter names: a template pinned to an older firmware, or a
 * phone that reports one in its User-Agent, gets the older names where its vendor's data says
 * they differ (vendors/yealink: account.X.sip_server_host before V71); a newer one, the current.
 */
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileNameForModel } from '../src/vendors/registry.js';
import { compareVersions } from '../src/render/view.js';
import { makeFixture, fixtureMac } from './support/fixture-device.js';
import { GOLDEN_DIR } from './support/paths.js';
import { curl, startDaemon } from './support/daemon.js';

test('versions compare number by number', () => {
  assert.equal([compareVersions('66.70.0.100', '66.71'), compareVersions('86', '71'), compareVersions('71', '71.0.0'), compareVersions('9', '10')], [-1, 1, 0, -1]);
});

test('a Yealink template pinned to firmware 66.70 writes the pre-V71 account parameters, as its golden file says', () => {
  const fx = makeFixture();
  try {
    const v = fx.registry.get('yealink')!;
    const mac = fixtureMac(v);
    const device = { ...fx.store.device(mac)!, template: 'yealink-v70', rev: 999 };
    const model = fx.registry.model('yealink', device.model)!;
    const cf = v.compiledFiles.find((c) => c.spec.name === '{mac}.cfg')!;
    const name = fileNameForModel(cf.spec, mac, model)!;
    const m = fx.registry.matchFile(name).find((x) => x.file.spec === cf.spec)!;
    const body = fx.renderer.render(m, device).body.toString();
    const golden = path.join(GOLDEN_DIR, 'yealink', 'firmware-70', name);
    if (process.env.UPDATE_GOLDEN === '1' || !fs.existsSync(golden)) {
      fs.mkdirSync(path.dirname(golden), { recursive: true });
      fs.writeFileSync(golden, body);
    }
    assert.fixture(body, fs.readFileSync(golden, 'utf8'));
    assert.match(body, /^account\.1\.sip_server_host = /m);
    assert.not.match(body, /sip_server\.1\.address/);
  } finally {
    fx.cleanup();
  }
});

test('a Yealink that reports firmware 66.70 gets the older names, and the current ones once it reports 66.86', async () => {
  const d = await startDaemon();
  try {
    await d.waitLog(/apsd ready/);
    const mac = '805ec0f0a070';
    assert.is(d.ctl('device', 'add', mac, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
    assert.is(d.ctl('line', 'set', mac, '1', '--extension', '101').status, 0);
    const get = (version: string) => curl(['-A', `Yealink SIP-T46S 66.${version} 80:5e:c0:f0:a0:70`, '--digest', '-u', 'phones:Prov;Secret#1', `http://${d.http}/provisioning/${mac}.cfg`]).body;
    get('70.0.100');
    // the firmware the phone reported is written with its fetch (batched): the next fetch uses it
    let old = '';
    for (let i = 0; i < 60 && !/sip_server_host/.test(old); i++) {
      await new Promise((r) => setTimeout(r, 100));
      old = get('70.0.100');
    }
    assert.match(old, /^account\.1\.sip_server_host = /m);
    let now = '';
    for (let i = 0; i < 60 && !/sip_server\.1\.address/.test(now); i++) {
      now = get('86.0.15');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(now, /^account\.1\.sip_server\.1\.address = /m);
    assert.not.match(now, /sip_server_host/);
  } finally {
    await d.stop();
    d.cleanup();
  }
});

test.run();
