/**
 * The inventory's first rule: what a sighting becomes. A sighting is one thing discovery saw
 * about one MAC (a DHCP message, later a User-Agent). The inventory
 *
 *  1. merges it into what was seen of that MAC before (an OFFER carries no vendor class, the
 *     DISCOVER before it did);
 *  2. identifies the phone from the evidence, each piece with its confidence: the MAC's OUI,
 *     the DHCP vendor class (option 60), a User-Agent. The host name is no evidence: anyone
 *     can call a laptop after a phone model;
 *  3. decides by the [discovery] rules: a locally administered MAC or one nothing identifies
 *     is *ignored*; a phone the rules refuse (auto_create, auto_create_until, allow_vendors,
 *     allow_subnets against the relay or the offered / acked / requested address) stays
 *     *pending* with the reason; evidence naming two vendors stays pending too; otherwise an
 *     *unprovisioned* device is made in [discovery] tenant;
 *  4. writes it all in one transaction: the sighting row, and a new device, or the existing
 *     device's model (while discovery owns it) and last-seen time; an ACK records the lease
 *     (MAC ↔ IP until the lease time runs out) that TFTP and HTTP accept as proof, and ends
 *     any other MAC's lease on that address; RELEASE, DECLINE and NAK end the MAC's lease.
 *
 * No packets, no SQL here: sightings come in as plain objects, SQL lives in src/store/.
 * A device's model is required: when no evidence names one, the model of [discovery]
 * template (same vendor) or else the vendor's first model is assumed, the sighting's reason
 * says so, and a later identification that names the model replaces it.
 */
import { defaultModel, templateFits } from './rules.js';
import type { Logger } from '../log.js';
import { isLocallyAdministered, macOui, type Mac } from '../mac.js';
import type { Settings } from '../config/settings.js';
import type { Store, DeviceRow } from '../store/index.js';
import { Sightings, type SightingRow, type SightingStatus } from '../store/sightings.js';
import { Confidence, type Identification, type VendorRegistry } from '../vendors/registry.js';

/** One observation of one MAC. Absent fields are unknown, not empty. */
export interface Sighting {
  mac: Mac;
  /** dhcp | pnp | scan | import | http … */
  source: string;
  /** epoch ms */
  at: number;
  /** DHCP message type (DISCOVER …), BOOTREQUEST/BOOTREPLY for plain BOOTP */
  msgType?: string;
  /** true for what a DHCP server sent (OFFER, ACK, NAK): addresses, no client evidence */
  fromServer?: boolean;
  vendorClass?: string;
  paramList?: number[];
  hostname?: string;
  /** option 61 as hex */
  clientId?: string;
  /** option 50 */
  requestedIp?: string;
  /** yiaddr of an OFFER */
  offeredIp?: string;
  /** yiaddr of an ACK (ciaddr when the ACK answers an INFORM) */
  ackedIp?: string;
  /** ciaddr of a client's message: the address it already uses */
  clientIp?: string;
  /** giaddr */
  relay?: string;
  /** option 82 as hex */
  option82?: string;
  interface?: string;
  /** option 51 of an ACK */
  leaseSeconds?: number;
  userAgent?: string;
  /** a model the device names itself (SIP PnP Event model="…"): as strong as a User-Agent, if the vendor has it */
  model?: string;
}

export interface ObserveResult {
  mac: Mac;
  status: SightingStatus;
  reason: string;
  vendor: string | null;
  model: string | null;
  /** a device was made by this sighting */
  created: boolean;
  /** fields of an existing device this sighting changed */
  updated: string[];
  lease: 'recorded' | 'ended' | null;
}

/** What the inventory needs of a hardware template. */
export interface TemplateRef {
  vendor: string;
  model: string;
  /** '*' = global */
  tenant: string;
}

export interface InventoryDeps {
  store: Store;
  registry: VendorRegistry;
  settings: () => Settings;
  /** [discovery] template is looked up here (to match its vendor and borrow its model) */
  templates?: () => ReadonlyMap<string, TemplateRef>;
  log: Logger;
  /** for tests */
  now?: () => number;
}

/** Sources whose devices the inventory may still correct (model) while they are unprovisioned. */
const DISCOVERY_SOURCES = new Set(['dhcp', 'pnp', 'scan', 'http', 'tftp']);
/** Sources whose client address is where the phone is (a fetch, a SUBSCRIBE), checked against allow_subnets like a relay or an offered address. */
const ADDRESS_SOURCES = new Set(['http', 'tftp', 'pnp']);

type Effect = () => void;

interface Batch {
  /** sighting rows written by this batch, by MAC */
  rows: Map<Mac, SightingRow>;
  /** MACs whose row was in the database before the batch */
  stored: Set<Mac>;
  /** last-seen time and address of devices, by MAC */
  seen: Map<Mac, { at: number; ip: string | null }>;
  /** device rows this batch made or changed (the store's cache is cold after every write) */
  devices: Map<Mac, DeviceRow>;
}

export class Inventory {
  readonly sightings: Sightings;
  private readonly now: () => number;

  constructor(private readonly deps: InventoryDeps) {
    this.sightings = new Sightings(deps.store);
    this.now = deps.now ?? Date.now;
  }

  /** Records one sighting in one transaction; logs after the commit. Throws only on a database failure. */
  observe(s: Sighting): ObserveResult {
    const effects: Effect[] = [];
    const r = this.sightings.transaction(() => this.apply(s, effects));
    for (const e of effects) e();
    return r;
  }

  /**
   * Many sightings in one transaction (a capture's burst): one commit for all of them. If one
   * fails, the whole batch is rolled back and written again one sighting per transaction, so
   * that only the failing one is lost; it is reported as an Error in its place.
   */
  observeMany(list: readonly Sighting[]): (ObserveResult | Error)[] {
    if (list.length === 1) return [this.tryObserve(list[0]!)];
    const effects: Effect[] = [];
    let out: ObserveResult[];
    try {
      out = this.sightings.transaction(() => {
        // the same phone often sends and gets several messages within one batch (DISCOVER,
        // OFFER, REQUEST, ACK): its sighting row and last-seen time are written once, at the end
        this.batch = { rows: new Map(), stored: new Set(), seen: new Map(), devices: new Map() };
        try {
          const r = list.map((s) => this.apply(s, effects));
          this.writeBatch(this.batch);
          return r;
        } finally {
          this.batch = null;
        }
      });
    } catch {
      return list.map((s) => this.tryObserve(s));
    }
    for (const e of effects) e();
    return out;
  }

  private batch: Batch | null = null;

  /** The sighting row of `mac` as this transaction sees it. */
  private row(mac: Mac): SightingRow | undefined {
    const b = this.batch;
    if (!b) return this.sightings.get(mac);
    const mine = b.rows.get(mac);
    if (mine) return mine;
    const r = this.sightings.get(mac);
    if (r) b.stored.add(mac);
    return r;
  }

  private keep(row: SightingRow): void {
    if (this.batch) this.batch.rows.set(row.mac, row);
    else this.sightings.put(row);
  }

  private touch(mac: Mac, at: number, ip: string | null): void {
    const b = this.batch;
    if (!b) return this.sightings.touchDevice(mac, at, ip);
    const p = b.seen.get(mac);
    b.seen.set(mac, { at: p ? Math.max(p.at, at) : at, ip: ip ?? p?.ip ?? null });
  }

  private writeBatch(b: Batch): void {
    for (const row of b.rows.values()) {
      if (b.stored.has(row.mac)) this.sightings.update(row);
      else this.sightings.put(row);
    }
    for (const [mac, t] of b.seen) this.sightings.touchDevice(mac, t.at, t.ip);
  }

  private tryObserve(s: Sighting): ObserveResult | Error {
    try {
      return this.observe(s);
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  }

  private apply(s: Sighting, effects: Effect[]): ObserveResult {
    const { store, log } = this.deps;
    const settings = this.deps.settings();
    const now = this.now();
    const prev = this.row(s.mac);
    const row = merge(prev, s);

    // identification: evidence from this sighting and what was kept of earlier ones
    const ids = this.identify(s.mac, row.vendor_class, s.userAgent);
    const ident = bestOf(ids, prev);
    if (s.model && ident.vendor && !ident.conflict && (!ident.model || ident.confidence <= Confidence.userAgent)) {
      const named = this.deps.registry.model(ident.vendor, s.model);
      if (named) {
        ident.model = named.id;
        ident.confidence = Confidence.userAgent;
        ident.by = 'userAgent';
      }
    }
    row.vendor = ident.vendor;
    row.model = ident.model;
    row.confidence = ident.confidence;

    const device = this.batch?.devices.get(s.mac) ?? store.device(s.mac);
    const result: ObserveResult = { mac: s.mac, status: 'ignored', reason: '', vendor: row.vendor, model: row.model, created: false, updated: [], lease: null };
    const ip = s.ackedIp ?? s.clientIp ?? null;

    if (device) {
      result.status = 'device';
      result.vendor = device.vendor;
      result.model = device.model;
      // the note made when the device was made (or approved) stays until there is news
      result.reason = prev?.status === 'device' && prev.reason ? prev.reason : `${device.state} device`;
      const better = this.betterModel(device, row, prev);
      if (better) {
        const updated = store.updateDevice(s.mac, { model: better });
        this.batch?.devices.set(s.mac, updated);
        result.updated.push('model');
        result.model = better;
        result.reason = `model ${better} identified by ${ident.by ? describeBy(ident.by) : 'earlier evidence'} (was ${device.model})`;
        effects.push(() => log.info('device model identified', { mac: s.mac, vendor: device.vendor, model: better, was: device.model, by: ident.by }));
      }
      if (ident.conflict) result.reason = `${device.state} device; ${ident.conflict}`;
      this.touch(s.mac, s.at, ip);
    } else {
      const d = decide(s.mac, row, ident, settings, now, ADDRESS_SOURCES.has(s.source) ? s.clientIp : undefined);
      result.status = d.status;
      result.reason = d.reason;
      if (d.status === 'device') {
        const made = this.create(row, ident, settings);
        this.batch?.devices.set(s.mac, made.device);
        result.reason = made.note;
        result.created = true;
        result.model = made.device.model;
        this.touch(s.mac, s.at, ip);
        const addr = s.ackedIp ?? s.offeredIp ?? s.requestedIp ?? s.clientIp ?? prev?.acked_ip ?? prev?.offered_ip ?? undefined;
        const fields = { mac: s.mac, vendor: made.device.vendor, model: made.device.model, tenant: made.device.tenant, source: made.device.source, ip: addr, relay: row.relay ?? undefined, interface: row.interface ?? undefined };
        // the security line is the record (it goes to journald with the rest unless security_log is set)
        effects.push(() => {
          log.security('device-created', fields);
          if (made.note) log.debug('unprovisioned device created', { mac: s.mac, note: made.note });
        });
      } else if (prev?.status !== d.status || prev?.reason !== d.reason) {
        const fields = { mac: s.mac, status: d.status, vendor: row.vendor ?? undefined, reason: d.reason, interface: row.interface ?? undefined };
        effects.push(() => (d.status === 'pending' ? log.info('phone seen, not created', fields) : log.debug('sighting ignored', fields)));
      }
    }
    row.status = result.status;
    row.reason = result.reason;
    this.keep(row);
    result.lease = this.lease(s, now, effects);
    return result;
  }

  private readonly idCache = new Map<string, Identification[]>();

  /** registry.identify, remembered per OUI and vendor class (a boot storm repeats them). */
  private identify(mac: Mac, vendorClass: string | null, userAgent: string | undefined): Identification[] {
    const { registry } = this.deps;
    if (userAgent !== undefined) return registry.identify({ mac, vendorClass: vendorClass ?? undefined, userAgent });
    const key = `${macOui(mac)}|${vendorClass ?? ''}|${vendorClass === null ? 0 : 1}`;
    let ids = this.idCache.get(key);
    if (!ids) {
      if (this.idCache.size >= 10_000) this.idCache.clear();
      ids = registry.identify({ mac, vendorClass: vendorClass ?? undefined });
      this.idCache.set(key, ids);
    }
    // an OUI identification names the MAC it was made for
    return ids.map((i) => (i.by === 'oui' ? { ...i, mac } : i));
  }

  /** The model an unprovisioned, discovered device should now have, or null to keep its own. */
  private betterModel(device: DeviceRow, row: SightingRow, prev: SightingRow | undefined): string | null {
    if (!row.model || row.model === device.model) return null;
    if (device.state !== 'unprovisioned' || !DISCOVERY_SOURCES.has(device.source)) return null;
    if (row.vendor !== device.vendor) return null;
    // a model named with the same confidence as before is no news (the device may have been corrected by hand)
    if (prev?.model === row.model && prev.confidence >= row.confidence) return null;
    if (!this.deps.registry.model(device.vendor, row.model)) return null;
    return row.model;
  }

  private create(row: SightingRow, ident: Ident, settings: Settings): { device: DeviceRow; note: string } {
    const { store, registry } = this.deps;
    const disc = settings.discovery;
    const vendor = registry.get(row.vendor!)!;
    const notes: string[] = [];
    let template: string | null = null;
    let templateModel: string | undefined;
    if (disc.template) {
      const t = this.deps.templates?.().get(disc.template);
      if (!t) {
        template = disc.template;
      } else if (t.vendor !== vendor.id) {
        notes.push(`template ${disc.template} is for ${t.vendor}: none set`);
      } else if (!templateFits(t, disc.tenant)) {
        notes.push(`template ${disc.template} belongs to tenant ${t.tenant}: none set`);
      } else {
        template = disc.template;
        templateModel = t.model;
      }
    }
    let model = row.model ?? undefined;
    if (!model) {
      const d = defaultModel(vendor, templateModel ? { vendor: vendor.id, model: templateModel, name: disc.template } : undefined);
      model = d.model.id;
      notes.push(`model not identified (${ident.by ?? 'no evidence'}): ${model} assumed${d.assumed}`);
    }
    const device = store.addDevice({ mac: row.mac, tenant: disc.tenant, vendor: vendor.id, model, template, state: 'unprovisioned', source: row.source, label: '' });
    return { device, note: notes.join('; ') };
  }

  private lease(s: Sighting, now: number, effects: Effect[]): ObserveResult['lease'] {
    const { store, log } = this.deps;
    switch (s.msgType) {
      case 'ACK': {
        if (!s.fromServer || !s.ackedIp) return null;
        if (s.leaseSeconds === undefined) {
          // the answer to an INFORM: the client keeps the address it has; no new expiry
          return this.sightings.refreshLease(s.mac, s.ackedIp, now) ? 'recorded' : null;
        }
        const expires = now + s.leaseSeconds * 1000;
        store.putLease({ mac: s.mac, ip: s.ackedIp, interface: s.interface ?? '', source: 'capture', expires_at: expires, seen_at: now });
        const ended = this.sightings.endLeasesOfOthers(s.ackedIp, s.mac, now);
        effects.push(() => log.debug('lease recorded', { mac: s.mac, ip: s.ackedIp, expires: new Date(expires).toISOString(), interface: s.interface, ended_others: ended || undefined }));
        return 'recorded';
      }
      case 'RELEASE':
      case 'DECLINE':
      case 'NAK': {
        const ip = s.msgType === 'RELEASE' ? s.clientIp : s.msgType === 'DECLINE' ? s.requestedIp : undefined;
        if (!this.sightings.endLease(s.mac, ip ?? null, now)) return null;
        effects.push(() => log.debug('lease ended', { mac: s.mac, ip, by: s.msgType }));
        return 'ended';
      }
      default:
        return null;
    }
  }
}

// ------------------------------------------------------------------------------ pure parts

function merge(prev: SightingRow | undefined, s: Sighting): SightingRow {
  const client = !s.fromServer;
  const keep = <T>(now: T | undefined, before: T | null | undefined): T | null => (now !== undefined ? now : before ?? null);
  return {
    mac: s.mac,
    first_at: prev ? Math.min(prev.first_at, s.at) : s.at,
    last_at: prev ? Math.max(prev.last_at, s.at) : s.at,
    count: (prev?.count ?? 0) + 1,
    source: prev?.source ?? s.source,
    msg_type: keep(s.msgType, prev?.msg_type),
    vendor_class: keep(client ? s.vendorClass : undefined, prev?.vendor_class),
    param_list: keep(client && s.paramList ? s.paramList.join(',') : undefined, prev?.param_list),
    hostname: keep(client ? s.hostname : undefined, prev?.hostname),
    client_id: keep(client ? s.clientId : undefined, prev?.client_id),
    requested_ip: keep(s.requestedIp, prev?.requested_ip),
    offered_ip: keep(s.offeredIp, prev?.offered_ip),
    acked_ip: keep(s.ackedIp, prev?.acked_ip),
    // a renewal goes straight to the server, without the relay: the relay seen before stays
    relay: keep(s.relay, prev?.relay),
    option82: keep(s.option82, prev?.option82),
    interface: keep(s.interface, prev?.interface),
    vendor: prev?.vendor ?? null,
    model: prev?.model ?? null,
    confidence: prev?.confidence ?? 0,
    status: prev?.status ?? 'pending',
    reason: prev?.reason ?? '',
  };
}

interface Ident {
  vendor: string | null;
  model: string | null;
  /** of the evidence behind the model, else behind the vendor */
  confidence: number;
  by: Identification['by'] | null;
  /** evidence naming two vendors, in words */
  conflict: string | null;
}

function bestOf(ids: Identification[], prev: SightingRow | undefined): Ident {
  const vendors = [...new Set(ids.map((i) => i.vendor))];
  let conflict: string | null = null;
  if (vendors.length > 1) conflict = `the evidence names ${ids.map((i) => `${i.vendor} (${describeBy(i.by)})`).join(' and ')}`;
  const top = ids[0];
  let vendor = top?.vendor ?? null;
  const withModel = ids.find((i) => i.model && i.vendor === vendor);
  let model = withModel?.model ?? null;
  let confidence = withModel?.confidence ?? top?.confidence ?? 0;
  let by: Ident['by'] = withModel?.by ?? top?.by ?? null;
  // what a stronger piece of evidence said before (a User-Agent) is not forgotten at the next DHCP message
  if (prev?.vendor && prev.confidence > confidence && (vendor === null || vendor === prev.vendor)) {
    vendor = prev.vendor;
    model = prev.model ?? model;
    confidence = prev.confidence;
    by = null;
  } else if (!model && prev?.model && prev.vendor === vendor) {
    model = prev.model;
    confidence = Math.max(confidence, prev.confidence);
  }
  return { vendor, model, confidence, by, conflict };
}

function describeBy(by: Identification['by']): string {
  return by === 'oui' ? 'MAC OUI' : by === 'vendorClass' ? 'DHCP vendor class' : 'User-Agent';
}

/** Whether a new device may be made, and if not, why (in words for `apsctl sighting list`). */
export function decide(mac: Mac, row: SightingRow, ident: Ident, settings: Settings, now: number, from?: string): { status: SightingStatus; reason: string } {
  if (isLocallyAdministered(mac)) return { status: 'ignored', reason: 'locally administered MAC: no vendor OUI' };
  if (!ident.vendor) {
    return { status: 'ignored', reason: row.vendor_class ? `unknown OUI and unknown vendor class "${row.vendor_class}"` : 'unknown OUI and no vendor class' };
  }
  if (ident.conflict) return { status: 'pending', reason: ident.conflict };
  const d = settings.discovery;
  if (!d.autoCreate) return { status: 'pending', reason: 'auto_create = false' };
  if (d.autoCreateUntil && now > d.autoCreateUntil) return { status: 'pending', reason: `auto_create_until ${new Date(d.autoCreateUntil).toISOString()} has passed` };
  if (d.allowVendors.length && !d.allowVendors.includes(ident.vendor)) {
    return { status: 'pending', reason: `vendor ${ident.vendor} is not in allow_vendors (${d.allowVendors.join(', ')})` };
  }
  if (!d.allowSubnets.empty) {
    const seen = [
      ['relay', row.relay],
      ['offered', row.offered_ip],
      ['acked', row.acked_ip],
      ['requested', row.requested_ip],
      ['address', from],
    ].filter((x): x is [string, string] => !!x[1] && x[1] !== '0.0.0.0');
    if (!seen.length) return { status: 'pending', reason: `no relay or offered address yet to check against allow_subnets (${d.allowSubnets.text})` };
    if (!seen.some(([, ip]) => d.allowSubnets.has(ip))) {
      return { status: 'pending', reason: `${seen.map(([k, ip]) => `${k} ${ip}`).join(', ')} outside allow_subnets (${d.allowSubnets.text})` };
    }
  }
  return { status: 'device', reason: '' };
}
