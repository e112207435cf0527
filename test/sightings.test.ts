/**
 * An unknown MAC of every vendor fetching its device file over HTTP, with a real User-Agent of
 * that vendor (vendors/<id>/samples/user-agents.tsv): it learns no secret (the same 401 as a known
 * MAC), and the fetch is a sighting naming the vendor and the model its User-Agent says, which
 * the [discovery] rules make an unprovisioned device (auto_create is on in the fixture).
 */
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileFits, fileNameForModel, modelKey, VendorRegistry } from '../src/vendors/registry.js';
import type { Mac } from '../src/mac.js';
import { curl, startDaemon, type Daemon } from './support/daemon.js';
import { VENDORS_DIR } from './support/paths.js';
import { readTsv } from './support/samples.js';

const registry = VendorRegistry.load(VENDORS_DIR);
let d: Daemon;

test.before(async () => {
  d = await startDaemon();
  await d.waitLog(/apsd ready/);
});

test.after(async () => {
  await d?.stop();
  d?.cleanup();
});

/** A User-Agent sample of the vendor that names a model, with any MAC in it replaced by `mac`. */
function userAgentFor(vendorId: string, mac: Mac): { ua: string; model: string } | null {
  const v = registry.get(vendorId)!;
  for (const s of readTsv(path.join(v.dir, 'samples/user-agents.tsv'))) {
    if (!s.model) continue;
    const colon = mac.match(/../g)!.join(':');
    const dash = mac.match(/../g)!.join('-');
    const ua = s.user_agent
      .replace(/[0-9a-fA-F]{2}(?:-[0-9a-fA-F]{2}){5}/, (m) => (m === m.toUpperCase() ? dash.toUpperCase() : dash))
      .replace(/[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}/, (m) => (m === m.toUpperCase() ? colon.toUpperCase() : colon))
      .replace(/(?<![0-9a-fA-F])[0-9a-fA-F]{12}(?![0-9a-fA-F])/, (m) => (m === m.toUpperCase() ? mac.toUpperCase() : mac));
    const id = registry.identify({ userAgent: ua }).find((i) => i.by === 'userAgent');
    if (id?.vendor === vendorId && id.model && (!id.mac || id.mac === mac)) return { ua, model: id.model };
  }
  return null;
}

for (const v of registry.list()) {
  test(`${v.name}: an unknown MAC fetching its device file with a ${v.name} User-Agent learns no secret and becomes a sighting naming ${v.name} and its model`, async () => {
    const mac = `${v.ouis[0]}e0${(registry.list().indexOf(v) + 16).toString(16).padStart(2, '0')}01` as Mac;
    const s = userAgentFor(v.id, mac);
    assert.ok(s, `vendors/${v.id}/samples/user-agents.tsv has no User-Agent that names a model`);
    const model = registry.model(v.id, s!.model)!;
    const cf = v.compiledFiles.find((c) => c.scope === 'device' && c.spec.secrets && fileFits(v, c.spec, model) && fileNameForModel(c.spec, mac, model) !== undefined);
    assert.ok(cf, `${v.name} ${model.id} has a device file with secrets`);
    const name = fileNameForModel(cf!.spec, mac, model)!;
    const r = curl(['-A', s!.ua, `http://${d.http}/provisioning/${name}`]);
    assert.is(r.status, 401, `${name}: the same challenge as for a known MAC`);
    assert.not.match(r.body, /S3cr3t|Adm1n|Ld4p|Dev1ce/);
    type Row = { mac: string; vendor: string | null; model: string | null; source: string; status: string };
    let seen: Row | undefined;
    for (let i = 0; i < 100 && !seen; i++) {
      seen = (JSON.parse(d.ctl('--json', 'sighting', 'list').stdout) as Row[]).find((x) => x.mac === mac);
      if (!seen) await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(seen, `no sighting of ${mac}`);
    assert.equal([seen!.vendor, seen!.model && modelKey(seen!.model), seen!.source, seen!.status], [v.id, modelKey(model.id), 'http', 'device']);
  });
}

test.run();
