/**
 * DHCP wire codec (RFC 2131 message format, RFC 2132 options, RFC 3396 long options).
 * One codec for both directions: the passive capture decodes what it sees, the built-in
 * DHCP server decodes requests and encodes replies.
 *
 * Decoding — `decodeDhcp(buf)`:
 *  - never throws: anything malformed is `{ ok: false, reason }` (an unexpected exception is
 *    caught at the boundary and reported the same way);
 *  - every read is bounds-checked: the fixed 236-byte header and the magic cookie
 *    99.130.83.99 are required, `hlen` must be ≤ 16, `op` must be 1 (BOOTREQUEST) or
 *    2 (BOOTREPLY), every option length is checked against the field it sits in;
 *  - options: pad (0) skipped, end (255) stops a field (a field without an end option is
 *    accepted when its last option ends exactly at the field's end); option overload (52)
 *    continues the options in `file` (1), `sname` (2) or both (3), read in RFC 2131 order
 *    options → file → sname; repeated codes are concatenated in that order (RFC 3396);
 *  - the message never aliases `buf` (capture libraries reuse their buffer): option values
 *    are copies.
 *
 * The decoded shape — class `DhcpMessage`:
 *  - header fields as own properties: `op htype hlen hops xid secs flags`, the addresses
 *    `ciaddr yiaddr siaddr giaddr` as dotted quads, `chaddr` = the first `hlen` bytes of the
 *    hardware address as lower-case hex (for Ethernet that is a `Mac`), `mac` = that `Mac`
 *    when htype = 1 and hlen = 6, else null; `sname`/`file` = latin1 text up to the first NUL
 *    ('' when the field carries overloaded options); `overload` = option 52's value or 0;
 *  - `options: Map<number, Buffer>` — every option seen (including unknown codes), raw,
 *    concatenated, in order of first appearance (the encoder keeps that order);
 *  - typed views (prototype getters, computed together once on first use, undefined when
 *    absent or malformed — the raw bytes stay in `options` either way):
 *      type          53 as 'DISCOVER' | 'OFFER' | ... | 'INFORM' (`typeCode`: the raw number)
 *      vendorClass   60 latin1, byte for byte (some phones end it with a NUL: kept)
 *      paramList     55 as number[]
 *      hostname      12 latin1, byte for byte
 *      clientId      61 as lower-case hex (never as text: it is usually binary, 01 + MAC)
 *      requestedIp   50, serverId 54, subnetMask 1 (dotted quads); routers 3 (string[])
 *      leaseTime     51 seconds
 *      relayAgent    82 sub-options: { circuitId?, remoteId? (hex of sub-options 1 and 2),
 *                    subOptions: {code, data}[] } — undefined if the sub-options do not parse
 *      userClass     77 latin1, byte for byte
 *      tftpServer    66 latin1 without trailing NULs (dnsmasq sends "URL\0")
 *      bootfileName  67 latin1 without trailing NULs
 *      tftpServers150 150 (TFTP server address list) as string[]
 *
 * Encoding — `encodeDhcp(input)`: header fields (defaults: op from `type`, htype 1, hlen from
 * chaddr, 0.0.0.0 addresses), then option 53 first, then `options` in map order, then the end
 * option, zero-padded to 300 bytes (the BOOTP minimum). Values longer than 255 bytes are
 * split into consecutive options of the same code (RFC 3396). The encoder never overloads
 * `file`/`sname`, so an option 52 in the map is dropped. Typed fields set as OWN properties of
 * `input` (an object literal, or `{ ...decoded, leaseTime: 60 }`) override the map entry of
 * their code; a decoded message's getters are views of its map and never override it, so
 * `encodeDhcp(decoded)` re-encodes exactly the options that were decoded. Bad input (an
 * invalid IP, a 17-byte chaddr, a non-latin1 string ...) throws ApsError APS_ERR_PROTOCOL.
 */
import { ApsError } from '../errors.js';
import type { Mac } from '../mac.js';

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
/** 99.130.83.99 */
export const DHCP_MAGIC_COOKIE = 0x63825363;
/** The fixed BOOTP header (236 bytes) plus the magic cookie. */
export const DHCP_HEADER_BYTES = 240;
/** RFC 1542: BOOTP messages are at least 300 bytes; the encoder pads to this. */
export const BOOTP_MIN_BYTES = 300;

/** Option codes this project names. Any other code is kept raw. */
export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAM_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  TFTP_SERVER: 66,
  BOOTFILE: 67,
  USER_CLASS: 77,
  RELAY_AGENT: 82,
  TFTP_SERVERS_150: 150,
  END: 255,
} as const;

/** Index + 1 is the option-53 value. */
export const DHCP_MESSAGE_TYPES = ['DISCOVER', 'OFFER', 'REQUEST', 'DECLINE', 'ACK', 'NAK', 'RELEASE', 'INFORM'] as const;
export type DhcpMessageType = (typeof DHCP_MESSAGE_TYPES)[number];

export function messageTypeCode(t: DhcpMessageType): number {
  return DHCP_MESSAGE_TYPES.indexOf(t) + 1;
}

export interface SubOption {
  code: number;
  data: Buffer;
}

export interface RelayAgentInfo {
  /** Sub-option 1 as lower-case hex. */
  circuitId?: string;
  /** Sub-option 2 as lower-case hex. */
  remoteId?: string;
  /** Every sub-option in wire order (1 and 2 included). Always present when decoded. */
  subOptions?: SubOption[];
}

/** The fixed part of a message. */
export interface DhcpHeader {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The first `hlen` bytes of the 16-byte chaddr field, lower-case hex. */
  chaddr: string;
  sname: string;
  file: string;
}

/** The typed option views; each maps to one option code (see the file comment). */
export interface DhcpTypedOptions {
  type?: DhcpMessageType;
  vendorClass?: string;
  paramList?: number[];
  hostname?: string;
  clientId?: string;
  requestedIp?: string;
  serverId?: string;
  leaseTime?: number;
  relayAgent?: RelayAgentInfo;
  userClass?: string;
  subnetMask?: string;
  routers?: string[];
  tftpServer?: string;
  bootfileName?: string;
  tftpServers150?: string[];
}

/** What `encodeDhcp` takes. A decoded `DhcpMessage` is one too. */
export interface DhcpEncodeInput extends Partial<DhcpHeader>, DhcpTypedOptions {
  xid: number;
  /** hex, colons/dashes/dots allowed (`Mac` fits); up to 16 bytes. */
  chaddr: string;
  options?: ReadonlyMap<number, Buffer>;
}

type Typed = { [K in keyof Required<DhcpTypedOptions>]: DhcpTypedOptions[K] } & { typeCode: number | undefined };

export class DhcpMessage implements DhcpHeader {
  op = 0;
  htype = 0;
  hlen = 0;
  hops = 0;
  xid = 0;
  secs = 0;
  flags = 0;
  ciaddr = '0.0.0.0';
  yiaddr = '0.0.0.0';
  siaddr = '0.0.0.0';
  giaddr = '0.0.0.0';
  chaddr = '';
  /** chaddr as a `Mac` for Ethernet (htype 1, hlen 6), else null. */
  mac: Mac | null = null;
  sname = '';
  file = '';
  /** Option 52: 0 none, 1 file, 2 sname, 3 both. */
  overload = 0;
  options: Map<number, Buffer> = new Map();
  #typed: Typed | undefined;

  /** Broadcast bit (RFC 2131 §2): the client wants the reply broadcast. */
  get broadcast(): boolean {
    return (this.flags & 0x8000) !== 0;
  }
  private get t(): Typed {
    return (this.#typed ??= typedViews(this.options));
  }
  get typeCode(): number | undefined { return this.t.typeCode; }
  get type(): DhcpMessageType | undefined { return this.t.type; }
  get vendorClass(): string | undefined { return this.t.vendorClass; }
  get paramList(): number[] | undefined { return this.t.paramList; }
  get hostname(): string | undefined { return this.t.hostname; }
  get clientId(): string | undefined { return this.t.clientId; }
  get requestedIp(): string | undefined { return this.t.requestedIp; }
  get serverId(): string | undefined { return this.t.serverId; }
  get leaseTime(): number | undefined { return this.t.leaseTime; }
  get relayAgent(): RelayAgentInfo | undefined { return this.t.relayAgent; }
  get userClass(): string | undefined { return this.t.userClass; }
  get subnetMask(): string | undefined { return this.t.subnetMask; }
  get routers(): string[] | undefined { return this.t.routers; }
  get tftpServer(): string | undefined { return this.t.tftpServer; }
  get bootfileName(): string | undefined { return this.t.bootfileName; }
  get tftpServers150(): string[] | undefined { return this.t.tftpServers150; }
}

export type DhcpDecodeResult = { ok: true; msg: DhcpMessage } | { ok: false; reason: string };

// ------------------------------------------------------------------------------ decoding

const SNAME_OFF = 44;
const FILE_OFF = 108;
const COOKIE_OFF = 236;

function ipAt(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/** latin1 text of b[start, end) up to the first NUL. */
function cString(b: Buffer, start: number, end: number): string {
  let e = start;
  while (e < end && b[e] !== 0) e++;
  return b.toString('latin1', start, e);
}

/**
 * Reads the TLV options of b[start, end) into `chunks`. Returns an error reason or null.
 * The loop advances at least one byte per turn, so it is bounded by end - start.
 */
function readOptions(b: Buffer, start: number, end: number, field: string, chunks: Map<number, Buffer[]>, skip52: boolean): string | null {
  let i = start;
  while (i < end) {
    const code = b[i]!;
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255) return null;
    if (i + 1 >= end) return `option ${code} at ${field} offset ${i - start}: no length byte before the end of the ${field}`;
    const len = b[i + 1]!;
    const s = i + 2;
    if (s + len > end) return `option ${code} at ${field} offset ${i - start}: length ${len} runs past the end of the ${field} (${end - s} bytes left)`;
    if (!(skip52 && code === 52)) {
      const list = chunks.get(code);
      if (list) list.push(b.subarray(s, s + len));
      else chunks.set(code, [b.subarray(s, s + len)]);
    }
    i = s + len;
  }
  return null;
}

function decodeUnsafe(buf: Buffer): DhcpDecodeResult {
  if (!Buffer.isBuffer(buf)) return { ok: false, reason: 'not a Buffer' };
  if (buf.length < DHCP_HEADER_BYTES) return { ok: false, reason: `too short: ${buf.length} bytes, a DHCP message has at least ${DHCP_HEADER_BYTES}` };
  const op = buf[0]!;
  if (op !== BOOTREQUEST && op !== BOOTREPLY) return { ok: false, reason: `op ${op} is neither BOOTREQUEST (1) nor BOOTREPLY (2)` };
  const hlen = buf[2]!;
  if (hlen > 16) return { ok: false, reason: `hlen ${hlen} is larger than the 16-byte chaddr field` };
  if (buf.readUInt32BE(COOKIE_OFF) !== DHCP_MAGIC_COOKIE) {
    return { ok: false, reason: `no DHCP magic cookie (found ${ipAt(buf, COOKIE_OFF)}, expected 99.130.83.99)` };
  }
  const chunks = new Map<number, Buffer[]>();
  let err = readOptions(buf, DHCP_HEADER_BYTES, buf.length, 'options', chunks, false);
  if (err) return { ok: false, reason: err };
  let overload = 0;
  const ov = chunks.get(52);
  if (ov) {
    if (ov.length !== 1 || ov[0]!.length !== 1 || ov[0]![0]! < 1 || ov[0]![0]! > 3) {
      return { ok: false, reason: `option 52 (overload) must be one byte 1, 2 or 3` };
    }
    overload = ov[0]![0]!;
    if (overload & 1) {
      err = readOptions(buf, FILE_OFF, COOKIE_OFF, 'file field', chunks, true);
      if (err) return { ok: false, reason: err };
    }
    if (overload & 2) {
      err = readOptions(buf, SNAME_OFF, FILE_OFF, 'sname field', chunks, true);
      if (err) return { ok: false, reason: err };
    }
  }
  const m = new DhcpMessage();
  m.op = op;
  m.htype = buf[1]!;
  m.hlen = hlen;
  m.hops = buf[3]!;
  m.xid = buf.readUInt32BE(4);
  m.secs = buf.readUInt16BE(8);
  m.flags = buf.readUInt16BE(10);
  m.ciaddr = ipAt(buf, 12);
  m.yiaddr = ipAt(buf, 16);
  m.siaddr = ipAt(buf, 20);
  m.giaddr = ipAt(buf, 24);
  m.chaddr = buf.toString('hex', 28, 28 + hlen);
  m.mac = m.htype === 1 && hlen === 6 ? (m.chaddr as Mac) : null;
  m.sname = overload & 2 ? '' : cString(buf, SNAME_OFF, FILE_OFF);
  m.file = overload & 1 ? '' : cString(buf, FILE_OFF, COOKIE_OFF);
  m.overload = overload;
  for (const [code, list] of chunks) {
    m.options.set(code, list.length === 1 ? Buffer.from(list[0]!) : Buffer.concat(list));
  }
  return { ok: true, msg: m };
}

/** Decodes one BOOTP/DHCP message (the UDP payload). Never throws. */
export function decodeDhcp(buf: Buffer): DhcpDecodeResult {
  try {
    return decodeUnsafe(buf);
  } catch (e) {
    return { ok: false, reason: `undecodable: ${(e as Error)?.message ?? String(e)}` };
  }
}

function ipList(b: Buffer | undefined): string[] | undefined {
  if (!b || b.length === 0 || b.length % 4 !== 0) return undefined;
  const out: string[] = [];
  for (let o = 0; o < b.length; o += 4) out.push(ipAt(b, o));
  return out;
}
function ip1(b: Buffer | undefined): string | undefined {
  return b && b.length === 4 ? ipAt(b, 0) : undefined;
}
function latin1(b: Buffer | undefined): string | undefined {
  return b ? b.toString('latin1') : undefined;
}
function latin1NoTrailingNul(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  let e = b.length;
  while (e > 0 && b[e - 1] === 0) e--;
  return b.toString('latin1', 0, e);
}

/** Parses code/length/data sub-options (option 82, option 43). Null if they do not fit exactly. */
export function parseSubOptions(b: Buffer): SubOption[] | null {
  const out: SubOption[] = [];
  let i = 0;
  while (i < b.length) {
    if (i + 2 > b.length) return null;
    const len = b[i + 1]!;
    if (i + 2 + len > b.length) return null;
    out.push({ code: b[i]!, data: b.subarray(i + 2, i + 2 + len) });
    i += 2 + len;
  }
  return out;
}

function typedViews(o: Map<number, Buffer>): Typed {
  const t53 = o.get(53);
  const typeCode = t53 && t53.length === 1 ? t53[0]! : undefined;
  let relayAgent: RelayAgentInfo | undefined;
  const r82 = o.get(82);
  if (r82) {
    const subs = parseSubOptions(r82);
    if (subs) {
      relayAgent = { subOptions: subs };
      const c = subs.find((s) => s.code === 1);
      const r = subs.find((s) => s.code === 2);
      if (c) relayAgent.circuitId = c.data.toString('hex');
      if (r) relayAgent.remoteId = r.data.toString('hex');
    }
  }
  const lt = o.get(51);
  const pl = o.get(55);
  const cid = o.get(61);
  return {
    typeCode,
    type: typeCode !== undefined && typeCode >= 1 && typeCode <= 8 ? DHCP_MESSAGE_TYPES[typeCode - 1] : undefined,
    vendorClass: latin1(o.get(60)),
    paramList: pl ? Array.from(pl) : undefined,
    hostname: latin1(o.get(12)),
    clientId: cid ? cid.toString('hex') : undefined,
    requestedIp: ip1(o.get(50)),
    serverId: ip1(o.get(54)),
    leaseTime: lt && lt.length === 4 ? lt.readUInt32BE(0) : undefined,
    relayAgent,
    userClass: latin1(o.get(77)),
    subnetMask: ip1(o.get(1)),
    routers: ipList(o.get(3)),
    tftpServer: latin1NoTrailingNul(o.get(66)),
    bootfileName: latin1NoTrailingNul(o.get(67)),
    tftpServers150: ipList(o.get(150)),
  };
}

// ------------------------------------------------------------------------------ encoding

function bad(message: string, key?: string, expected?: string): never {
  throw new ApsError('APS_ERR_PROTOCOL', message, { key, expected });
}

/** A dotted quad (no leading zeros, no spaces) as 4 bytes, or null. Hand-rolled: the server encodes several per reply. */
export function parseIpv4(s: string): Buffer | null {
  if (typeof s !== 'string' || s.length < 7 || s.length > 15) return null;
  const out = Buffer.allocUnsafe(4);
  let part = 0;
  let val = 0;
  let digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // a final '.'
    if (c === 46) {
      if (digits === 0 || part > 3) return null;
      out[part++] = val;
      val = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && val === 0) return null; // leading zero
      val = val * 10 + (c - 48);
      if (++digits > 3 || val > 255) return null;
    } else return null;
  }
  return part === 4 ? out : null;
}

export function ipv4ToString(b: Buffer, offset = 0): string {
  if (offset < 0 || offset + 4 > b.length) bad(`no IPv4 address at offset ${offset}`);
  return ipAt(b, offset);
}

function needIp(s: string, key: string): Buffer {
  return parseIpv4(s) ?? bad(`"${s}" is not an IPv4 address`, key, 'a dotted quad such as 10.0.0.1');
}

function needInt(n: number, max: number, key: string): number {
  if (!Number.isInteger(n) || n < 0 || n > max) bad(`${n} is out of range`, key, `an integer 0..${max}`);
  return n;
}

function needLatin1(s: string, key: string): Buffer {
  if (typeof s !== 'string') bad(`not a string`, key);
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) bad(`"${s}" has a character outside latin1`, key, 'latin1 text');
  return Buffer.from(s, 'latin1');
}

/** Option value: one IPv4 address. */
export function optIp(s: string): Buffer {
  return needIp(s, 'ip');
}
/** Option value: a list of IPv4 addresses (at least one). */
export function optIps(list: readonly string[]): Buffer {
  if (!list.length) bad('an address list option needs at least one address', 'ips');
  return Buffer.concat(list.map((s) => needIp(s, 'ips')));
}
/** Option value: unsigned 32-bit, network order (lease times ...). */
export function optU32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(needInt(n, 0xffffffff, 'u32'));
  return b;
}
export function optU16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(needInt(n, 0xffff, 'u16'));
  return b;
}
export function optU8(n: number): Buffer {
  return Buffer.from([needInt(n, 0xff, 'u8')]);
}
/** Option value: text, latin1 byte for byte, no terminator added. */
export function optString(s: string): Buffer {
  return needLatin1(s, 'string');
}
/** Option value: code/length/data sub-options (vendor-specific option 43, relay agent 82). */
export function optSub(subs: readonly { code: number; data: Buffer | string }[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of subs) {
    const data = typeof s.data === 'string' ? needLatin1(s.data, 'sub-option') : s.data;
    needInt(s.code, 255, 'sub-option code');
    if (data.length > 255) bad(`sub-option ${s.code} is ${data.length} bytes`, 'sub-option', 'at most 255 bytes');
    parts.push(Buffer.from([s.code, data.length]), data);
  }
  return Buffer.concat(parts);
}

function hexBytes(s: string, key: string): Buffer {
  const h = typeof s === 'string' ? s.replace(/[:.-]/g, '') : '';
  if (typeof s !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(h)) bad(`"${s}" is not hex`, key, 'hex digits, in pairs');
  return Buffer.from(h, 'hex');
}

function own<K extends keyof DhcpTypedOptions>(input: DhcpEncodeInput, k: K): DhcpTypedOptions[K] | undefined {
  return Object.prototype.hasOwnProperty.call(input, k) ? input[k] : undefined;
}

/** The option values the typed own-properties of `input` stand for. */
function typedOverrides(input: DhcpEncodeInput): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  const set = (code: number, v: Buffer) => out.set(code, v);
  const type = own(input, 'type');
  if (type !== undefined) {
    const c = messageTypeCode(type);
    if (c < 1) bad(`unknown message type "${type}"`, 'type', DHCP_MESSAGE_TYPES.join(', '));
    set(53, Buffer.from([c]));
  }
  const v = <K extends keyof DhcpTypedOptions>(k: K) => own(input, k);
  const vc = v('vendorClass');
  if (vc !== undefined) set(60, needLatin1(vc, 'vendorClass'));
  const pl = v('paramList');
  if (pl !== undefined) set(55, Buffer.from(pl.map((n) => needInt(n, 255, 'paramList'))));
  const hn = v('hostname');
  if (hn !== undefined) set(12, needLatin1(hn, 'hostname'));
  const cid = v('clientId');
  if (cid !== undefined) set(61, hexBytes(cid, 'clientId'));
  const rq = v('requestedIp');
  if (rq !== undefined) set(50, needIp(rq, 'requestedIp'));
  const sid = v('serverId');
  if (sid !== undefined) set(54, needIp(sid, 'serverId'));
  const lt = v('leaseTime');
  if (lt !== undefined) set(51, optU32(lt));
  const ra = v('relayAgent');
  if (ra !== undefined) {
    const subs: SubOption[] = (ra.subOptions ?? []).map((s) => ({ code: s.code, data: s.data }));
    const put = (code: number, hex: string | undefined, key: string) => {
      if (hex === undefined) return;
      const data = hexBytes(hex, key);
      const i = subs.findIndex((s) => s.code === code);
      if (i >= 0) subs[i] = { code, data };
      else subs.push({ code, data });
    };
    put(1, ra.circuitId, 'relayAgent.circuitId');
    put(2, ra.remoteId, 'relayAgent.remoteId');
    set(82, optSub(subs));
  }
  const uc = v('userClass');
  if (uc !== undefined) set(77, needLatin1(uc, 'userClass'));
  const sm = v('subnetMask');
  if (sm !== undefined) set(1, needIp(sm, 'subnetMask'));
  const rt = v('routers');
  if (rt !== undefined) set(3, optIps(rt));
  const ts = v('tftpServer');
  if (ts !== undefined) set(66, needLatin1(ts, 'tftpServer'));
  const bf = v('bootfileName');
  if (bf !== undefined) set(67, needLatin1(bf, 'bootfileName'));
  const t150 = v('tftpServers150');
  if (t150 !== undefined) set(150, optIps(t150));
  return out;
}

/** Builds a BOOTREQUEST/BOOTREPLY. Throws ApsError APS_ERR_PROTOCOL on invalid input. */
export function encodeDhcp(input: DhcpEncodeInput): Buffer {
  const overrides = typedOverrides(input);
  // option order: 53, then the map's order (typed values replace in place), then new typed codes
  const ordered = new Map<number, Buffer>();
  const t53 = overrides.get(53) ?? input.options?.get(53);
  if (t53) ordered.set(53, t53);
  for (const [code, val] of input.options ?? []) {
    if (code === 53 || code === 52) continue;
    if (!Number.isInteger(code) || code < 1 || code > 254) bad(`option code ${code} cannot carry data`, 'options', 'codes 1..254');
    if (!Buffer.isBuffer(val)) bad(`option ${code} is not a Buffer`, 'options');
    ordered.set(code, overrides.get(code) ?? val);
  }
  for (const [code, val] of overrides) if (!ordered.has(code)) ordered.set(code, val);

  const typeCode = t53 && t53.length === 1 ? t53[0]! : 0;
  const op = input.op ?? (typeCode === 2 || typeCode === 5 || typeCode === 6 ? BOOTREPLY : typeCode ? BOOTREQUEST : 0);
  if (!op) bad('op is missing and there is no message type to derive it from', 'op', '1 (BOOTREQUEST) or 2 (BOOTREPLY)');
  const chaddr = hexBytes(input.chaddr, 'chaddr');
  if (chaddr.length > 16) bad(`chaddr is ${chaddr.length} bytes`, 'chaddr', 'at most 16 bytes');
  const sname = needLatin1(input.sname ?? '', 'sname');
  const file = needLatin1(input.file ?? '', 'file');
  if (sname.length > 64 || sname.includes(0)) bad('sname is longer than 64 bytes or holds a NUL', 'sname');
  if (file.length > 128 || file.includes(0)) bad('file is longer than 128 bytes or holds a NUL', 'file');

  let optBytes = 0;
  for (const val of ordered.values()) optBytes += val.length + 2 * Math.max(1, Math.ceil(val.length / 255));
  const size = Math.max(BOOTP_MIN_BYTES, DHCP_HEADER_BYTES + optBytes + 1);
  const b = Buffer.alloc(size);
  b[0] = needInt(op, 255, 'op');
  b[1] = needInt(input.htype ?? 1, 255, 'htype');
  b[2] = needInt(input.hlen ?? chaddr.length, 16, 'hlen');
  b[3] = needInt(input.hops ?? 0, 255, 'hops');
  b.writeUInt32BE(needInt(input.xid, 0xffffffff, 'xid'), 4);
  b.writeUInt16BE(needInt(input.secs ?? 0, 0xffff, 'secs'), 8);
  b.writeUInt16BE(needInt(input.flags ?? 0, 0xffff, 'flags'), 10);
  needIp(input.ciaddr ?? '0.0.0.0', 'ciaddr').copy(b, 12);
  needIp(input.yiaddr ?? '0.0.0.0', 'yiaddr').copy(b, 16);
  needIp(input.siaddr ?? '0.0.0.0', 'siaddr').copy(b, 20);
  needIp(input.giaddr ?? '0.0.0.0', 'giaddr').copy(b, 24);
  chaddr.copy(b, 28);
  sname.copy(b, SNAME_OFF);
  file.copy(b, FILE_OFF);
  b.writeUInt32BE(DHCP_MAGIC_COOKIE, COOKIE_OFF);
  let o = DHCP_HEADER_BYTES;
  for (const [code, val] of ordered) {
    let p = 0;
    do {
      const n = Math.min(255, val.length - p);
      b[o++] = code;
      b[o++] = n;
      val.copy(b, o, p, p + n);
      o += n;
      p += n;
    } while (p < val.length);
  }
  b[o] = 255;
  return b;
}
