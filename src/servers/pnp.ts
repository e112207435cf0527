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
 * A retransmitted SUBSCRIBE (same branch, Call-ID and CSeq; some phones repeat theirs for
 * about 5 s) gets the same response again and no second NOTIFY. A SUBSCRIBE for another
 * event gets 489 Bad Event; other requests and responses are ignored; unreadable datagrams
 * are dropped and counted. A banned source is ignored.
 */
import dgram from 'node:dgram';
import os from 'node:os';
import type { Service, ServiceStatus } from './service.js';
import type { Config, Tenant } from '../config/index.js';
import type { Guard } from '../provisioning/guard.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import { modelNamed, vendorNamed } from '../vendors/claims.js';
import { interfaceAddresses, localAddressFor } from '../net/address.js';
import { ApsError, describeError } from '../errors.js';
import { requestId, type Logger } from '../log.js';
import { parseMac, type Mac } from '../mac.js';
import { LeaseLookup } from '../store/lease-lookup.js';
import { buildResponse, getHeader, headerParam, parseSip, randomToken, type SipRequest } from '../wire/sip.js';
import { PNP_EVENT, PNP_GROUP, contactTarget, readPnpSubscribe, responsePort, type PnpSubscribe } from '../wire/pnp.js';
import { buildNotify, newBranch, startClientTransaction, type ClientTransaction, type SipTimers } from '../wire/sip-notify.js';
import type { Inventory, Sighting } from '../inventory/inventory.js';

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

export interface PnpDeps {
  config: () => Config;
  registry: VendorRegistry;
  store: Store;
  guard: Pick<Guard, 'banned' | 'reloadBans'>;
  /** the one inventory (auto-create rules apply) */
  inventory: Pick<Inventory, 'observe'>;
  log: Logger;
  /** the provisioning URL for the phones of a tenant that reach this host at `localIp` (src/provisioning/url.ts) */
  provisioningUrl: (tenant: Tenant | undefined, localIp: string) => string;
}

export interface PnpOptions {
  timers?: SipTimers;
  /** NOTIFY transactions in flight at most (each lives up to Timer F, 32 s) */
  maxInFlight?: number;
}

/** How long a server transaction's response is kept for retransmitted requests (Timer J, 64·T1). */
const TRANSACTION_MS = 32_000;
const MAX_TRANSACTIONS = 4096;

/** null unless `[pnp] enabled = true`. */
export function createPnpService(deps: PnpDeps, opts: PnpOptions = {}): PnpService | null {
  if (!deps.config().settings.pnp.enabled) return null;
  return new SipPnpService(deps, opts);
}

/** The first IPv4 address of an interface, or null. */
function interfaceAddress(ifname: string): string | null {
  return interfaceAddresses(ifname)[0]?.address ?? null;
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
  private leases: LeaseLookup | null = null;
  private watch: NodeJS.Timeout | undefined;
  private following = false;
  private stateSince = Date.now();
  private lastError = '';

  constructor(private readonly deps: PnpDeps, private readonly opts: PnpOptions) {
    this.log = deps.log.child({ service: 'sip-pnp' });
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
    const s = this.deps.config().settings.pnp;
    const ifname = s.interface;
    this.bound = { ifname, port: s.port };
    this.stateSince = Date.now();
    if (ifname) {
      const ifAddr = interfaceAddress(ifname);
      if (!ifAddr) {
        this.lastError = `interface ${ifname} does not exist or has no IPv4 address: cannot join ${PNP_GROUP}`;
        this.log.warn('pnp waiting for its interface: HTTP and TFTP keep serving; it joins the group when the interface is back', {
          interface: ifname, why: this.lastError, interfaces: Object.keys(os.networkInterfaces()).filter((n) => n !== 'lo').join(',') || '(none with an address)',
        });
      } else await this.open(ifAddr);
      // the group membership belongs to the interface: follow it going down, away and back
      this.watch = setInterval(() => void this.follow(), 1000);
      this.watch.unref();
    } else await this.open(null);
  }

  /** Once a second: leave when the interface lost its address, join again when it has one. */
  private async follow(): Promise<void> {
    const b = this.bound;
    if (!b || this.following) return;
    this.following = true;
    try {
      const now = interfaceAddress(b.ifname);
      if (this.group && now !== this.ifAddr) {
        this.lastError = now ? `the address of ${b.ifname} changed to ${now}` : `interface ${b.ifname} is down, gone or has no IPv4 address`;
        await this.closeSockets();
        this.stateSince = Date.now();
        this.log.warn('pnp waiting for its interface: HTTP and TFTP keep serving; it joins the group when the interface is back', { interface: b.ifname, why: this.lastError });
      }
      if (!this.group && now) {
        try {
          await this.open(now);
        } catch (e) {
          const msg = describeError(e);
          if (msg !== this.lastError) this.log.error('pnp cannot listen yet; retrying', { interface: b.ifname, err: msg });
          this.lastError = msg;
        }
      }
    } finally {
      this.following = false;
    }
  }

  private async open(ifAddr: string | null): Promise<void> {
    const s = this.deps.config().settings.pnp;
    const ifname = s.interface;
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
    this.stateSince = Date.now();
    this.lastError = '';
    this.log.info('pnp listening', { group: PNP_GROUP, port: group.address().port, interface: ifname || '(default)', notify_port: uc.address().port });
  }

  private async closeSockets(): Promise<void> {
    for (const tx of this.inFlight.values()) tx.cancel('stopping');
    this.inFlight.clear();
    this.served.clear();
    const close = (s: dgram.Socket | null) => new Promise<void>((r) => (s ? s.close(() => r()) : r()));
    const g = this.group;
    const u = this.uc;
    this.group = this.uc = null;
    try {
      g?.dropMembership(PNP_GROUP, this.ifAddr ?? undefined);
    } catch {
      // the interface went away: leaving the group happens with the close anyway
    }
    this.ifAddr = null;
    await Promise.all([close(g), close(u)]);
  }

  async stop(): Promise<void> {
    if (this.watch) clearInterval(this.watch);
    this.watch = undefined;
    this.bound = null;
    await this.closeSockets();
  }

  status(): ServiceStatus[] {
    const b = this.bound;
    if (!b) return [];
    return [{
      service: 'sip-pnp', ...(b.ifname ? { interface: b.ifname } : {}), state: this.group ? 'running' : 'waiting',
      since: new Date(this.stateSince).toISOString(), ...(this.lastError ? { lastError: this.lastError } : {}),
    }];
  }

  reload(): void {
    const s = this.deps.config().settings.pnp;
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
      if (this.deps.store.pollChanges()) this.deps.guard.reloadBans();
      if (this.deps.guard.banned(ip)) {
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
      this.log.warn('pnp request failed', { ip, err: describeError(e) });
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
    const reqId = requestId('pnp-');
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

    const { registry, store } = this.deps;
    const config = this.deps.config();
    const settings = config.settings;
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
    const vendorId = vendorNamed(registry, info.vendor) ?? ids[0]?.vendor ?? (mac ? registry.vendorOfMac(mac)?.id : undefined) ?? null;
    const claimed = vendorId && info.model ? modelNamed(registry, vendorId, info.model) : null;
    const model = claimed ?? ids.find((i) => i.model && i.vendor === vendorId)?.model ?? info.model;
    const device = mac ? store.device(mac) : undefined;
    const tenantId = device?.tenant ?? settings.discovery.tenant;
    const tenant = config.tenants.get(tenantId) ?? config.tenants.get('default');
    const local = localAddressFor(ip, this.ifAddr);
    const url = this.deps.provisioningUrl(tenant, local);

    const ports = this.ports()!;
    const contactHost = `${local}:${ports.group}`;
    remember(buildResponse(req, 200, 'OK', [['Contact', `<sip:aps@${contactHost}>`], ['Expires', '0']], { toTag, source: { address: ip, port: srcPort } }));
    this.counters.answered++;

    this.notify(req, info, { ip, srcPort, toTag, url, local, reqId, mac });

    if (mac) {
      // the Event's model="…" is the phone's own word, as strong as a User-Agent: the inventory's rules decide
      const sighting: Sighting = {
        mac, source: 'pnp', at: now, clientIp: ip, interface: this.bound?.ifname || undefined,
        userAgent: info.userAgent ?? undefined, model: claimed ?? undefined,
      };
      try {
        this.deps.inventory.observe(sighting);
        this.counters.sightings++;
      } catch (e) {
        this.deps.store.writeFailed('pnp sighting', e, this.log);
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
