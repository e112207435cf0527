/**
 * A small SIP message codec (RFC 3261 section 7): enough to send a NOTIFY, read the answer,
 * and answer a SUBSCRIBE. Pure functions from Buffer to typed values and back.
 *
 * parseSip never throws: a datagram it cannot read comes back as { ok: false, reason }.
 * Sizes are bounded (whole message, header count, line length). Compact header names
 * (i f t v l m c e o k s …) are read as their long forms; header names compare
 * case-insensitively. A header given several times, or as a comma list (Via, Contact,
 * Route …), is kept in order.
 *
 * The builders throw ApsError APS_ERR_PROTOCOL for a value containing CR or LF (header
 * injection) — a programming error, never a property of received data.
 */
import { randomBytes } from 'node:crypto';
import { ApsError } from '../errors.js';

export interface SipHeader {
  /** the canonical long name (Call-ID, CSeq, Via, …) for known headers, otherwise as received */
  name: string;
  value: string;
}

interface SipBase {
  version: string;
  headers: SipHeader[];
  body: Buffer;
}
export interface SipRequest extends SipBase {
  kind: 'request';
  method: string;
  uri: string;
}
export interface SipResponse extends SipBase {
  kind: 'response';
  status: number;
  reason: string;
}
export type SipMessage = SipRequest | SipResponse;
export type SipParseResult = { ok: true; msg: SipMessage } | { ok: false; reason: string };
export type HeaderList = SipHeader[] | [string, string][];

export const MAX_SIP_MESSAGE_BYTES = 65_535;
const MAX_HEADERS = 256;
const MAX_LINE_BYTES = 8192;

const COMPACT: Record<string, string> = {
  i: 'Call-ID',
  f: 'From',
  t: 'To',
  v: 'Via',
  l: 'Content-Length',
  m: 'Contact',
  c: 'Content-Type',
  e: 'Content-Encoding',
  o: 'Event',
  k: 'Supported',
  s: 'Subject',
  r: 'Refer-To',
  b: 'Referred-By',
  u: 'Allow-Events',
  x: 'Session-Expires',
  a: 'Accept-Contact',
  j: 'Reject-Contact',
  d: 'Request-Disposition',
  y: 'Identity',
  n: 'Identity-Info',
};

const CANONICAL = new Map(
  [
    'Accept',
    'Accept-Encoding',
    'Accept-Language',
    'Alert-Info',
    'Allow',
    'Allow-Events',
    'Authorization',
    'Call-ID',
    'Call-Info',
    'Contact',
    'Content-Disposition',
    'Content-Encoding',
    'Content-Length',
    'Content-Type',
    'CSeq',
    'Date',
    'Event',
    'Expires',
    'From',
    'Max-Forwards',
    'Min-Expires',
    'Proxy-Authenticate',
    'Proxy-Authorization',
    'Record-Route',
    'Require',
    'Retry-After',
    'Route',
    'Server',
    'Subject',
    'Subscription-State',
    'Supported',
    'To',
    'Unsupported',
    'User-Agent',
    'Via',
    'Warning',
    'WWW-Authenticate',
    'Refer-To',
    'Referred-By',
    'Session-Expires',
  ].map((n) => [n.toLowerCase(), n]),
);

/** Headers whose value may be a comma-separated list of several values (RFC 3261 7.3.1). */
const LIST_HEADERS = new Set(['via', 'contact', 'route', 'record-route', 'allow', 'supported', 'require', 'proxy-require', 'unsupported', 'accept', 'allow-events']);

/** `v` → `Via`, `call-id` → `Call-ID`, `X-Foo` stays `X-Foo`. */
export function canonicalHeaderName(name: string): string {
  const n = name.trim();
  if (n.length === 1) {
    const c = COMPACT[n.toLowerCase()];
    if (c) return c;
  }
  return CANONICAL.get(n.toLowerCase()) ?? n;
}

const TOKEN_RE = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

/** Splits `a, "b, c" <sip:x>, d` at the commas outside quotes and angle brackets. */
export function splitHeaderList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let angle = 0;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted) {
      cur += ch;
      if (ch === '\\' && i + 1 < value.length) cur += value[++i];
      else if (ch === '"') quoted = false;
      continue;
    }
    if (ch === '"') quoted = true;
    else if (ch === '<') angle++;
    else if (ch === '>' && angle > 0) angle--;
    else if (ch === ',' && angle === 0) {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** The first value of a header (the first element of a list header), or undefined. */
export function getHeader(msg: { headers: SipHeader[] }, name: string): string | undefined {
  return getHeaders(msg, name)[0];
}

/** Every value of a header, in order; list headers (Via, Contact, …) split at their commas. */
export function getHeaders(msg: { headers: SipHeader[] }, name: string): string[] {
  const want = canonicalHeaderName(name).toLowerCase();
  const out: string[] = [];
  for (const h of msg.headers) {
    if (h.name.toLowerCase() !== want) continue;
    if (LIST_HEADERS.has(want) && h.value.trim() !== '*') out.push(...splitHeaderList(h.value));
    else out.push(h.value);
  }
  return out;
}

/** A parameter of a header value: `branch` of a Via, `tag` of a From/To (`;name=value`, outside quotes and <>). Empty string for a flag (`;rport`). */
export function headerParam(value: string, name: string): string | undefined {
  let depthAngle = 0;
  let quoted = false;
  let start = -1;
  const params: string[] = [];
  for (let i = 0; i <= value.length; i++) {
    const ch = value[i];
    if (i === value.length || (!quoted && depthAngle === 0 && ch === ';')) {
      if (start >= 0) params.push(value.slice(start, i));
      start = i + 1;
      continue;
    }
    if (quoted) {
      if (ch === '\\') i++;
      else if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === '<') depthAngle++;
    else if (ch === '>' && depthAngle > 0) depthAngle--;
  }
  const want = name.toLowerCase();
  for (const p of params) {
    const eq = p.indexOf('=');
    const k = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
    if (k === want) return eq < 0 ? '' : p.slice(eq + 1).trim();
  }
  return undefined;
}

/** `42 NOTIFY` → { seq: 42, method: 'NOTIFY' } */
export function parseCSeq(value: string | undefined): { seq: number; method: string } | undefined {
  const m = /^\s*(\d{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*$/.exec(value ?? '');
  if (!m) return undefined;
  const seq = Number(m[1]);
  return seq < 2 ** 31 ? { seq, method: m[2].toUpperCase() } : undefined;
}

const fail = (reason: string): SipParseResult => ({ ok: false, reason });

function findHeaderEnd(buf: Buffer, from: number): { end: number; bodyStart: number } | undefined {
  for (let i = from; i < buf.length - 1; i++) {
    if (buf[i] !== 0x0a) continue;
    if (buf[i + 1] === 0x0a) return { end: i, bodyStart: i + 2 };
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return { end: i, bodyStart: i + 3 };
  }
  return undefined;
}

/** Reads one SIP message from a datagram (or a framed stream message). Never throws. */
export function parseSip(buf: Buffer): SipParseResult {
  try {
    return parseUnsafe(buf);
  } catch (e) {
    return fail(`unreadable: ${(e as Error).message}`);
  }
}

function parseUnsafe(buf: Buffer): SipParseResult {
  if (!Buffer.isBuffer(buf)) return fail('not a buffer');
  if (buf.length > MAX_SIP_MESSAGE_BYTES) return fail('message too large');
  let start = 0;
  while (start < buf.length && (buf[start] === 0x0d || buf[start] === 0x0a)) start++; // RFC 3261 7.5
  if (start === buf.length) return fail(buf.length ? 'keep-alive' : 'empty datagram');
  const he = findHeaderEnd(buf, start);
  if (!he) return fail('no blank line after the headers');
  const head = buf.toString('utf8', start, he.end);
  if (head.includes('\0')) return fail('NUL byte in the headers');
  const lines = head.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const first = lines[0];
  if (Buffer.byteLength(first) > MAX_LINE_BYTES) return fail('start line too long');

  let msg: SipMessage;
  const resp = /^(SIP\/\d+\.\d+) ([1-6]\d\d) ?(.*)$/i.exec(first);
  if (resp) {
    if (resp[1].toUpperCase() !== 'SIP/2.0') return fail(`unsupported version ${resp[1]}`);
    msg = { kind: 'response', version: 'SIP/2.0', status: Number(resp[2]), reason: resp[3], headers: [], body: Buffer.alloc(0) };
  } else {
    const req = /^(\S+) (\S+) (SIP\/\d+\.\d+)$/i.exec(first);
    if (!req) return fail('unreadable start line');
    if (!TOKEN_RE.test(req[1])) return fail('invalid method');
    if (req[3].toUpperCase() !== 'SIP/2.0') return fail(`unsupported version ${req[3]}`);
    if (!/^[A-Za-z][A-Za-z0-9+\-.]*:/.test(req[2])) return fail('invalid Request-URI');
    msg = { kind: 'request', version: 'SIP/2.0', method: req[1], uri: req[2], headers: [], body: Buffer.alloc(0) };
  }

  const headers = msg.headers;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (Buffer.byteLength(line) > MAX_LINE_BYTES) return fail('header line too long');
    if (line[0] === ' ' || line[0] === '\t') {
      // folded continuation of the previous header (RFC 3261 7.3.1)
      if (!headers.length) return fail('continuation line before any header');
      const prev = headers[headers.length - 1];
      prev.value = (prev.value + ' ' + line.trim()).trim();
      if (Buffer.byteLength(prev.value) > MAX_LINE_BYTES) return fail('header line too long');
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) return fail('header line without a name');
    const rawName = line.slice(0, colon).trim();
    if (!TOKEN_RE.test(rawName)) return fail('invalid header name');
    if (headers.length >= MAX_HEADERS) return fail('too many headers');
    headers.push({ name: canonicalHeaderName(rawName), value: line.slice(colon + 1).trim() });
  }

  for (const h of ['Via', 'From', 'To', 'Call-ID', 'CSeq']) {
    if (getHeader(msg, h) === undefined) return fail(`missing ${h} header`);
  }
  const cseq = parseCSeq(getHeader(msg, 'CSeq'));
  if (!cseq) return fail('invalid CSeq');
  if (msg.kind === 'request' && cseq.method !== msg.method.toUpperCase()) return fail('CSeq method differs from the request method');

  const rest = buf.subarray(he.bodyStart);
  const lens = getHeaders(msg, 'Content-Length');
  if (lens.length) {
    if (lens.some((l) => l !== lens[0])) return fail('conflicting Content-Length headers');
    if (!/^\d{1,6}$/.test(lens[0])) return fail('invalid Content-Length');
    const n = Number(lens[0]);
    if (n > rest.length) return fail('body shorter than Content-Length');
    msg.body = Buffer.from(rest.subarray(0, n));
  } else {
    msg.body = Buffer.from(rest); // over UDP the body is the rest of the datagram (RFC 3261 18.3)
  }
  return { ok: true, msg };
}

function toPairs(h: HeaderList | undefined): [string, string][] {
  if (!h) return [];
  return (h as Array<SipHeader | [string, string]>).map((x) => (Array.isArray(x) ? [x[0], x[1]] : [x.name, x.value]));
}

function checkValue(name: string, value: string): void {
  if (/[\r\n\0]/.test(value) || /[\r\n\0:]/.test(name) || name.trim() === '') {
    throw new ApsError('APS_ERR_PROTOCOL', `SIP header ${JSON.stringify(name.slice(0, 40))} has a line break or invalid name`, { key: name.slice(0, 40) });
  }
}

function serialize(startLine: string, headers: [string, string][], body: Buffer): Buffer {
  let head = startLine + '\r\n';
  for (const [n, v] of headers) {
    const name = canonicalHeaderName(n);
    if (name.toLowerCase() === 'content-length') continue;
    checkValue(name, v);
    head += `${name}: ${v}\r\n`;
  }
  head += `Content-Length: ${body.length}\r\n\r\n`;
  const out = Buffer.concat([Buffer.from(head, 'utf8'), body]);
  if (out.length > MAX_SIP_MESSAGE_BYTES) throw new ApsError('APS_ERR_PROTOCOL', 'SIP message too large', { bytes: out.length });
  return out;
}

function bodyBuffer(body: string | Buffer | undefined): Buffer {
  return body === undefined ? Buffer.alloc(0) : typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
}

export interface BuildRequestOptions {
  method: string;
  uri: string;
  /** in order; Content-Length is computed (a given one is dropped) */
  headers: HeaderList;
  body?: string | Buffer;
}

/** `METHOD uri SIP/2.0`, the headers in the order given, Content-Length, body. */
export function buildRequest(opts: BuildRequestOptions): Buffer {
  if (!TOKEN_RE.test(opts.method)) throw new ApsError('APS_ERR_PROTOCOL', 'invalid SIP method', { key: 'method' });
  if (/[\s\0]/.test(opts.uri) || opts.uri === '') throw new ApsError('APS_ERR_PROTOCOL', 'invalid Request-URI', { key: 'uri' });
  return serialize(`${opts.method} ${opts.uri} SIP/2.0`, toPairs(opts.headers), bodyBuffer(opts.body));
}

export interface BuildResponseOptions {
  /** tag added to To when the request's To has none (not for 100); random when not given */
  toTag?: string;
  body?: string | Buffer;
  /** where the request came from: fills `received` and an empty `rport` in the top Via (RFC 3581) */
  source?: { address: string; port: number };
}

/** A random token: hex, `bytes` random bytes long. */
export function randomToken(bytes = 8): string {
  return randomBytes(bytes).toString('hex');
}

/** A response to `req`: Via (all, in order), From, To (+ tag), Call-ID, CSeq copied, then `extraHeaders`. */
export function buildResponse(req: SipRequest, code: number, reason: string, extraHeaders?: HeaderList, opts: BuildResponseOptions = {}): Buffer {
  if (!Number.isInteger(code) || code < 100 || code > 699) throw new ApsError('APS_ERR_PROTOCOL', 'invalid SIP status code', { key: 'status' });
  if (/[\r\n]/.test(reason)) throw new ApsError('APS_ERR_PROTOCOL', 'SIP reason phrase has a line break', { key: 'reason' });
  const h: [string, string][] = [];
  const vias = getHeaders(req, 'Via');
  vias.forEach((v, i) => {
    if (i === 0 && opts.source) v = fillReceived(v, opts.source);
    h.push(['Via', v]);
  });
  h.push(['From', getHeader(req, 'From') ?? '']);
  let to = getHeader(req, 'To') ?? '';
  if (code !== 100 && headerParam(to, 'tag') === undefined) to += `;tag=${opts.toTag ?? randomToken(6)}`;
  h.push(['To', to]);
  h.push(['Call-ID', getHeader(req, 'Call-ID') ?? '']);
  h.push(['CSeq', getHeader(req, 'CSeq') ?? '']);
  h.push(...toPairs(extraHeaders));
  return serialize(`SIP/2.0 ${code} ${reason}`, h, bodyBuffer(opts.body));
}

/** Top Via: `received=<ip>` when the sent-by host differs or rport is asked for, `rport=<port>` when empty (RFC 3261 18.2.1, RFC 3581). */
function fillReceived(via: string, src: { address: string; port: number }): string {
  const semi = via.indexOf(';');
  const sentBy = (semi < 0 ? via : via.slice(0, semi)).trim().split(/\s+/)[1] ?? '';
  const host = sentBy.startsWith('[') ? sentBy.slice(1, sentBy.indexOf(']')) : sentBy.split(':')[0];
  const params = semi < 0 ? [] : via.slice(semi + 1).split(';');
  const hasRport = params.some((p) => p.trim().toLowerCase() === 'rport');
  let out = (semi < 0 ? via : via.slice(0, semi)).trim();
  let haveReceived = false;
  for (const p of params) {
    const t = p.trim();
    if (t.toLowerCase() === 'rport') out += `;rport=${src.port}`;
    else if (t.toLowerCase().startsWith('received=')) {
      haveReceived = true;
      out += `;received=${src.address}`;
    } else if (t) out += `;${t}`;
  }
  if (!haveReceived && (host !== src.address || hasRport)) out += `;received=${src.address}`;
  return out;
}
