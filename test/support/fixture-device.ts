/**
 * The fixture device of each vendor: the vendor's first OUI + a1b2c3, tenant acme, the
 * vendor's full template (templates.d/<vendor>-full.ini: every tab set), line 1 = extension
 * 101 with a label, caller-ID source, local port and SRTP.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/index.js';
import { Store } from '../../src/store/index.js';
import { VendorRegistry, type Vendor } from '../../src/vendors/registry.js';
import { Renderer } from '../../src/render/index.js';
import type { Mac } from '../../src/mac.js';
import { FIXTURE_CONFIG, VENDORS_DIR } from './paths.js';

export function fixtureMac(v: Vendor): Mac {
  return (v.ouis[0] + 'a1b2c3') as Mac;
}

export interface Fixture {
  registry: VendorRegistry;
  config: Config;
  store: Store;
  renderer: Renderer;
  dir: string;
  cleanup(): void;
}

export function makeFixture(): Fixture {
  const only = process.env.APS_TEST_VENDORS ? process.env.APS_TEST_VENDORS.split(',') : undefined;
  const registry = VendorRegistry.load(VENDORS_DIR, only);
  const config = loadConfig(FIXTURE_CONFIG);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-fixture-'));
  const store = Store.open(dir);
  for (const v of registry.list()) {
    const t = config.templates.get(`${v.id}-full`);
    if (!t) throw new Error(`test/fixtures/config/templates.d/${v.id}-full.ini is missing`);
    const mac = fixtureMac(v);
    store.addDevice({ mac, tenant: 'acme', vendor: v.id, model: t.model, template: t.name, label: 'Reception' });
    store.setLine({ mac, idx: 1, extension: '101', label: 'Alice', cid_source: 'pai-from', local_port: '5062', srtp: true });
    // fixed per-device credentials, so that golden files do not change from run to run
    store.db.prepare('UPDATE credentials SET password = ? WHERE mac = ?').run('Dev1ce&Pass<' + v.id + '>', mac);
  }
  const renderer = new Renderer({ registry, store, config: () => config, generation: () => 1 });
  return {
    registry, config, store, renderer, dir,
    cleanup() {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
