/**
 * SIP plug-and-play: a phone fresh out of the box multicasts
 *
 *     SUBSCRIBE sip:224.0.1.75:5060
 *     Event: ua-profile;profile-type="device";vendor="…";model="…";version="…"
 *     Accept: application/url
 *     Expires: 0
 *
 * and expects 200 OK, then a NOTIFY (Content-Type: application/url, Subscription-State:
 * terminated;reason=timeout, the same Event) whose body is only the provisioning URL. `[pnp]
 * enabled = true` makes apsd that answerer, and each SUBSCRIBE a sighting for the inventory
 * (the From user often carries the MAC, e.g. `MAC%3a7C2F80E0D605`).
 *
 * Sockets: the group socket is bound to 224.0.1.75:<port> itself (SO_REUSEADDR), not to
 * 0.0.0.0, so it receives only datagrams sent to the group: unicast SIP to this host's port
 * 5060 (a PBX on the same machine) is never taken. Responses leave from it (the kernel picks
 * the source address); NOTIFYs leave from a second, unicast socket on a kernel-chosen port,
 * which also receives their answers.
 *
 * Where answers go: only to the address the SUBSCRIBE came from (the port the Contact or Via
 * names when it is that same address). A forged Contact naming some other host therefore
 * cannot turn apsd into a NOTIFY cannon aimed at a third party.
 *
 * A retransmitted SUBSCRIBE (same branch, Call-ID and CSeq; AudioCodes phones repeat theirs
 * for about 5 s) gets the same response again and no second NOTIFY. A SUBSCRIBE for another
 * event gets 489 Bad Event; other requests and responses are ignored; unreadable datagrams
 * are dropped and counted. A banned source is ignored.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import type { App, Service } from '../app.js';
import { ApsError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseMac, type Mac } from '../mac.js';
import { applyIpMap, compileIpMap } from '../render/ipmap.js';
import { LeaseLookup } from '../store/lease-lookup.js';
import { buildResponse, getHeader, headerParam, parseSip, randomToken, type SipRequest } from '../sip/message.js';
import { buildNotify, newBranch, startClientTransaction, type ClientTransaction, type SipTimers } from '../sip/notify.js';
import type { Inventory, Sighting } from '../inventory/inventory.js';
import { modelKey } from '../vendors/registry.js';
import { inventoryOf } from './capture.js';

export const PNP_GROUP = '224.0.1.75';
export const PNP_EVENT = 'ua-profile';

// ------------------------------------------------------------------------------ pure parts

export interface PnpSubscribe {
  /** the event package, lower case: ua-profile for a PnP request */
  event: string;
  /** the Event header as received */
  eventHeader: string;
  profileType: string | null;
  vendor: string | null;
  model: string | null;
  version: string | null;
  /** from the From or To user (MAC%3a…, or 12 hex digits), else null */
  mac: Mac | null;
  userAgent: string | null;
}

function unquote(v: string | undefined): string | null {
  if (v === undefined) return null;
  const s = v.trim();
  const u = s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/\\(.)/g, '$1') : s;
  return u === '' ? null : u;
}

/** The user part of a name-addr or addr-spec (`"x" <sip:user@host>;tag=…`), %-decoded; null if none. */
export function sipUser(value: string | undefined): string | null {
  if (!value) return null;
  const lt = value.indexOf('<');
  const uri = lt >= 0 ? value.slice(lt + 1, value.indexOf('>', lt) < 0 ? undefined : value.indexOf('>', lt)) : value.split(';')[0];
  const m = /^\s*sips?:([^@;>]+)@/i.exec(uri);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return m[1];
  }
}

/** A MAC in a SIP user: `MAC:7C2F80E0D605`, `mac%3a7c2f80e0d605`, `001565aabbcc`, `00:15:65:aa:bb:cc`. */
export function macFromSipUser(user: string | null): Mac | null {
  if (!user) return null;
  const rest = user.replace(/^mac[:=_-]?/i, '');
  return parseMac(rest);
}

/** Reads a SUBSCRIBE as a PnP request. */
export function readPnpSubscribe(req: SipRequest): PnpSubscribe {
  const eventHeader = getHeader(req, 'Event') ?? '';
  const semi = eventHeader.indexOf(';');
  const event = (semi < 0 ? eventHeader : eventHeader.slice(0, semi)).trim().toLowerCase();
  const p = (name: string) => unquote(headerParam(eventHeader, name));
  return {
    event,
    eventHeader,
    profileType: p('profile-type'),
    vendor: p('vendor'),
    model: p('model'),
    version: p('version'),
    mac: macFromSipUser(sipUser(getHeader(req, 'From'))) ?? macFromSipUser(sipUser(getHeader(req, 'To'))),
    userAgent: getHeader(req, 'User-Agent') ?? null,
  };
}

/** host and port of a SIP URI in a Contact value, when the host is an IP literal. */
export function contactTarget(contact: string | undefined): { host: string; port: number; uri: string } | null {
  if (!contact) return null;
  const lt = contact.indexOf('<');
  const uri = (lt >= 0 ? contact.slice(lt + 1, contact.indexOf('>', lt)) : contact.split(';')[0]).trim();
  const m = /^sips?:(?:[^@]*@)?(\[[0-9a-fA-F:.]+\]|[0-9.]+)(?::(\d{1,5}))?(?:[;?].*)?$/i.exec(uri);
  if (!m) return null;
  const host = m[1].replace(/^\[|\]$/g, '');
  if (!net.isIP(host)) return null;
  const port = m[2] ? Number(m[2]) : 5060;
  if (port < 1 || port > 65535) return null;
  return { host, port, uri };
}

/** Where the response to a request from `src` goes (RFC 3261 18.2.2, RFC 3581): the source address; rport → source port, else the Via port or 5060. */
export function responsePort(via: string | undefined, srcPort: number): number {
  if (!via) return srcPort;
  if (headerParam(via, 'rport') !== undefined) return srcPort;
  const sentBy = via.split(';')[0].trim().split(/\s+/)[1] ?? '';
  const m = /^(?:\[[^\]]*\]|[^:\[\]]+)(?::(\d{1,5}))?$/.exec(sentBy);
  if (!m) return srcPort;
  const port = m[1] ? Number(m[1]) : 5060;
  return port >= 1 && port <= 65535 ? port : srcPort;
}

// ------------------------------------------------------------------------------ the service

export interface PnpCounters {
  /** datagrams received on the group */
  received: number;
  /** PnP SUBSCRIBEs answered 200 (retransmissions not counted) */
  answered: number;
  /** SUBSCRIBEs for another event, answered 489 */
  badEvent: number;
  /** unreadable datagrams, dropped */
  malformed: number;
  /** other requests and responses on the group, ignored */
  ignored: number;
  /** retransmitted SUBSCRIBEs answered from the transaction cache */
  retransmissions: number;
  /** from banned addresses, ignored */
  banned: number;
  notifyOk: number;
  notifyFailed: number;
  /** NOTIFYs not sent because too many were in flight */
  notifySkipped: number;
  sightings: number;
}

export interface PnpService extends Service {
  readonly counters: PnpCounters;
  /** the group port and the NOTIFY socket's port, once started */
  ports(): { group: number; notify: number } | null;
}

export interface PnpOptions {
  /** default: the App's shared inventory (auto-create rules apply) */
  inventory?: Pick<Inventory, 'observe'>;
  timers?: SipTimers;
  /** NOTIFY transactions in flight at most (each lives up to Timer F, 32 s) */
  maxInFlight?: number;
}

/** How long a server transaction's response is kept for retransmitted requests (Timer J, 64·T1). */
const TRANSACTION_MS = 32_000;
const MAX_TRANSACTIONS = 4096;
/** device sources whose model discovery may still correct (as the inventory does) */
const DISCOVERED = new Set(['dhcp', 'pnp', 'scan', 'http']);

/** null unless `[pnp] enabled = true`. */
export function createPnpService(app: App, opts: PnpOptions = {}): PnpService | null {
  if (!app.config.settings.pnp.enabled) return null;
  return new SipPnpService(app, opts);
}

/** The first IPv4 address of an interface, or null. */
function interfaceAddress(ifname: string): string | null {
  const a = (os.networkInterfaces()[ifname] ?? []).find((x) => x.family === 'IPv4');
  return a?.address ?? null;
}

function ipv4Int(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0) >>> 0;
}

/** This host's address on the subnet of `remote` (what a phone there can reach), else `fallback`. */
export function localAddressFor(remote: string, fallback: string | null): string {
  if (net.isIPv4(remote)) {
    const r = ipv4Int(remote);
    for (const list of Object.values(os.networkInterfaces())) {
      for (const a of list ?? []) {
        if (a.family !== 'IPv4' || a.internal) continue;
        const prefix = Number(a.cidr?.split('/')[1] ?? 32);
        const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
        if (((ipv4Int(a.address) & mask) >>> 0) === ((r & mask) >>> 0)) return a.address;
      }
    }
  }
  if (fallback) return fallback;
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

class SipPnpService implements PnpService {
  readonly name = 'sip-pnp';
  readonly counters: PnpCounters = {
    received: 0, answered: 0, badEvent: 0, malformed: 0, ignored: 0, retransmissions: 0, banned: 0,
    notifyOk: 0, notifyFailed: 0, notifySkipped: 0, sightings: 0,
  };
  private group: dgram.Socket | null = null;
  private uc: dgram.Socket | null = null;
  private ifAddr: string | null = null;
  private bound: { ifname: string; port: number } | null = null;
  private readonly log: Logger;
  /** server transactions: key → response bytes and where they went */
  private readonly served = new Map<string, { buf: Buffer; host: string; port: number; at: number }>();
  /** NOTIFY client transactions by branch */
  private readonly inFlight = new Map<string, ClientTransaction>();
  private readonly maxInFlight: number;
  private seq = 0;
  private leases: LeaseLookup | null = null;

  constructor(private readonly app: App, private readonly opts: PnpOptions) {
    this.log = app.log.child({ service: 'sip-pnp' });
    this.maxInFlight = opts.maxInFlight ?? 1024;
  }

  ports(): { group: number; notify: number } | null {
    if (!this.group || !this.uc) return null;
    return { group: this.group.address().port, notify: this.uc.address().port };
  }

  describe(): Record<string, string> {
    const b = this.bound;
    return b ? { pnp: `${PNP_GROUP}:${this.group?.address().port ?? b.port}${b.ifname ? `@${b.ifname}` : ''}` } : {};
  }

  async start(): Promise<void> {
    const s = this.app.config.settings.pnp;
    const ifname = s.interface;
    let ifAddr: string | null = null;
    if (ifname) {
      ifAddr = interfaceAddress(ifname);
      if (!ifAddr) {
        throw new ApsError('APS_ERR_CONFIG', `interface ${ifname} does not exist or has no IPv4 address: cannot join ${PNP_GROUP}`, {
          key: '[pnp] interface', expected: `one of ${Object.keys(os.networkInterfaces()).filter((n) => n !== 'lo').join(', ') || '(no interface with an address)'}, or empty for the default route's`,
        });
      }
    }
    const group = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    const uc = dgram.createSocket({ type: 'udp4' });
    const bindOne = (sock: dgram.Socket, port: number, address: string | undefined) =>
      new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind({ port, address }, () => {
          sock.removeListener('error', reject);
          resolve();
        });
      });
    try {
      await bindOne(group, s.port, PNP_GROUP);
      group.addMembership(PNP_GROUP, ifAddr ?? undefined);
      await bindOne(uc, 0, ifAddr ?? undefined);
    } catch (e) {
      for (const x of [group, uc]) {
        try {
          x.close();
        } catch {
          // never bound
        }
      }
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new ApsError('APS_ERR_BIND', `SIP PnP cannot listen on ${PNP_GROUP}:${s.port}${ifname ? ` on ${ifname}` : ''}: ${code}`, {
        key: '[pnp] port', expected: code === 'EADDRINUSE' ? 'a port no other program holds exclusively (a PBX on the same host must bind its own address, or set SO_REUSEADDR)' : 'a free UDP port and an interface that can join multicast groups',
      });
    }
    group.on('message', (buf, rinfo) => this.onGroupMessage(buf, rinfo));
    group.on('error', (e) => this.log.error('pnp socket error', { err: e.message }));
    uc.on('message', (buf, rinfo) => this.onUnicastMessage(buf, rinfo));
    uc.on('error', (e) => this.log.error('pnp notify socket error', { err: e.message }));
    this.group = group;
    this.uc = uc;
    this.ifAddr = ifAddr;
    this.bound = { ifname, port: s.port };
    this.log.info('pnp listening', { group: PNP_GROUP, port: group.address().port, interface: ifname || '(default)', notify_port: uc.address().port });
  }

  async stop(): Promise<void> {
    for (const tx of this.inFlight.values()) tx.cancel('stopping');
    this.inFlight.clear();
    this.served.clear();
    const close = (s: dgram.Socket | null) => new Promise<void>((r) => (s ? s.close(() => r()) : r()));
    const g = this.group;
    const u = this.uc;
    this.group = this.uc = null;
    this.bound = null;
    try {
      g?.dropMembership(PNP_GROUP, this.ifAddr ?? undefined);
    } catch {
      // the interface went away: leaving the group happens with the close anyway
    }
    await Promise.all([close(g), close(u)]);
  }

  reload(): void {
    const s = this.app.config.settings.pnp;
    const b = this.bound;
    if (!b) return;
    if (!s.enabled || s.interface !== b.ifname || s.port !== b.port) {
      this.log.warn('[pnp] changes take effect at the next restart', { enabled: s.enabled, interface: s.interface, port: s.port });
    }
  }

  // ------------------------------------------------------------------ receiving

  private onUnicastMessage(buf: Buffer, rinfo: dgram.RemoteInfo): void {
    const p = parseSip(buf);
    if (!p.ok || p.msg.kind !== 'response') return;
    const via = getHeader(p.msg, 'Via');
    const branch = via ? headerParam(via, 'branch') : undefined;
    const tx = branch ? this.inFlight.get(branch) : undefined;
    if (!tx) {
      this.log.debug('pnp: stray response ignored', { ip: rinfo.address, status: p.msg.status });
      return;
    }
    tx.receive(p.msg);
  }

  private onGroupMessage(buf: Buffer, rinfo: dgram.RemoteInfo): void {
    this.counters.received++;
    const ip = rinfo.address; // udp4: a plain IPv4 address
    try {
      // another process (apsctl) may have written devices or bans since the last request
      if (this.app.store.pollChanges()) this.app.guard.reloadBans();
      if (this.app.guard.banned(ip)) {
        this.counters.banned++;
        return;
      }
      const p = parseSip(buf);
      if (!p.ok) {
        this.counters.malformed++;
        this.log.debug('pnp datagram dropped', { ip, reason: p.reason, bytes: buf.length });
        return;
      }
      const msg = p.msg;
      if (msg.kind !== 'request' || msg.method.toUpperCase() !== 'SUBSCRIBE') {
        this.counters.ignored++;
        this.log.debug('pnp: not a SUBSCRIBE, ignored', { ip, what: msg.kind === 'request' ? msg.method : `response ${msg.status}` });
        return;
      }
      this.onSubscribe(msg, ip, rinfo.port);
    } catch (e) {
      // never fail per packet
      this.counters.malformed++;
      this.log.warn('pnp request failed', { ip, err: e instanceof ApsError ? e.describe() : (e as Error).message });
    }
  }

  private sendTo(sock: dgram.Socket | null, buf: Buffer, host: string, port: number): void {
    sock?.send(buf, port, host, (err) => {
      if (err) this.log.warn('pnp send failed', { ip: host, port, err: err.message });
    });
  }

  private onSubscribe(req: SipRequest, ip: string, srcPort: number): void {
    const via = getHeader(req, 'Via')!;
    const key = `${ip}|${headerParam(via, 'branch') ?? ''}|${getHeader(req, 'Call-ID')}|${getHeader(req, 'CSeq')}`;
    const now = Date.now();
    this.expire(now);
    const again = this.served.get(key);
    if (again) {
      this.counters.retransmissions++;
      this.sendTo(this.group, again.buf, again.host, again.port);
      return;
    }
    const respPort = responsePort(via, srcPort);
    const toTag = randomToken(6);
    const reqId = `pnp-${(++this.seq).toString(36)}`;
    const info = readPnpSubscribe(req);
    const remember = (buf: Buffer) => {
      if (this.served.size >= MAX_TRANSACTIONS) this.served.delete(this.served.keys().next().value as string);
      this.served.set(key, { buf, host: ip, port: respPort, at: now });
      this.sendTo(this.group, buf, ip, respPort);
    };

    if (info.event !== PNP_EVENT) {
      this.counters.badEvent++;
      remember(buildResponse(req, 489, 'Bad Event', [['Allow-Events', PNP_EVENT]], { toTag, source: { address: ip, port: srcPort } }));
      this.log.info('pnp subscribe refused: not ua-profile', { ip, event: info.event || '(none)', req: reqId });
      return;
    }

    const { registry, store } = this.app;
    const settings = this.app.config.settings;
    // the MAC: from the request, else the address's current DHCP lease
    let mac = info.mac;
    let macBy = mac ? 'sip-user' : '';
    const ids = registry.identify({ mac: mac ?? undefined, userAgent: info.userAgent ?? undefined });
    if (!mac) {
      const fromUa = ids.find((i) => i.mac)?.mac;
      if (fromUa) {
        mac = fromUa;
        macBy = 'user-agent';
      }
    }
    if (!mac) {
      const held = (this.leases ??= new LeaseLookup(store)).holderOf(ip, now);
      if (held) {
        mac = held;
        macBy = 'lease';
      }
    }
    const vendorId = claimedVendor(this.app, info.vendor) ?? ids[0]?.vendor ?? (mac ? registry.vendorOfMac(mac)?.id : undefined) ?? null;
    const model = (vendorId && info.model ? claimedModel(this.app, vendorId, info.model) : null) ?? ids.find((i) => i.model && i.vendor === vendorId)?.model ?? info.model;
    const device = mac ? store.device(mac) : undefined;
    const tenantId = device?.tenant ?? settings.discovery.tenant;
    const tenant = this.app.config.tenants.get(tenantId) ?? this.app.config.tenants.get('default');
    const url = applyIpMap(settings.provisioning.url, compileIpMap(tenant?.ipDnsMap ?? [], settings.ipDnsMap));

    const local = localAddressFor(ip, this.ifAddr);
    const ports = this.ports()!;
    const contactHost = `${local}:${ports.group}`;
    remember(buildResponse(req, 200, 'OK', [['Contact', `<sip:aps@${contactHost}>`], ['Expires', '0']], { toTag, source: { address: ip, port: srcPort } }));
    this.counters.answered++;

    this.notify(req, info, { ip, srcPort, toTag, url, local, reqId, mac });

    if (mac) {
      const sighting: Sighting = { mac, source: 'pnp', at: now, clientIp: ip, interface: this.bound?.ifname || undefined, userAgent: info.userAgent ?? undefined };
      try {
        const r = (this.opts.inventory ?? inventoryOf(this.app)).observe(sighting);
        this.counters.sightings++;
        // the Event's model="…" is the phone's own word, like a User-Agent; a Sighting has no
        // field for it yet, so a discovered, still unprovisioned device of that vendor takes it here
        const claimed = vendorId && info.model ? claimedModel(this.app, vendorId, info.model) : null;
        const dev = r.status === 'device' && claimed ? store.device(mac) : undefined;
        if (dev && claimed && dev.vendor === vendorId && dev.model !== claimed && dev.state === 'unprovisioned' && DISCOVERED.has(dev.source)) {
          store.updateDevice(mac, { model: claimed });
          this.log.info('device model identified', { mac, vendor: dev.vendor, model: claimed, was: dev.model, by: 'pnp-event', req: reqId });
        }
      } catch (e) {
        this.log.error('pnp sighting not recorded', { mac, ip, err: (e as Error).message, req: reqId });
      }
    }
    this.log.info('pnp subscribe answered', {
      mac: mac ?? '-', ip, vendor: vendorId ?? info.vendor ?? '-', model: model ?? '-', version: info.version ?? undefined,
      mac_from: macBy || undefined, tenant: tenant?.id, url, req: reqId,
    });
  }

  private notify(req: SipRequest, info: PnpSubscribe, c: { ip: string; srcPort: number; toTag: string; url: string; local: string; reqId: string; mac: Mac | null }): void {
    if (this.inFlight.size >= this.maxInFlight) {
      this.counters.notifySkipped++;
      this.log.warn('pnp notify not sent: too many in flight', { ip: c.ip, in_flight: this.inFlight.size, req: c.reqId });
      return;
    }
    const uc = this.uc!;
    // the target: the Contact when it names the address the SUBSCRIBE came from, else that address and port
    const contact = contactTarget(getHeader(req, 'Contact'));
    const sameHost = contact !== null && contact.host === c.ip;
    const target = { host: c.ip, port: sameHost ? contact!.port : c.srcPort };
    const branch = newBranch();
    const base = {
      target,
      fromHost: c.local,
      localPort: uc.address().port,
      contentType: 'application/url',
      body: c.url,
      branch,
      callId: getHeader(req, 'Call-ID'),
      fromTag: c.toTag,
      cseq: 1,
      requestUri: sameHost ? contact!.uri : `sip:${c.ip}:${target.port}`,
      to: getHeader(req, 'From'),
      from: `${getHeader(req, 'To')};tag=${c.toTag}`,
      subscriptionState: 'terminated;reason=timeout',
      userAgent: 'aps',
    };
    let request: Buffer;
    try {
      request = buildNotify({ ...base, event: info.eventHeader });
    } catch {
      // an Event value our builder will not repeat verbatim (spaces in a quoted model): the package and profile type
      const pt = info.profileType && /^[\w.-]+$/.test(info.profileType) ? `;profile-type="${info.profileType}"` : '';
      request = buildNotify({ ...base, event: PNP_EVENT + pt });
    }
    const tx = startClientTransaction({
      request,
      branch,
      method: 'NOTIFY',
      timers: this.opts.timers,
      send: (buf) => this.sendTo(this.uc, buf, target.host, target.port),
    });
    this.inFlight.set(branch, tx);
    tx.done.then((r) => {
      this.inFlight.delete(branch);
      const fields = { mac: c.mac ?? '-', ip: target.host, port: target.port, status: r.status, attempts: r.attempts, ms: r.ms, req: c.reqId };
      if (r.ok) {
        this.counters.notifyOk++;
        this.log.info('pnp notify answered', fields);
      } else {
        this.counters.notifyFailed++;
        this.log.warn('pnp notify failed', { ...fields, reason: r.reason });
      }
    });
  }

  private expire(now: number): void {
    for (const [k, v] of this.served) {
      if (now - v.at < TRANSACTION_MS) break; // insertion order = age order
      this.served.delete(k);
    }
  }
}

/**
 * The model a PnP Event's model="…" names: an exact id or alias, else the longest model id the
 * value ends with (phones put a product prefix in front: "SIP-T46S" is a T46S).
 */
function claimedModel(app: App, vendorId: string, name: string): string | null {
  const exact = app.registry.model(vendorId, name);
  if (exact) return exact.id;
  const key = modelKey(name);
  let best: { id: string; len: number } | null = null;
  for (const m of app.registry.get(vendorId)?.models ?? []) {
    for (const k of [m.id, ...(m.aliases ?? [])].map(modelKey)) {
      if (k.length >= 3 && key.endsWith(k) && (!best || k.length > best.len)) best = { id: m.id, len: k.length };
    }
  }
  return best?.id ?? null;
}

/** The registry vendor a PnP Event's vendor="…" names (by id or name, any case), if any. */
function claimedVendor(app: App, name: string | null): string | null {
  if (!name) return null;
  const n = name.trim().toLowerCase();
  for (const v of app.registry.list()) if (v.id === n || v.name.toLowerCase() === n) return v.id;
  return null;
}
