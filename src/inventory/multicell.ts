/**
 * DECT: on a base, line N is handset N, bounded by the model's handset count. A multicell
 * system's bases share one configuration: every base but one is tied to the first (its
 * primary) with `apsctl device tie <base> --to <primary>`; a tied base is served the primary's
 * lines, template and stage under its own MAC file name, and proves itself with its own
 * credentials or lease. Lines are set on the primary only.
 */
import { ApsError } from '../errors.js';
import { macColon, type Mac } from '../mac.js';
import type { DeviceRow, Store } from '../store/index.js';
import type { VendorModel, VendorRegistry } from '../vendors/registry.js';

/** How many lines a device can take: a base's handsets, else the model's lines. */
export function lineCapacity(model: VendorModel): { max: number; noun: 'handset' | 'line' } {
  return model.handsets !== undefined ? { max: model.handsets, noun: 'handset' } : { max: model.lines, noun: 'line' };
}

/** The device whose lines and template `d` is served: its primary when it is a tied base, else itself. */
export function configSource(store: Store, d: DeviceRow): DeviceRow {
  if (!d.shares_with) return d;
  return store.device(d.shares_with as Mac) ?? d;
}

export function tieBase(store: Store, registry: VendorRegistry, mac: Mac, primary: Mac): DeviceRow {
  return store.transaction(() => {
    const d = store.device(mac);
    const p = store.device(primary);
    if (!d) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${macColon(mac)}`, { expected: 'a MAC from apsctl device list' });
    if (!p) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${macColon(primary)}`, { key: '--to', expected: 'the MAC of the system\'s first base' });
    if (mac === primary) throw new ApsError('APS_ERR_USAGE', 'a base cannot share its own configuration', { key: '--to' });
    const dm = registry.model(d.vendor, d.model);
    const pm = registry.model(p.vendor, p.model);
    if (dm?.handsets === undefined || pm?.handsets === undefined) {
      throw new ApsError('APS_ERR_USAGE', `${macColon(dm?.handsets === undefined ? mac : primary)} is no DECT base (its model has no handsets)`, { expected: 'two bases of one multicell system' });
    }
    if (d.vendor !== p.vendor) throw new ApsError('APS_ERR_USAGE', `${macColon(mac)} is a ${d.vendor} base, ${macColon(primary)} a ${p.vendor} one`, { expected: 'bases of one vendor' });
    if (p.shares_with) throw new ApsError('APS_ERR_USAGE', `${macColon(primary)} itself shares the configuration of ${macColon(p.shares_with as Mac)}: tie to that one`, { key: '--to' });
    if (store.lines(mac).length) throw new ApsError('APS_ERR_USAGE', `${macColon(mac)} has lines of its own: remove them first (the system's lines are set on ${macColon(primary)})`);
    if (store.devices().some((x) => x.shares_with === mac)) throw new ApsError('APS_ERR_USAGE', `other bases share the configuration of ${macColon(mac)}: untie them first`);
    return store.updateDevice(mac, { shares_with: primary, tenant: p.tenant });
  });
}

export function untieBase(store: Store, mac: Mac): DeviceRow {
  const d = store.device(mac);
  if (!d) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${macColon(mac)}`, { expected: 'a MAC from apsctl device list' });
  if (!d.shares_with) throw new ApsError('APS_ERR_USAGE', `${macColon(mac)} shares no other base's configuration`);
  return store.updateDevice(mac, { shares_with: null });
}
