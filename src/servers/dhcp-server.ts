/**
 * The built-in DHCP server of a voice subnet ([dhcp_server]): RFC 2131 on one interface, and
 * to each phone the provisioning option(s) its vendor's data asks for (dhcp.answers in
 * vendors/<id>/vendor.json), with this server's URL or address. Other clients get an address
 * and the subnet's basics, nothing phone-specific.
 *
 * Wire: requests arrive through a libpcap capture of `udp and dst port 67` on the configured
 * interface — the only way in Node to hear one interface's broadcasts (dgram has neither
 * SO_BINDTODEVICE nor IP_PKTINFO) — and replies leave as raw Ethernet frames on the same
 * interface (src/net/pcap.ts), so nothing is ever answered on another interface. The capture
 * is promiscuous: a frame not addressed to this server (another host's IP or MAC) is ignored,
 * so unicast renewals meant for another DHCP server are never NAKed.
 *
 * In full mode a UDP socket bound to <interface address>:67 (SO_REUSEADDR) exists only so that
 * the kernel does not answer unicast renewals and relayed requests with ICMP port-unreachable;
 * what it receives is discarded (the capture saw the same datagram). Binding the interface
 * address rather than 0.0.0.0 leaves the broadcasts of other interfaces to whoever else serves
 * there; another DHCP server on this host must then bind per interface (dnsmasq bind-interfaces
 * or bind-dynamic, which it needs anyway not to answer on this interface too) — a dnsmasq
 * binding the wildcard fails with "Address already in use". In inform mode there is no such
 * socket: the site's DHCP server may well run on this host with a wildcard socket on port 67,
 * and it must keep starting; a unicast INFORM from elsewhere then gets our ACK and, from the
 * kernel, an ICMP port-unreachable that an unconnected client socket ignores.
 *
 * Replies go where RFC 2131 §4.1 says: to the relay (giaddr, port 67) when relayed; NAK
 * broadcast; to ciaddr when the client has an address (RENEWING, INFORM); broadcast when the
 * client set the broadcast flag; else unicast to chaddr and yiaddr. A tagged request is
 * answered on its VLAN.
 *
 * Messages:
 *   DISCOVER  → OFFER: the client's current address, else its previous one if free (sticky per
 *               MAC), else the requested one if free, else an address never used, else the one
 *               that expired longest ago. No free address: no OFFER, a warning.
 *   REQUEST   SELECTING (server id): another server's id → ignored, our offer withdrawn; ours →
 *               ACK the address if it is free for this client, else NAK.
 *             INIT-REBOOT (requested address, no ciaddr): wrong network or not this client's
 *               address → NAK; this client's address → ACK; no record of the client → silence.
 *             RENEWING/REBINDING (ciaddr): this client's address → ACK; another's → NAK.
 *   DECLINE   the address is out of the pool for max(lease time, 10 min); the client will get
 *             another one (this is the conflict handling: no ARP or ping from the server).
 *   RELEASE   the address is free again (and kept as the client's previous address).
 *   INFORM    ACK with the options only (no address, no lease time), to ciaddr.
 * `mode = inform` answers INFORM only: the site's DHCP server keeps the addresses.
 *
 * Leases live in memory and in SQLite (src/store/dhcp-leases.ts): a restart keeps every one.
 * Changes of one event-loop turn are written in one transaction, and the ACKs of that turn are
 * sent after it commits. A bound lease also goes into the `leases` table (source dhcp-server),
 * so the guard's lease proof (tftp_secrets = lease) works as with captured leases.
 *
 * A malformed datagram is dropped and counted (a warning at most every 10 s with the count),
 * never fatal: every packet is handled inside a try/catch.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Service, ServiceStatus } from './service.js';
import type { Config, Tenant } from '../config/index.js';
import type { Inventory } from '../inventory/inventory.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import { LeasePool } from '../dhcp/pool.js';
import { decideLetGo, decideRequest } from '../dhcp/exchange.js';
import { encodeAnswers } from '../dhcp/answers.js';
import { interfaceAddresses, interfaceExists, intToIp, ipToInt } from '../net/address.js';
import { sightingFromDhcp } from '../inventory/dhcp-sighting.js';
import { ApsError, describeError } from '../errors.js';
import type { Fields, Logger } from '../log.js';
import type { Mac } from '../mac.js';
import { macColon } from '../mac.js';
import { superviseCapture, type SupervisedCapture } from '../net/capture.js';
import type { Settings } from '../config/settings.js';
import { DhcpLeases, type DhcpLeaseChanges, type DhcpLeaseRow, type DhcpLeaseState } from '../store/dhcp-leases.js';
import type { DhcpAnswer } from '../vendors/types.js';
import {
  BOOTREQUEST,
  decodeDhcp,
  encodeDhcp,
  optIp,
  optIps,
  optString,
  optSub,
  optU32,
  Opt,
  type DhcpMessage,
  type DhcpMessageType,
} from '../wire/dhcp.js';
import { dhcpFromFrame, frameForDhcp, LINKTYPE_ETHERNET, DHCP_CLIENT_PORT, DHCP_SERVER_PORT } from '../wire/frame.js';

/** How long an offered address is held for the client it was offered to. */
const OFFER_HOLD_MS = 60_000;
/** A declined address stays out of the pool at least this long (else one lease time). */
const MIN_DECLINE_HOLD_MS = 10 * 60_000;
/** At most one "malformed datagram" (or "no free address") warning per this interval; the others are counted. */
const MALFORMED_WARN_EVERY_MS = 10_000;
const BROADCAST_IP = '255.255.255.255';
const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';
const ZERO = '0.0.0.0';
/** Options every reply may carry whether or not the client asked (RFC 2131 §4.3.1 table 3). */
const BASICS = new Set<number>([Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS, Opt.DOMAIN_NAME, Opt.LEASE_TIME, Opt.SERVER_ID, Opt.RENEWAL_TIME, Opt.REBINDING_TIME]);
const OPT_NTP = 42;

// ------------------------------------------------------------------------------ the service

export interface DhcpServerCounters {
  /** frames the capture delivered */
  received: number;
  /** dropped: not a well-formed DHCP request */
  malformed: number;
  /** well-formed but not for us: another server's, a reply, a message this mode does not answer */
  ignored: number;
  discover: number;
  request: number;
  decline: number;
  release: number;
  inform: number;
  offers: number;
  acks: number;
  naks: number;
  /** DISCOVERs left unanswered because no address was free */
  exhausted: number;
  /** exceptions caught at the packet boundary */
  errors: number;
}

interface Arrival {
  vlan?: number;
  srcMac: string | null;
  srcIp: string;
}

interface Pending {
  changes: DhcpLeaseChanges;
  /** `durable`: an ACK or NAK that may leave only once the changes of its turn are committed */
  frames: { frame: Buffer; durable: boolean }[];
}

function emptyPending(): Pending {
  return { changes: { rows: [], leases: [], seen: [] }, frames: [] };
}

export interface DhcpServerDeps {
  config: () => Config;
  /** changes at every configuration reload */
  generation: () => number;
  store: Store;
  registry: VendorRegistry;
  /** the one inventory: the server's clients are sightings like the captured ones */
  inventory: Inventory;
  log: Logger;
  /** the provisioning URL for the phones of a tenant that reach this host at `localIp` (src/provisioning/url.ts) */
  provisioningUrl: (tenant: Tenant | undefined, localIp: string) => string;
}

export interface InterfaceInfo {
  ifname: string;
  ip: string;
  mac: string;
  netmask: string;
}

/** The interface's first IPv4 address and its MAC; throws when it has none. */
export function interfaceInfo(ifname: string, file = ''): InterfaceInfo {
  const a = interfaceAddresses(ifname)[0];
  if (!a) {
    throw new ApsError('APS_ERR_CONFIG', interfaceExists(ifname) ? `interface ${ifname} has no IPv4 address` : `no interface "${ifname}" with an address`, {
      file, key: '[dhcp_server] interface',
      expected: 'an interface that is up with an IPv4 address on the voice subnet (it is the server identifier)',
    });
  }
  return { ifname, ip: a.address, mac: a.mac, netmask: a.netmask };
}

/** null when [dhcp_server] is not enabled. */
export function createDhcpServerService(deps: DhcpServerDeps): Service | null {
  if (!deps.config().settings.dhcpServer.enabled) return null;
  return new DhcpServer(deps);
}

export class DhcpServer implements Service {
  readonly name = 'dhcp-server';
  readonly counters: DhcpServerCounters = {
    received: 0, malformed: 0, ignored: 0, discover: 0, request: 0, decline: 0, release: 0, inform: 0,
    offers: 0, acks: 0, naks: 0, exhausted: 0, errors: 0,
  };
  readonly pool = new LeasePool();
  private readonly ifname: string;
  /** the interface as it was when the running capture opened; undefined before */
  private current?: InterfaceInfo;
  /** only read where a capture runs (frames arrive only then) */
  private get iface(): InterfaceInfo {
    return this.current!;
  }
  /** a capture child runs on the interface as `iface` describes it */
  private live = false;
  /** the interface's MAC as 12 hex digits and its subnet's broadcast address, for the per-frame checks */
  private ifaceMacHex = '';
  private subnetBroadcast = '';
  private ifaceOnSubnet = false;
  private capture?: SupervisedCapture;
  private sock?: dgram.Socket;
  private leases!: DhcpLeases;
  private log: Logger;
  private pending = emptyPending();
  private flushQueued = false;
  private lastMalformedWarn = 0;
  private malformedSinceWarn = 0;
  private lastExhaustedWarn = 0;
  private urlCache = new Map<string, { url: string; host: string; ip: string }>();
  private urlGeneration = -1;

  constructor(private readonly deps: DhcpServerDeps) {
    this.ifname = deps.config().settings.dhcpServer.interface;
    this.log = deps.log.child({ iface: this.ifname });
  }

  private get settings(): Settings {
    return this.deps.config().settings;
  }

  private get iniFile(): string {
    const dir = this.deps.config().dir;
    return dir ? path.join(dir, 'aps.ini') : '';
  }

  async start(): Promise<void> {
    this.configurePool();
    this.leases = new DhcpLeases(this.deps.store);
    const now = Date.now();
    this.leases.purgeExpiredOffers(now);
    this.pool.load(this.leases.all());
    // the capture runs in a child process that waits for the interface and its address, and is
    // started again when the interface goes down, away or comes back (src/net/capture.ts)
    const cap = superviseCapture({
      ifname: this.ifname,
      filter: `udp and dst port ${DHCP_SERVER_PORT}`,
      onFrame: (frame, linktype) => this.onFrame(frame, linktype),
      ready: () => {
        const a = interfaceAddresses(this.ifname)[0];
        if (!a) return `interface ${this.ifname} has no IPv4 address`;
        if (this.live && this.current && a.address !== this.current.ip) return `the address of ${this.ifname} changed from ${this.current.ip} to ${a.address}`;
        return null;
      },
      onOpen: (linktype) => {
        if (linktype !== LINKTYPE_ETHERNET) return `interface ${this.ifname} is not Ethernet (link type ${linktype})`;
        try {
          this.adopt();
        } catch (e) {
          return describeError(e);
        }
      },
      onState: (st) => {
        if (st.state === 'running') {
          this.log.info('DHCP server listening', {
            mode: this.settings.dhcpServer.mode, server_id: this.current?.ip,
            range: `${this.settings.dhcpServer.rangeStart}-${this.settings.dhcpServer.rangeEnd}`, leases: this.pool.count('bound', Date.now()), restarts: st.restarts,
          });
        } else {
          this.live = false;
          this.log.warn('DHCP server waiting for its interface: HTTP and TFTP keep serving; it resumes by itself', { why: st.lastError });
        }
      },
    });
    this.capture = cap;
    const f = await cap.first;
    if (!f.ok && f.permanent) {
      await cap.close();
      this.capture = undefined;
      const expected = /not Ethernet/.test(f.error) ? 'an Ethernet interface (or a VLAN or bridge on one)' : f.expected;
      throw new ApsError('APS_ERR_CAPTURE', f.error, { file: this.iniFile, key: '[dhcp_server] interface', expected });
    }
  }

  /** Takes the interface's address and MAC as they are now (the capture just opened on it). */
  private adopt(): void {
    const before = this.current?.ip;
    this.current = interfaceInfo(this.ifname, this.iniFile);
    this.ifaceMacHex = this.iface.mac.replace(/:/g, '').toLowerCase();
    const mask = ipToInt(this.iface.netmask);
    this.subnetBroadcast = intToIp(((ipToInt(this.iface.ip) & mask) | ~mask) >>> 0);
    this.configurePool();
    this.live = true;
    this.urlGeneration = -1;
    if (this.settings.dhcpServer.mode === 'full' && (before !== this.iface.ip || !this.sock)) {
      const old = this.sock;
      this.sock = undefined;
      old?.close();
      void this.bindQuietSocket().then((s) => {
        if (this.capture) this.sock = s;
        else s?.close();
      });
    }
  }

  async stop(): Promise<void> {
    this.flush();
    const cap = this.capture;
    this.capture = undefined;
    await cap?.close();
    const s = this.sock;
    this.sock = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  status(): ServiceStatus[] {
    const c = this.capture;
    if (!c) return [];
    return [{ service: 'dhcp-server', interface: this.ifname, state: c.status.state, since: new Date(c.status.since).toISOString(), ...(c.status.lastError ? { lastError: c.status.lastError } : {}) }];
  }

  reload(): void {
    const s = this.settings.dhcpServer;
    if (!s.enabled || s.interface !== this.ifname) {
      this.log.warn('[dhcp_server] enabled and interface take effect at the next restart');
    }
    try {
      this.configurePool();
    } catch (e) {
      this.log.error('DHCP server keeps its previous range', { err: describeError(e) });
    }
    this.urlGeneration = -1;
  }

  describe(): Record<string, string> {
    const s = this.settings.dhcpServer;
    return { dhcp_server: this.ifname, dhcp_mode: s.mode, dhcp_range: `${s.rangeStart}-${s.rangeEnd}` };
  }

  private configurePool(): void {
    const s = this.settings.dhcpServer;
    const where = { file: this.iniFile, key: '[dhcp_server] range' };
    if (!net.isIPv4(s.rangeStart) || !net.isIPv4(s.rangeEnd)) {
      if (s.mode === 'inform') return;
      throw new ApsError('APS_ERR_CONFIG', 'the DHCP server needs an address range', { ...where, expected: 'first-last, e.g. 10.20.0.100-10.20.0.199' });
    }
    const a = ipToInt(s.rangeStart);
    const b = ipToInt(s.rangeEnd);
    const mask = ipToInt(s.netmask);
    if (a > b) throw new ApsError('APS_ERR_CONFIG', `the range ${s.rangeStart}-${s.rangeEnd} runs backwards`, { ...where, expected: 'the lower address first' });
    if (((a & mask) >>> 0) !== ((b & mask) >>> 0)) {
      throw new ApsError('APS_ERR_CONFIG', `${s.rangeStart} and ${s.rangeEnd} are not on one subnet of netmask ${s.netmask}`, { ...where, expected: 'a range inside one subnet' });
    }
    this.pool.configure({ start: s.rangeStart, end: s.rangeEnd, netmask: s.netmask, reserved: [this.current?.ip ?? '', s.router].filter(Boolean) });
    if (!this.current) return;
    this.ifaceOnSubnet = this.pool.onSubnet(this.iface.ip);
    if (!this.ifaceOnSubnet) {
      this.log.warn('the range is not on the subnet of the interface: only requests relayed from that subnet are answered', {
        range: `${s.rangeStart}-${s.rangeEnd}`, netmask: s.netmask, server_id: this.iface.ip,
      });
    }
  }

  /** Binds <interface address>:67 so that unicast to us is not answered with ICMP; never fatal. */
  private bindQuietSocket(): Promise<dgram.Socket | undefined> {
    return new Promise((resolve) => {
      const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
      s.on('message', () => {
        // the capture saw this datagram already
      });
      s.once('error', (e) => {
        this.log.warn('no UDP socket on port 67 of the interface address: unicast requests may be answered with ICMP port-unreachable by the kernel', {
          addr: this.iface.ip, err: e.message,
        });
        s.close();
        resolve(undefined);
      });
      s.bind({ address: this.iface.ip, port: DHCP_SERVER_PORT }, () => {
        s.removeAllListeners('error');
        s.on('error', (e) => this.log.debug('port-67 socket error', { err: e.message }));
        resolve(s);
      });
    });
  }

  // ---------------------------------------------------------------------------- input

  private malformed(reason: string, from: string): void {
    this.counters.malformed++;
    this.malformedSinceWarn++;
    const now = Date.now();
    if (now - this.lastMalformedWarn >= MALFORMED_WARN_EVERY_MS) {
      this.log.warn('malformed DHCP datagram dropped', { from, reason, dropped: this.counters.malformed, since_last_warning: this.malformedSinceWarn });
      this.lastMalformedWarn = now;
      this.malformedSinceWarn = 0;
    } else {
      this.log.debug('malformed DHCP datagram dropped', { from, reason, dropped: this.counters.malformed });
    }
  }

  private onFrame(frame: Buffer, linktype: number): void {
    this.counters.received++;
    if (!this.live || !this.current) return;
    try {
      const fr = dhcpFromFrame(frame, linktype);
      if (!fr.ok) return this.malformed(fr.reason, '?');
      if (fr.src.mac === this.ifaceMacHex) return; // our own relay replies
      // the capture is promiscuous: only what is addressed to this server
      const dstIp = fr.dst.ip;
      if (dstIp !== BROADCAST_IP && dstIp !== this.iface.ip && dstIp !== this.subnetBroadcast) {
        this.counters.ignored++;
        return;
      }
      if (fr.dst.mac && fr.dst.mac !== 'ffffffffffff' && fr.dst.mac !== this.ifaceMacHex) {
        this.counters.ignored++;
        return;
      }
      const from = fr.src.mac ? macColon(fr.src.mac) : fr.src.ip;
      const d = decodeDhcp(fr.payload);
      if (!d.ok) return this.malformed(d.reason, from);
      const m = d.msg;
      if (m.op !== BOOTREQUEST) {
        this.counters.ignored++;
        return;
      }
      if (!m.mac) return this.malformed(`hardware type ${m.htype} / length ${m.hlen} is not Ethernet`, from);
      if (!m.type) return this.malformed(m.typeCode === undefined ? 'no DHCP message type (plain BOOTP is not served)' : `unknown DHCP message type ${m.typeCode}`, from);
      this.handle(m, { vlan: fr.vlan, srcMac: fr.src.mac, srcIp: fr.src.ip });
      this.discover_(m);
    } catch (e) {
      this.counters.errors++;
      this.log.error('DHCP request not handled', { err: describeError(e) });
    }
  }

  /**
   * The phones this server serves appear in the inventory as the captured ones do (unless
   * [dhcp] capture already watches this interface, which would see the same request twice).
   */
  private discover_(m: DhcpMessage): void {
    if (this.settings.dhcp.capture.includes(this.ifname)) return;
    try {
      const s = sightingFromDhcp(m, { interface: this.ifname, at: Date.now() });
      if (s) this.deps.inventory.observe(s);
    } catch (e) {
      this.deps.store.writeFailed('DHCP sighting', e, this.log);
    }
  }

  /** A log line about one request: xid, mac and type first; nothing is built when the level is off. */
  private note(level: 'debug' | 'info' | 'warn', m: DhcpMessage, msg: string, fields: Fields = {}): void {
    if (!this.log.enabled(level)) return;
    this.log[level](msg, { xid: `0x${m.xid.toString(16).padStart(8, '0')}`, mac: macColon(m.mac!), type: m.type, ...fields });
  }

  private handle(m: DhcpMessage, at: Arrival): void {
    const mode = this.settings.dhcpServer.mode;
    if (m.type === 'INFORM') {
      this.counters.inform++;
      return this.inform(m, at);
    }
    if (mode === 'inform') {
      this.counters.ignored++;
      this.note('debug', m, 'DHCP server in inform mode: only DHCPINFORM is answered');
      return;
    }
    const relayed = m.giaddr !== ZERO;
    if (relayed ? !this.pool.onSubnet(m.giaddr) : !this.ifaceOnSubnet) {
      this.counters.ignored++;
      this.note('debug', m, 'no range for this subnet', { giaddr: m.giaddr });
      return;
    }
    switch (m.type) {
      case 'DISCOVER':
        this.counters.discover++;
        return this.discover(m, at);
      case 'REQUEST':
        this.counters.request++;
        return this.request(m, at);
      case 'DECLINE':
        this.counters.decline++;
        return this.letGo(m);
      case 'RELEASE':
        this.counters.release++;
        return this.letGo(m);
      default:
        this.counters.ignored++;
        this.note('debug', m, 'a server message type from a client: ignored');
    }
  }

  // ---------------------------------------------------------------------------- the exchanges

  private row(m: DhcpMessage, ip: string, state: DhcpLeaseState, expiresAt: number, now: number): DhcpLeaseRow {
    return {
      ip, mac: m.mac!, state, expires_at: expiresAt,
      client_id: m.clientId ?? null, hostname: m.hostname ?? null, vendor_class: m.vendorClass ?? null, updated_at: now,
    };
  }

  private record(r: DhcpLeaseRow): void {
    this.pool.put(r);
    this.pending.changes.rows.push(r);
    this.schedule();
  }

  private discover(m: DhcpMessage, at: Arrival): void {
    const now = Date.now();
    const ip = this.pool.choose(m.mac!, m.requestedIp, now);
    if (!ip) {
      this.counters.exhausted++;
      const fields = { range: `${this.settings.dhcpServer.rangeStart}-${this.settings.dhcpServer.rangeEnd}`, unanswered: this.counters.exhausted };
      if (now - this.lastExhaustedWarn >= MALFORMED_WARN_EVERY_MS) {
        this.lastExhaustedWarn = now;
        this.note('warn', m, 'no free address in the range: DHCPDISCOVER not answered', fields);
      } else this.note('debug', m, 'no free address in the range: DHCPDISCOVER not answered', fields);
      return;
    }
    const cur = this.pool.get(ip);
    const keep = cur && cur.mac === m.mac && cur.state === 'bound' && cur.expires_at > now;
    if (!keep) this.record(this.row(m, ip, 'offered', now + OFFER_HOLD_MS, now));
    this.counters.offers++;
    this.note('debug', m, 'offer', { ip });
    this.reply(m, at, 'OFFER', ip, false);
  }

  private request(m: DhcpMessage, at: Arrival): void {
    const now = Date.now();
    const d = decideRequest(m, this.pool, this.iface.ip, this.ifaceOnSubnet, now);
    switch (d.kind) {
      case 'other-server': {
        const mine = this.pool.addressOf(m.mac!);
        const e = mine ? this.pool.get(mine) : undefined;
        if (e && e.state === 'offered') this.record({ ...e, state: 'released', expires_at: now, updated_at: now });
        this.counters.ignored++;
        this.note('debug', m, 'the client chose another server', { server_id: m.serverId });
        return;
      }
      case 'ignore':
        this.counters.ignored++;
        if (d.why) this.note('debug', m, d.why);
        return;
      case 'ack':
        return this.ack(m, at, d.ip, now);
      case 'nak':
        return this.nak(m, at, d.why, d.ip);
      case 'silent':
        this.counters.ignored++;
        this.note('debug', m, 'no record of this client: silent (RFC 2131 §4.3.2)', { ip: d.ip, state: d.state });
    }
  }

  private ack(m: DhcpMessage, at: Arrival, ip: string, now: number): void {
    const mac = m.mac!;
    const prevIp = this.pool.addressOf(mac);
    if (prevIp && prevIp !== ip) {
      const prev = this.pool.get(prevIp);
      if (prev && prev.mac === mac && (prev.state === 'offered' || prev.state === 'bound')) {
        this.record({ ...prev, state: 'released', expires_at: now, updated_at: now });
      }
    }
    const before = this.pool.get(ip);
    const renewal = before?.mac === mac && before.state === 'bound' && before.expires_at > now;
    const expires = now + this.settings.dhcpServer.leaseTimeMs;
    this.record(this.row(m, ip, 'bound', expires, now));
    this.pending.changes.leases.push({ mac, ip, interface: this.ifname, source: 'dhcp-server', expires_at: expires, seen_at: now });
    this.pending.changes.seen.push({ mac, ip, at: now });
    this.counters.acks++;
    if (renewal) this.note('debug', m, 'lease renewed', { ip });
    else this.note('info', m, 'lease bound', { ip, vendor_class: m.vendorClass, hostname: m.hostname });
    this.reply(m, at, 'ACK', ip, true);
  }

  private nak(m: DhcpMessage, at: Arrival, why: string, ip: string): void {
    this.counters.naks++;
    this.note('info', m, 'DHCPNAK', { ip, reason: why });
    this.reply(m, at, 'NAK', ZERO, true, why);
  }

  /** DECLINE: the address stays out of the pool for max(lease time, 10 min); RELEASE: it is free again (and kept as the client's previous one). */
  private letGo(m: DhcpMessage): void {
    const now = Date.now();
    const d = decideLetGo(m, this.pool, this.iface.ip);
    if (d.kind === 'ignore') {
      this.counters.ignored++;
      if (d.why) this.note('debug', m, d.why, { ip: d.ip });
      return;
    }
    const e = this.pool.get(d.ip)!;
    const declined = m.type === 'DECLINE';
    const until = declined ? now + Math.max(MIN_DECLINE_HOLD_MS, this.settings.dhcpServer.leaseTimeMs) : now;
    this.record({ ...e, state: declined ? 'declined' : 'released', expires_at: until, updated_at: now });
    this.endLease(m.mac!, d.ip, now);
    if (declined) this.note('warn', m, 'address declined by the client: another host may be using it; it stays out of the pool', { ip: d.ip, until: new Date(until).toISOString() });
    else this.note('info', m, 'lease released', { ip: d.ip });
  }

  /** The `leases` row (the guard's proof) ends now, if it is this address (written, or about to be). */
  private endLease(mac: Mac, ip: string, now: number): void {
    const queued = this.pending.changes.leases.filter((l) => l.mac === mac).pop();
    const l = queued ?? this.deps.store.lease(mac);
    if (l && l.ip === ip && l.expires_at > now) this.pending.changes.leases.push({ ...l, expires_at: now, seen_at: now });
    this.schedule();
  }

  private inform(m: DhcpMessage, at: Arrival): void {
    this.note('debug', m, 'inform', { ciaddr: m.ciaddr });
    this.counters.acks++;
    this.reply(m, at, 'ACK', ZERO, false);
  }

  // ---------------------------------------------------------------------------- replies

  /** The provisioning URL, its host and the server address for this tenant (IP/DNS map applied). */
  private provisioning(tenant: string): { url: string; host: string; ip: string } {
    if (this.urlGeneration !== this.deps.generation()) {
      this.urlCache.clear();
      this.urlGeneration = this.deps.generation();
    }
    const hit = this.urlCache.get(tenant);
    if (hit) return hit;
    const url = this.deps.provisioningUrl(this.deps.config().tenants.get(tenant), this.iface.ip);
    let host = '';
    try {
      host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    } catch {
      host = this.iface.ip;
    }
    const v = { url, host, ip: net.isIPv4(host) ? host : this.iface.ip };
    this.urlCache.set(tenant, v);
    return v;
  }

  /** The options the client's vendor data asks for; empty for a client that is no known phone. */
  private vendorOptions(m: DhcpMessage): Map<number, Buffer> {
    const mac = m.mac!;
    const reg = this.deps.registry;
    const device = this.deps.store.device(mac);
    const id = reg.identify({ mac, vendorClass: m.vendorClass })[0];
    const vendor = id ? reg.get(id.vendor) : device ? reg.get(device.vendor) : undefined;
    const answers: DhcpAnswer[] = vendor?.dhcp?.answers ?? [];
    if (!answers.length) return new Map();
    return encodeAnswers(answers, this.provisioning(device?.tenant ?? this.settings.discovery.tenant));
  }

  private options(m: DhcpMessage, type: DhcpMessageType, withLease: boolean): Map<number, Buffer> {
    const s = this.settings.dhcpServer;
    const o = new Map<number, Buffer>();
    o.set(Opt.SERVER_ID, optIp(this.iface.ip));
    if (type === 'NAK') return o;
    if (withLease) {
      const secs = Math.max(1, Math.floor(s.leaseTimeMs / 1000));
      o.set(Opt.LEASE_TIME, optU32(secs));
      o.set(Opt.RENEWAL_TIME, optU32(Math.floor(secs / 2)));
      o.set(Opt.REBINDING_TIME, optU32(Math.floor((secs * 7) / 8)));
    }
    const asked = new Set(m.paramList ?? []);
    const want = (code: number) => BASICS.has(code) || asked.has(code);
    if (s.mode === 'full' && want(Opt.SUBNET_MASK)) o.set(Opt.SUBNET_MASK, optIp(s.netmask));
    if (s.router && want(Opt.ROUTER)) o.set(Opt.ROUTER, optIp(s.router));
    if (s.dns.length && want(Opt.DNS)) o.set(Opt.DNS, optIps(s.dns));
    if (s.domain && want(Opt.DOMAIN_NAME)) o.set(Opt.DOMAIN_NAME, optString(s.domain));
    if (s.ntp.length && want(OPT_NTP)) o.set(OPT_NTP, optIps(s.ntp));
    // a phone gets its vendor's provisioning option(s) whether or not it listed them in option 55
    for (const [code, val] of this.vendorOptions(m)) o.set(code, val);
    return o;
  }

  private reply(m: DhcpMessage, at: Arrival, type: DhcpMessageType, yiaddr: string, durable: boolean, message?: string): void {
    const inform = m.type === 'INFORM';
    const options = this.options(m, type, type !== 'NAK' && !inform);
    if (message) options.set(Opt.MESSAGE, optString(message));
    // RFC 6842: the client identifier goes back as it came; RFC 3046: so does the relay agent information, last
    const cid = m.options.get(Opt.CLIENT_ID);
    if (cid) options.set(Opt.CLIENT_ID, cid);
    const rai = m.giaddr !== ZERO ? m.options.get(Opt.RELAY_AGENT) : undefined;
    if (rai) options.set(Opt.RELAY_AGENT, rai);
    const payload = encodeDhcp({
      op: 2, htype: m.htype, hlen: m.hlen, hops: 0, xid: m.xid, secs: 0,
      flags: type === 'NAK' && m.giaddr !== ZERO ? m.flags | 0x8000 : m.flags,
      ciaddr: type === 'ACK' ? m.ciaddr : ZERO,
      yiaddr, siaddr: ZERO, giaddr: m.giaddr, chaddr: m.chaddr,
      type, options,
    });
    // RFC 2131 §4.1, fourth paragraph
    let dstIp: string;
    let dstMac: string;
    let dstPort = DHCP_CLIENT_PORT;
    if (m.giaddr !== ZERO) {
      dstIp = m.giaddr;
      dstMac = at.srcMac ?? BROADCAST_MAC;
      dstPort = DHCP_SERVER_PORT;
    } else if (type === 'NAK') {
      dstIp = BROADCAST_IP;
      dstMac = BROADCAST_MAC;
    } else if (m.ciaddr !== ZERO) {
      dstIp = m.ciaddr;
      dstMac = at.srcMac ?? m.mac!;
    } else if (inform && at.srcIp !== ZERO) {
      dstIp = at.srcIp;
      dstMac = at.srcMac ?? m.mac!;
    } else if (m.broadcast || yiaddr === ZERO) {
      dstIp = BROADCAST_IP;
      dstMac = BROADCAST_MAC;
    } else {
      dstIp = yiaddr;
      dstMac = m.mac!;
    }
    const frame = frameForDhcp({
      payload,
      src: { mac: this.iface.mac, ip: this.iface.ip, port: DHCP_SERVER_PORT },
      dst: { mac: dstMac, ip: dstIp, port: dstPort },
      vlan: at.vlan,
    });
    this.pending.frames.push({ frame, durable });
    this.schedule();
  }

  // ---------------------------------------------------------------------------- writing out

  private schedule(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => this.flush());
  }

  /** Commits the turn's lease changes in one transaction, then sends the turn's replies. */
  private flush(): void {
    this.flushQueued = false;
    const p = this.pending;
    this.pending = emptyPending();
    let committed = true;
    try {
      this.leases?.write(p.changes);
    } catch (e) {
      committed = false;
      this.counters.errors++;
      // ACKs and NAKs of this moment are withheld (the clients retry); logged once a minute
      this.deps.store.writeFailed('DHCP leases (ACKs withheld)', e, this.log);
    }
    const cap = this.capture;
    if (!cap) return;
    for (const f of p.frames) {
      if (!committed && f.durable) continue;
      if (!cap.send(f.frame)) this.log.debug('a DHCP reply could not be sent', { bytes: f.frame.length });
    }
  }
}
