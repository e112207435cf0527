/**
 * TFTP wire codec: Buffer <-> typed packets (RFC 1350, options per RFC 2347).
 *
 * Pure and allocation-light. Decoding never throws: it returns `{ ok: false, reason }` for
 * anything malformed (too short, too long, missing NUL terminators, bad opcode ...).
 * Encoders throw only on programming errors (out-of-range block numbers and the like).
 */

export const OP_RRQ = 1;
export const OP_WRQ = 2;
export const OP_DATA = 3;
export const OP_ACK = 4;
export const OP_ERROR = 5;
export const OP_OACK = 6;

/** TFTP error codes (RFC 1350 + RFC 2347). */
export const TftpErr = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  OPTION_REFUSED: 8,
} as const;

/** A request must fit in 512 bytes (RFC 2347: the RRQ/WRQ with its options). */
export const MAX_REQUEST_BYTES = 512;
/** Longest accepted file name, in bytes. */
export const MAX_FILENAME_BYTES = 255;
/** RFC 2348 range for blksize. */
export const MIN_BLKSIZE = 8;
export const MAX_BLKSIZE = 65464;
/** Longest ERROR message we put on the wire (bytes). */
const MAX_ERROR_MSG_BYTES = 255;

export interface RequestPacket {
  op: typeof OP_RRQ | typeof OP_WRQ;
  filename: string;
  /** lower-cased ("octet", "netascii", "mail", ...). */
  mode: string;
  /** option names lower-cased (RFC 2347: case-insensitive); first occurrence wins. Null-prototype object. */
  options: Record<string, string>;
}
export interface DataPacket {
  op: typeof OP_DATA;
  block: number;
  /** A view into the decoded buffer (no copy). */
  data: Buffer;
}
export interface AckPacket {
  op: typeof OP_ACK;
  block: number;
}
export interface ErrorPacket {
  op: typeof OP_ERROR;
  code: number;
  message: string;
}
export interface OackPacket {
  op: typeof OP_OACK;
  options: Record<string, string>;
}
export type TftpPacket = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

export type DecodeResult<P extends TftpPacket = TftpPacket> = { ok: true; packet: P } | { ok: false; reason: string };

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

/** The opcode of a datagram, or -1 if it is shorter than 2 bytes. Does not validate the rest. */
export function peekOpcode(buf: Buffer): number {
  return buf.length < 2 ? -1 : (buf[0]! << 8) | buf[1]!;
}

/** The block number if `buf` is a well-formed ACK (exactly 4 bytes is usual; trailing bytes tolerated), else -1. */
export function ackBlock(buf: Buffer): number {
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== OP_ACK) return -1;
  return (buf[2]! << 8) | buf[3]!;
}

/**
 * Parse NUL-terminated name/value pairs from `start` to the end of `buf`. Trailing NUL padding
 * (some clients add one) is tolerated; any unterminated string is refused.
 */
function parseOptions(buf: Buffer, start: number): { ok: true; options: Record<string, string> } | { ok: false; reason: string } {
  const options: Record<string, string> = Object.create(null) as Record<string, string>;
  const end = buf.length;
  let p = start;
  while (p < end) {
    const nameEnd = buf.indexOf(0, p);
    if (nameEnd < 0) return fail('option name not NUL-terminated');
    if (nameEnd === p) {
      // empty string: acceptable only as trailing padding
      for (let i = p; i < end; i++) if (buf[i] !== 0) return fail('empty option name');
      break;
    }
    const valEnd = buf.indexOf(0, nameEnd + 1);
    if (valEnd < 0) return fail('option value not NUL-terminated');
    const name = buf.toString('latin1', p, nameEnd).toLowerCase();
    if (!(name in options)) options[name] = buf.toString('latin1', nameEnd + 1, valEnd);
    p = valEnd + 1;
  }
  return { ok: true, options };
}

/** Decode an RRQ or WRQ. Anything else (other opcodes included) is refused with a reason. */
export function decodeRequest(buf: Buffer): DecodeResult<RequestPacket> {
  const len = buf.length;
  if (len < 2) return fail(`packet too short (${len} bytes)`);
  const op = (buf[0]! << 8) | buf[1]!;
  if (op !== OP_RRQ && op !== OP_WRQ) return fail(`not a request (opcode ${op})`);
  if (len > MAX_REQUEST_BYTES) return fail(`request too long (${len} bytes > ${MAX_REQUEST_BYTES})`);
  const fnEnd = buf.indexOf(0, 2);
  if (fnEnd < 0) return fail('filename not NUL-terminated');
  if (fnEnd === 2) return fail('empty filename');
  if (fnEnd - 2 > MAX_FILENAME_BYTES) return fail(`filename too long (${fnEnd - 2} bytes > ${MAX_FILENAME_BYTES})`);
  for (let i = 2; i < fnEnd; i++) {
    const c = buf[i]!;
    if (c < 0x20 || c === 0x7f) return fail('filename contains control characters');
  }
  const filename = buf.toString('utf8', 2, fnEnd);
  if (filename.includes('\uFFFD')) return fail('filename is not valid UTF-8');
  const modeStart = fnEnd + 1;
  const modeEnd = modeStart < len ? buf.indexOf(0, modeStart) : -1;
  if (modeEnd < 0) return fail('mode not NUL-terminated');
  if (modeEnd === modeStart) return fail('empty mode');
  const mode = buf.toString('latin1', modeStart, modeEnd).toLowerCase();
  const opts = parseOptions(buf, modeEnd + 1);
  if (!opts.ok) return opts;
  return { ok: true, packet: { op, filename, mode, options: opts.options } };
}

/** Decode any TFTP packet. */
export function decode(buf: Buffer): DecodeResult {
  const len = buf.length;
  if (len < 2) return fail(`packet too short (${len} bytes)`);
  const op = (buf[0]! << 8) | buf[1]!;
  switch (op) {
    case OP_RRQ:
    case OP_WRQ:
      return decodeRequest(buf);
    case OP_DATA:
      if (len < 4) return fail('DATA too short');
      if (len - 4 > MAX_BLKSIZE) return fail('DATA payload too long');
      return { ok: true, packet: { op: OP_DATA, block: (buf[2]! << 8) | buf[3]!, data: buf.subarray(4) } };
    case OP_ACK:
      if (len !== 4) return fail(`ACK must be 4 bytes (got ${len})`);
      return { ok: true, packet: { op: OP_ACK, block: (buf[2]! << 8) | buf[3]! } };
    case OP_ERROR: {
      if (len < 4) return fail('ERROR too short');
      const code = (buf[2]! << 8) | buf[3]!;
      const nul = buf.indexOf(0, 4);
      if (nul < 0) return fail('ERROR message not NUL-terminated');
      return { ok: true, packet: { op: OP_ERROR, code, message: buf.toString('utf8', 4, nul) } };
    }
    case OP_OACK: {
      if (len > MAX_REQUEST_BYTES) return fail(`OACK too long (${len} bytes)`);
      const opts = parseOptions(buf, 2);
      if (!opts.ok) return opts;
      return { ok: true, packet: { op: OP_OACK, options: opts.options } };
    }
    default:
      return fail(`unknown opcode ${op}`);
  }
}

function checkBlock(block: number): void {
  if (!Number.isInteger(block) || block < 0 || block > 0xffff) throw new RangeError(`block number out of range: ${block}`);
}

/** Write the 4-byte DATA header for `block` (taken mod 65536) at `off`. */
export function writeDataHeader(buf: Buffer, off: number, block: number): void {
  buf[off] = 0;
  buf[off + 1] = OP_DATA;
  buf[off + 2] = (block >>> 8) & 0xff;
  buf[off + 3] = block & 0xff;
}

export function encodeData(block: number, data: Buffer): Buffer {
  checkBlock(block);
  const b = Buffer.allocUnsafe(4 + data.length);
  writeDataHeader(b, 0, block);
  data.copy(b, 4);
  return b;
}

export function encodeAck(block: number): Buffer {
  checkBlock(block);
  const b = Buffer.allocUnsafe(4);
  b[0] = 0;
  b[1] = OP_ACK;
  b[2] = block >>> 8;
  b[3] = block & 0xff;
  return b;
}

/** ERROR packet; the message is truncated to 255 bytes and must not contain NUL (NULs become spaces). */
export function encodeError(code: number, message: string): Buffer {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) throw new RangeError(`error code out of range: ${code}`);
  let msg = Buffer.from(message.replace(/\0/g, ' '), 'utf8');
  if (msg.length > MAX_ERROR_MSG_BYTES) msg = msg.subarray(0, MAX_ERROR_MSG_BYTES);
  const b = Buffer.allocUnsafe(5 + msg.length);
  b[0] = 0;
  b[1] = OP_ERROR;
  b[2] = code >>> 8;
  b[3] = code & 0xff;
  msg.copy(b, 4);
  b[4 + msg.length] = 0;
  return b;
}

function pairs(options: Record<string, string>): Buffer[] {
  const parts: Buffer[] = [];
  for (const k of Object.keys(options)) {
    const v = options[k]!;
    if (k.includes('\0') || v.includes('\0')) throw new RangeError('option names and values must not contain NUL');
    parts.push(Buffer.from(k, 'latin1'), Buffer.from([0]), Buffer.from(v, 'latin1'), Buffer.from([0]));
  }
  return parts;
}

export function encodeOack(options: Record<string, string>): Buffer {
  return Buffer.concat([Buffer.from([0, OP_OACK]), ...pairs(options)]);
}

/** RRQ/WRQ (used by tests and tools; the server never sends requests). */
export function encodeRequest(op: typeof OP_RRQ | typeof OP_WRQ, filename: string, mode: string, options: Record<string, string> = {}): Buffer {
  if (filename.includes('\0') || mode.includes('\0')) throw new RangeError('filename and mode must not contain NUL');
  return Buffer.concat([
    Buffer.from([0, op]),
    Buffer.from(filename, 'utf8'),
    Buffer.from([0]),
    Buffer.from(mode, 'latin1'),
    Buffer.from([0]),
    ...pairs(options),
  ]);
}

/**
 * netascii encoding (RFC 764 as used by RFC 1350): LF -> CR LF, CR -> CR NUL.
 * Returns the input itself when it contains neither CR nor LF.
 */
export function toNetascii(src: Buffer): Buffer {
  let extra = 0;
  let i = src.indexOf(10);
  while (i >= 0) {
    extra++;
    i = src.indexOf(10, i + 1);
  }
  i = src.indexOf(13);
  while (i >= 0) {
    // every CR becomes CR NUL (as BSD tftpd and tftpd-hpa do), so CR LF in the source survives
    // the round trip as CR LF instead of being read back as a lone LF
    extra++;
    i = src.indexOf(13, i + 1);
  }
  if (extra === 0) return src;
  const out = Buffer.allocUnsafe(src.length + extra);
  let o = 0;
  for (let j = 0; j < src.length; j++) {
    const c = src[j]!;
    if (c === 10) {
      out[o++] = 13;
      out[o++] = 10;
    } else if (c === 13) {
      out[o++] = 13;
      out[o++] = 0;
    } else out[o++] = c;
  }
  return out;
}

/** Inverse of toNetascii (CR LF -> LF, CR NUL -> CR); for tests and tools. */
export function fromNetascii(src: Buffer): Buffer {
  const out = Buffer.allocUnsafe(src.length);
  let o = 0;
  for (let j = 0; j < src.length; j++) {
    const c = src[j]!;
    if (c === 13 && j + 1 < src.length && (src[j + 1] === 10 || src[j + 1] === 0)) {
      out[o++] = src[j + 1] === 10 ? 10 : 13;
      j++;
    } else out[o++] = c;
  }
  return out.subarray(0, o);
}
