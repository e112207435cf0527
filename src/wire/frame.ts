/**
 * Link/IPv4/UDP framing around DHCP payloads, and classic pcap files. Pure, no I/O except
 * `writePcap`.
 *
 * `dhcpFromFrame(frame, linktype)` takes one captured frame and returns the UDP payload
 * with both endpoints, or `{ ok: false, reason }`; it never throws. Link types:
 *   1   EN10MB      Ethernet II, up to two VLAN tags (802.1Q 0x8100 / 802.1ad 0x88a8 / 0x9100);
 *                   `vlan` is the outer tag's VID
 *   113 LINUX_SLL   `tcpdump -i any` (v1): only the sender's MAC is known, dst.mac is null
 *   276 LINUX_SLL2  `tcpdump -i any` (v2): sender's MAC and the interface index (`ifindex`)
 *   101 RAW / 228 IPV4  bare IPv4: both MACs null
 * IPv4 with options (the header length comes from IHL), no fragments (MF set or a non-zero
 * offset is refused), protocol UDP, either port 67 or 68 (the capture filter
 * `udp port 67 or udp port 68`). The IPv4 total length and the UDP length bound the payload,
 * so Ethernet padding is ignored. Checksums are not verified (with checksum offload a
 * capture of outgoing packets holds partial checksums). `payload` is a view into `frame`
 * (no copy); `decodeDhcp` copies what it keeps.
 *
 * `frameForDhcp(...)` is the reverse (Ethernet II, optional VLAN tag, IPv4 with a correct
 * header checksum, UDP with a correct checksum unless `udpChecksum: false` writes 0).
 *
 * pcap: `pcapBytes`/`writePcap` write classic little-endian microsecond pcap;
 * `readPcap` reads classic pcap in either byte order, micro- or nanosecond.
 */
import fs from 'node:fs';
import { ApsError } from '../errors.js';
import { parseMac, type Mac } from '../mac.js';
import { parseIpv4 } from './dhcp.js';

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_LINUX_SLL2 = 276;

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

export interface Endpoint {
  /** null where the link layer does not carry it (SLL destination, raw IP). */
  mac: Mac | null;
  ip: string;
  port: number;
}

export type FrameResult =
  | {
      ok: true;
      payload: Buffer;
      src: Endpoint;
      dst: Endpoint;
      /** Outer VLAN ID when the frame was tagged. */
      vlan?: number;
      /** LINUX_SLL2 only: the capturing interface's index. */
      ifindex?: number;
      /** LINUX_SLL/SLL2 only: 0 to us, 1 broadcast, 2 multicast, 3 to another host, 4 sent by us. */
      packetType?: number;
    }
  | { ok: false; reason: string };

const ETH_IPV4 = 0x0800;
const VLAN_TPIDS = new Set([0x8100, 0x88a8, 0x9100]);

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

function macAt(b: Buffer, o: number): Mac {
  return b.toString('hex', o, o + 6) as Mac;
}

function ipAt(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

interface LinkInfo {
  ipOffset: number;
  srcMac: Mac | null;
  dstMac: Mac | null;
  vlan?: number;
  ifindex?: number;
  packetType?: number;
}

/** Skips up to two VLAN tags starting at the ethertype at `o`. Returns [ethertype, offset of payload, vlan] or a reason. */
function skipVlans(f: Buffer, o: number): { etype: number; off: number; vlan?: number } | string {
  let etype = f.readUInt16BE(o);
  let off = o + 2;
  let vlan: number | undefined;
  for (let tags = 0; VLAN_TPIDS.has(etype); tags++) {
    if (tags === 2) return 'more than two VLAN tags';
    if (off + 4 > f.length) return 'truncated VLAN tag';
    if (vlan === undefined) vlan = f.readUInt16BE(off) & 0x0fff;
    etype = f.readUInt16BE(off + 2);
    off += 4;
  }
  return { etype, off, vlan };
}

function linkLayer(f: Buffer, linktype: number): LinkInfo | string {
  switch (linktype) {
    case LINKTYPE_ETHERNET: {
      if (f.length < 14) return `frame too short for Ethernet (${f.length} bytes)`;
      const v = skipVlans(f, 12);
      if (typeof v === 'string') return v;
      if (v.etype !== ETH_IPV4) return `ethertype 0x${v.etype.toString(16).padStart(4, '0')} is not IPv4`;
      return { ipOffset: v.off, dstMac: macAt(f, 0), srcMac: macAt(f, 6), vlan: v.vlan };
    }
    case LINKTYPE_LINUX_SLL: {
      if (f.length < 16) return `frame too short for LINUX_SLL (${f.length} bytes)`;
      const v = skipVlans(f, 14);
      if (typeof v === 'string') return v;
      if (v.etype !== ETH_IPV4) return `protocol 0x${v.etype.toString(16).padStart(4, '0')} is not IPv4`;
      const arphrd = f.readUInt16BE(2);
      const alen = f.readUInt16BE(4);
      return { ipOffset: v.off, dstMac: null, srcMac: arphrd === 1 && alen === 6 ? macAt(f, 6) : null, vlan: v.vlan, packetType: f.readUInt16BE(0) };
    }
    case LINKTYPE_LINUX_SLL2: {
      if (f.length < 20) return `frame too short for LINUX_SLL2 (${f.length} bytes)`;
      const etype = f.readUInt16BE(0);
      let off = 20;
      let vlan: number | undefined;
      let et = etype;
      if (VLAN_TPIDS.has(etype)) {
        // SLL2 puts the protocol first; a tagged frame carries TCI + inner type after the header
        if (f.length < 24) return 'truncated VLAN tag';
        vlan = f.readUInt16BE(20) & 0x0fff;
        et = f.readUInt16BE(22);
        off = 24;
      }
      if (et !== ETH_IPV4) return `protocol 0x${et.toString(16).padStart(4, '0')} is not IPv4`;
      const arphrd = f.readUInt16BE(8);
      const alen = f[11]!;
      return { ipOffset: off, dstMac: null, srcMac: arphrd === 1 && alen === 6 ? macAt(f, 12) : null, vlan, ifindex: f.readUInt32BE(4), packetType: f[10]! };
    }
    case LINKTYPE_RAW:
    case LINKTYPE_IPV4:
      return { ipOffset: 0, dstMac: null, srcMac: null };
    default:
      return `link type ${linktype} is not supported (1 EN10MB, 113 LINUX_SLL, 276 LINUX_SLL2, 101/228 raw IPv4)`;
  }
}

function fromFrameUnsafe(f: Buffer, linktype: number): FrameResult {
  if (!Buffer.isBuffer(f)) return fail('not a Buffer');
  const l = linkLayer(f, linktype);
  if (typeof l === 'string') return fail(l);
  const ip = l.ipOffset;
  if (ip + 20 > f.length) return fail('truncated IPv4 header');
  const vihl = f[ip]!;
  if (vihl >> 4 !== 4) return fail(`IP version ${vihl >> 4}, expected 4`);
  const ihl = (vihl & 0x0f) * 4;
  if (ihl < 20) return fail(`IPv4 header length ${ihl} is below 20`);
  const total = f.readUInt16BE(ip + 2);
  if (total < ihl) return fail(`IPv4 total length ${total} is shorter than its header (${ihl})`);
  if (ip + total > f.length) return fail(`IPv4 total length ${total} runs past the frame (${f.length - ip} bytes)`);
  const frag = f.readUInt16BE(ip + 6);
  if (frag & 0x2000 || frag & 0x1fff) return fail('IPv4 fragment (DHCP is never reassembled here)');
  const proto = f[ip + 9]!;
  if (proto !== 17) return fail(`IP protocol ${proto} is not UDP`);
  const udp = ip + ihl;
  const ipEnd = ip + total;
  if (udp + 8 > ipEnd) return fail('truncated UDP header');
  const sport = f.readUInt16BE(udp);
  const dport = f.readUInt16BE(udp + 2);
  const ulen = f.readUInt16BE(udp + 4);
  if (ulen < 8 || udp + ulen > ipEnd) return fail(`UDP length ${ulen} does not fit the IPv4 packet (${ipEnd - udp} bytes)`);
  const isDhcp = (p: number) => p === DHCP_SERVER_PORT || p === DHCP_CLIENT_PORT;
  if (!isDhcp(sport) && !isDhcp(dport)) return fail(`UDP ports ${sport} -> ${dport} are not DHCP (67/68)`);
  const r: FrameResult = {
    ok: true,
    payload: f.subarray(udp + 8, udp + ulen),
    src: { mac: l.srcMac, ip: ipAt(f, ip + 12), port: sport },
    dst: { mac: l.dstMac, ip: ipAt(f, ip + 16), port: dport },
  };
  if (l.vlan !== undefined) r.vlan = l.vlan;
  if (l.ifindex !== undefined) r.ifindex = l.ifindex;
  if (l.packetType !== undefined) r.packetType = l.packetType;
  return r;
}

/** The DHCP payload of one captured frame. Never throws. */
export function dhcpFromFrame(frame: Buffer, linktype: number): FrameResult {
  try {
    return fromFrameUnsafe(frame, linktype);
  } catch (e) {
    return fail(`unparseable frame: ${(e as Error)?.message ?? String(e)}`);
  }
}

// ------------------------------------------------------------------------------ building

/** RFC 1071 ones'-complement sum of `parts`, complemented. */
export function internetChecksum(...parts: Buffer[]): number {
  let sum = 0;
  let odd = -1; // a byte left over from the previous part
  for (const b of parts) {
    let i = 0;
    if (odd >= 0 && b.length) {
      sum += (odd << 8) | b[0]!;
      odd = -1;
      i = 1;
    }
    for (; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
    if (i < b.length) odd = b[i]!;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (odd >= 0) sum += odd << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface FrameEndpoint {
  /** Any form `parseMac` accepts. */
  mac: string;
  ip: string;
  port: number;
}

export interface FrameOptions {
  payload: Buffer;
  src: FrameEndpoint;
  dst: FrameEndpoint;
  /** Adds an 802.1Q tag with this VID (0..4095). */
  vlan?: number;
  ttl?: number;
  ipId?: number;
  /** false writes UDP checksum 0 ("none", allowed for UDP over IPv4). Default true. */
  udpChecksum?: boolean;
}

function mustMac(s: string, key: string): Buffer {
  const m = parseMac(s);
  if (!m) throw new ApsError('APS_ERR_MAC', `"${s}" is not a MAC address`, { key });
  return Buffer.from(m, 'hex');
}
function mustIp(s: string, key: string): Buffer {
  const b = parseIpv4(s);
  if (!b) throw new ApsError('APS_ERR_PROTOCOL', `"${s}" is not an IPv4 address`, { key });
  return b;
}
function mustPort(n: number, key: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new ApsError('APS_ERR_PROTOCOL', `port ${n} is out of range`, { key });
  return n;
}

/** Ethernet II (+ optional 802.1Q) + IPv4 + UDP around a DHCP payload. */
export function frameForDhcp(o: FrameOptions): Buffer {
  const srcIp = mustIp(o.src.ip, 'src.ip');
  const dstIp = mustIp(o.dst.ip, 'dst.ip');
  const ulen = 8 + o.payload.length;
  const total = 20 + ulen;
  if (total > 0xffff) throw new ApsError('APS_ERR_PROTOCOL', `payload of ${o.payload.length} bytes does not fit one IPv4 packet`);
  const tagged = o.vlan !== undefined;
  if (tagged && (!Number.isInteger(o.vlan) || o.vlan! < 0 || o.vlan! > 4095)) throw new ApsError('APS_ERR_PROTOCOL', `VLAN ${o.vlan} is out of range`, { key: 'vlan' });
  const eth = tagged ? 18 : 14;
  const f = Buffer.alloc(eth + total);
  mustMac(o.dst.mac, 'dst.mac').copy(f, 0);
  mustMac(o.src.mac, 'src.mac').copy(f, 6);
  if (tagged) {
    f.writeUInt16BE(0x8100, 12);
    f.writeUInt16BE(o.vlan!, 14);
  }
  f.writeUInt16BE(ETH_IPV4, eth - 2);
  const ip = eth;
  f[ip] = 0x45;
  f[ip + 1] = 0x10; // DSCP/ECN as dhclient and dnsmasq send it (low delay)
  f.writeUInt16BE(total, ip + 2);
  f.writeUInt16BE((o.ipId ?? 0) & 0xffff, ip + 4);
  f.writeUInt16BE(0, ip + 6);
  f[ip + 8] = o.ttl ?? 64;
  f[ip + 9] = 17;
  srcIp.copy(f, ip + 12);
  dstIp.copy(f, ip + 16);
  f.writeUInt16BE(internetChecksum(f.subarray(ip, ip + 20)), ip + 10);
  const udp = ip + 20;
  f.writeUInt16BE(mustPort(o.src.port, 'src.port'), udp);
  f.writeUInt16BE(mustPort(o.dst.port, 'dst.port'), udp + 2);
  f.writeUInt16BE(ulen, udp + 4);
  o.payload.copy(f, udp + 8);
  if (o.udpChecksum !== false) {
    const pseudo = Buffer.alloc(12);
    srcIp.copy(pseudo, 0);
    dstIp.copy(pseudo, 4);
    pseudo[9] = 17;
    pseudo.writeUInt16BE(ulen, 10);
    const c = internetChecksum(pseudo, f.subarray(udp, udp + ulen));
    f.writeUInt16BE(c === 0 ? 0xffff : c, udp + 6);
  }
  return f;
}

// ------------------------------------------------------------------------------ pcap

export interface PcapFrame {
  /** Seconds since the epoch, fractional. */
  ts: number;
  data: Buffer;
  /** Length on the wire (≥ data.length); defaults to data.length when writing. */
  origLen?: number;
}

export interface PcapFile {
  linktype: number;
  snaplen: number;
  nanosecond: boolean;
  /** `data` are views into the buffer given to readPcap. */
  frames: PcapFrame[];
  /** The file ended inside a record (a capture cut short); the frames before it are kept. */
  truncated: boolean;
}

const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAP_SNAPLEN = 262144;

/** A classic pcap file (little-endian, microsecond timestamps) as bytes. */
export function pcapBytes(frames: readonly PcapFrame[], linktype = LINKTYPE_ETHERNET): Buffer {
  let size = 24;
  for (const fr of frames) size += 16 + fr.data.length;
  const b = Buffer.alloc(size);
  b.writeUInt32LE(PCAP_MAGIC_US, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8);
  b.writeUInt32LE(0, 12);
  b.writeUInt32LE(PCAP_SNAPLEN, 16);
  b.writeUInt32LE(linktype, 20);
  let o = 24;
  for (const fr of frames) {
    let sec = Math.floor(fr.ts);
    let usec = Math.round((fr.ts - sec) * 1e6);
    if (usec >= 1e6) {
      sec += 1;
      usec -= 1e6;
    }
    b.writeUInt32LE(sec >>> 0, o);
    b.writeUInt32LE(usec, o + 4);
    b.writeUInt32LE(fr.data.length, o + 8);
    b.writeUInt32LE(Math.max(fr.origLen ?? fr.data.length, fr.data.length), o + 12);
    fr.data.copy(b, o + 16);
    o += 16 + fr.data.length;
  }
  return b;
}

export function writePcap(file: string, frames: readonly PcapFrame[], linktype = LINKTYPE_ETHERNET): void {
  fs.writeFileSync(file, pcapBytes(frames, linktype));
}

/** Parses a classic pcap file. Throws ApsError APS_ERR_PROTOCOL if it is not one. */
export function readPcap(buf: Buffer): PcapFile {
  if (buf.length < 24) throw new ApsError('APS_ERR_PROTOCOL', `not a pcap file: ${buf.length} bytes`, { expected: 'a 24-byte pcap header' });
  const le = buf.readUInt32LE(0);
  const be = buf.readUInt32BE(0);
  let little: boolean;
  let nanosecond: boolean;
  if (le === PCAP_MAGIC_US || le === PCAP_MAGIC_NS) {
    little = true;
    nanosecond = le === PCAP_MAGIC_NS;
  } else if (be === PCAP_MAGIC_US || be === PCAP_MAGIC_NS) {
    little = false;
    nanosecond = be === PCAP_MAGIC_NS;
  } else {
    throw new ApsError('APS_ERR_PROTOCOL', `not a classic pcap file (magic 0x${be.toString(16)})`, { expected: 'magic a1b2c3d4 or a1b23c4d (pcapng is not read)' });
  }
  const u32 = (o: number) => (little ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const snaplen = u32(16);
  const linktype = u32(20) & 0x0fffffff; // upper bits: FCS info
  const frames: PcapFrame[] = [];
  let truncated = false;
  let o = 24;
  while (o < buf.length) {
    if (o + 16 > buf.length) {
      truncated = true;
      break;
    }
    const sec = u32(o);
    const frac = u32(o + 4);
    const incl = u32(o + 8);
    const orig = u32(o + 12);
    if (o + 16 + incl > buf.length) {
      truncated = true;
      break;
    }
    frames.push({ ts: sec + frac / (nanosecond ? 1e9 : 1e6), data: buf.subarray(o + 16, o + 16 + incl), origLen: orig });
    o += 16 + incl;
  }
  return { linktype, snaplen, nanosecond, frames, truncated };
}
