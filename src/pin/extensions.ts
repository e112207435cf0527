/** The extensions of the catalogue with the devices that hold them (apsctl extension list). */
import type { Config } from '../config/index.js';
import type { SkippedEndpoint } from '../config/extensions.js';
import type { Store } from '../store/index.js';
import { pinStore } from '../store/pin.js';

export interface ExtensionListRow {
  tenant: string;
  number: string;
  name: string;
  authUser: string;
  source: string;
  /** devices holding it, as mac/line */
  holders: { mac: string; line: number }[];
  free: boolean;
  /** null when it can be assigned; why not, for pjsip.conf endpoints left out */
  unusable: string | null;
}

/** Every extension with who holds it; pjsip.conf endpoints that cannot be assigned at the end, with the reason. */
export function listExtensions(config: Config, store: Store, skipped: SkippedEndpoint[] = []): ExtensionListRow[] {
  const holders = new Map<string, { mac: string; line: number }[]>();
  for (const r of pinStore(store).lineHolders()) {
    const k = `${r.tenant}/${r.extension}`;
    const list = holders.get(k) ?? [];
    list.push({ mac: r.mac, line: r.idx });
    holders.set(k, list);
  }
  const out: ExtensionListRow[] = [...config.extensions.values()]
    .sort((a, b) => a.tenant.localeCompare(b.tenant) || a.number.localeCompare(b.number, undefined, { numeric: true }))
    .map((e) => {
      const h = holders.get(`${e.tenant}/${e.number}`) ?? [];
      return { tenant: e.tenant, number: e.number, name: e.name, authUser: e.authUser, source: `${e.file}:${e.line}`, holders: h, free: h.length === 0, unusable: null };
    });
  for (const s of skipped) {
    out.push({ tenant: '-', number: s.name, name: '', authUser: '', source: `${s.file}:${s.line}`, holders: [], free: false, unusable: s.reason });
  }
  return out;
}
