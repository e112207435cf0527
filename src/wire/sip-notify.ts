/**
 * SIP NOTIFY for resync: `Event: check-sync` (or the vendor's event) sent straight to the
 * phone over UDP as an RFC 3261 non-INVITE client transaction (section 17.1.2):
 *
 *   Trying ──1xx──▶ Proceeding ──final──▶ Completed
 *   Timer E: retransmit after T1, doubling up to T2 (Proceeding: every T2)
 *   Timer F: 64·T1 without a final response → timeout
 *
 * The pieces are exported for the SIP plug-and-play responder: buildNotify (one request,
 * in or out of a dialog), startClientTransaction (transport-agnostic retransmission and
 * matching), and the id makers.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { ApsError } from '../errors.js';
import type { Logger } from '../log.js';
import { buildRequest, getHeader, headerParam, parseCSeq, parseSip, randomToken, type SipMessage, type SipResponse } from './sip.js';

export interface SipTimers {
  /** RTT estimate, default 500 ms */
  t1?: number;
  /** maximum retransmit interval for non-INVITE requests, default 4000 ms */
  t2?: number;
  /** transaction timeout, default 64·T1 */
  timerF?: number;
}

export interface TransactionResult {
  /** a 2xx final response */
  ok: boolean;
  status?: number;
  /** the reason phrase of the final response, or why there was none */
  reason?: string;
  /** how many times the request was sent */
  attempts: number;
  ms: number;
  response?: SipResponse;
}

export interface ClientTransaction {
  readonly branch: string;
  /** Hand it every message received on the socket; true when it belonged to this transaction (also a retransmitted final response). */
  receive(msg: SipMessage): boolean;
  readonly done: Promise<TransactionResult>;
  /** Ends the transaction now (resolves done with ok=false and this reason). */
  cancel(reason?: string): void;
}

export interface ClientTransactionOptions {
  request: Buffer;
  /** the branch of the request's top Via */
  branch: string;
  /** the request method (responses are matched on branch and CSeq method) */
  method: string;
  /** puts the request on the wire; a throw or rejection ends the transaction (transport error) */
  send: (request: Buffer) => void | Promise<void>;
  timers?: SipTimers;
  /** whether the transport is reliable (TCP/TLS): no retransmissions then */
  reliable?: boolean;
  onProvisional?: (response: SipResponse) => void;
}

/** `z9hG4bK` (RFC 3261 magic cookie) + 20 hex digits */
export function newBranch(): string {
  return 'z9hG4bK' + randomToken(10);
}
export function newTag(): string {
  return randomToken(6);
}
export function newCallId(host: string): string {
  return `${randomToken(12)}@${host}`;
}

function timersOf(t: SipTimers | undefined): { t1: number; t2: number; timerF: number } {
  const pos = (v: number | undefined, d: number): number => (v !== undefined && Number.isFinite(v) && v > 0 ? v : d);
  const t1 = pos(t?.t1, 500);
  const t2 = Math.max(t1, pos(t?.t2, 4000));
  return { t1, t2, timerF: pos(t?.timerF, 64 * t1) };
}

/** Runs one non-INVITE client transaction: sends, retransmits (Timer E), gives up (Timer F), matches responses. */
export function startClientTransaction(opts: ClientTransactionOptions): ClientTransaction {
  const { t1, t2, timerF } = timersOf(opts.timers);
  const method = opts.method.toUpperCase();
  const started = performance.now();
  let state: 'trying' | 'proceeding' | 'completed' = 'trying';
  let attempts = 0;
  let interval = t1;
  let timerE: NodeJS.Timeout | null = null;
  let timerFh: NodeJS.Timeout | null = null;
  let finish!: (r: TransactionResult) => void;
  const done = new Promise<TransactionResult>((r) => (finish = r));

  const elapsed = (): number => Math.round(performance.now() - started);
  const complete = (r: Omit<TransactionResult, 'attempts' | 'ms'>): void => {
    if (state === 'completed') return;
    state = 'completed';
    if (timerE) clearTimeout(timerE);
    if (timerFh) clearTimeout(timerFh);
    timerE = timerFh = null;
    finish({ ...r, attempts, ms: elapsed() });
  };
  const transmit = (): void => {
    attempts++;
    let p: void | Promise<void>;
    try {
      p = opts.send(opts.request);
    } catch (e) {
      complete({ ok: false, reason: `transport error: ${(e as Error).message}` });
      return;
    }
    if (p && typeof (p as Promise<void>).then === 'function') {
      (p as Promise<void>).catch((e: unknown) => complete({ ok: false, reason: `transport error: ${(e as Error).message}` }));
    }
  };
  const scheduleE = (): void => {
    if (opts.reliable || state === 'completed') return;
    timerE = setTimeout(() => {
      timerE = null;
      if (state === 'completed') return;
      transmit();
      interval = state === 'proceeding' ? t2 : Math.min(2 * interval, t2);
      scheduleE();
    }, state === 'proceeding' ? t2 : interval);
  };

  timerFh = setTimeout(() => complete({ ok: false, reason: `timeout: no final response within ${timerF} ms (Timer F)` }), timerF);
  transmit();
  scheduleE();

  return {
    branch: opts.branch,
    done,
    cancel(reason = 'cancelled') {
      complete({ ok: false, reason });
    },
    receive(msg: SipMessage): boolean {
      if (msg.kind !== 'response') return false;
      const via = getHeader(msg, 'Via');
      if (!via || headerParam(via, 'branch') !== opts.branch) return false;
      if (parseCSeq(getHeader(msg, 'CSeq'))?.method !== method) return false;
      if (state === 'completed') return true; // a retransmitted final response: absorbed
      if (msg.status < 200) {
        if (state === 'trying') {
          state = 'proceeding';
          // Timer E keeps running; from now on it fires every T2 (RFC 3261 17.1.2.2)
        }
        opts.onProvisional?.(msg);
        return true;
      }
      complete({ ok: msg.status < 300, status: msg.status, reason: msg.reason, response: msg });
      return true;
    },
  };
}

export interface NotifyTarget {
  host: string;
  port: number;
}

export interface BuildNotifyOptions {
  target: NotifyTarget;
  /** the Event header value: `check-sync`, `check-sync;reboot=true`, `resync`, `ua-profile` … */
  event: string;
  /** how the phone reaches us: Via sent-by, From and Contact host */
  fromHost: string;
  /** the local port the request is sent from (Via sent-by port) */
  localPort: number;
  /** user part of the Request-URI and To (the phone's account), if any */
  user?: string;
  contentType?: string;
  body?: string | Buffer;
  branch?: string;
  callId?: string;
  fromTag?: string;
  cseq?: number;
  /** default `sip:[user@]host:port` */
  requestUri?: string;
  /** full To header value (in a dialog: the subscriber's From, with its tag) */
  to?: string;
  /** full From header value; default `<sip:aps@fromHost>;tag=…` */
  from?: string;
  subscriptionState?: string;
  extraHeaders?: [string, string][];
  userAgent?: string;
}

function hostForUri(host: string): string {
  return net.isIPv6(host) ? `[${host}]` : host;
}

/** RFC 3261 user part: unreserved and user-unreserved characters kept, the rest %-escaped. */
function escapeUser(u: string): string {
  return Array.from(Buffer.from(u, 'utf8'))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9\-_.!~*'()&=+$,;?/]/.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
    })
    .join('');
}

const EVENT_RE = /^[A-Za-z0-9\-.!%*_+`'~]+(?:\s*;\s*[A-Za-z0-9\-.!%*_+`'~]+(?:=[^;\s]+)?)*$/;

/** One NOTIFY request (UDP Via). Throws ApsError APS_ERR_PROTOCOL on an invalid event or a value with a line break. */
export function buildNotify(opts: BuildNotifyOptions): Buffer {
  const event = opts.event.trim();
  if (!EVENT_RE.test(event)) throw new ApsError('APS_ERR_PROTOCOL', 'invalid SIP Event value', { key: 'event', expected: 'a token with optional ;params, e.g. check-sync;reboot=true' });
  const host = hostForUri(opts.target.host);
  const userPart = opts.user ? `${escapeUser(opts.user)}@` : '';
  const uri = opts.requestUri ?? `sip:${userPart}${host}:${opts.target.port}`;
  const from = hostForUri(opts.fromHost);
  const headers: [string, string][] = [
    ['Via', `SIP/2.0/UDP ${from}:${opts.localPort};branch=${opts.branch ?? newBranch()};rport`],
    ['Max-Forwards', '70'],
    ['From', opts.from ?? `<sip:aps@${from}>;tag=${opts.fromTag ?? newTag()}`],
    ['To', opts.to ?? `<sip:${userPart}${host}:${opts.target.port}>`],
    ['Call-ID', opts.callId ?? newCallId(opts.fromHost)],
    ['CSeq', `${opts.cseq ?? 1} NOTIFY`],
    ['Contact', `<sip:aps@${from}:${opts.localPort}>`],
    ['Event', event],
    ['Subscription-State', opts.subscriptionState ?? 'terminated'],
    ['User-Agent', opts.userAgent ?? 'aps'],
  ];
  const body = opts.body === undefined ? undefined : opts.body;
  if (body !== undefined && (typeof body === 'string' ? body.length : body.length) > 0) headers.push(['Content-Type', opts.contentType ?? 'text/plain']);
  headers.push(...(opts.extraHeaders ?? []));
  return buildRequest({ method: 'NOTIFY', uri, headers, body });
}

export interface SendNotifyOptions {
  target: NotifyTarget;
  event: string;
  fromHost: string;
  /** local UDP port to send from; default any */
  localPort?: number;
  /** local address to bind; default all (the kernel picks the source) */
  bindHost?: string;
  contentType?: string;
  body?: string | Buffer;
  log: Logger;
  user?: string;
  timers?: SipTimers;
  extraHeaders?: [string, string][];
}

export interface NotifyResult {
  ok: boolean;
  status?: number;
  attempts: number;
  ms: number;
  reason?: string;
}

async function resolveHost(host: string): Promise<{ address: string; family: 4 | 6 }> {
  const fam = net.isIP(host);
  if (fam) return { address: host, family: fam as 4 | 6 };
  const r = await dns.promises.lookup(host);
  return { address: r.address, family: r.family === 6 ? 6 : 4 };
}

/** Sends a NOTIFY to the phone and waits for its final response (or Timer F). Never throws; logs the outcome. */
export async function sendNotify(opts: SendNotifyOptions): Promise<NotifyResult> {
  const started = performance.now();
  const log = opts.log;
  const fields = { ip: opts.target.host, port: opts.target.port, event: opts.event };
  const failed = (reason: string, attempts = 0): NotifyResult => {
    const r = { ok: false, attempts, ms: Math.round(performance.now() - started), reason };
    log.warn('notify failed', { ...fields, attempts, ms: r.ms, reason });
    return r;
  };
  if (!Number.isInteger(opts.target.port) || opts.target.port < 1 || opts.target.port > 65535) return failed('invalid target port');
  let addr: { address: string; family: 4 | 6 };
  try {
    addr = await resolveHost(opts.target.host);
  } catch (e) {
    return failed(`cannot resolve ${opts.target.host}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const sock = dgram.createSocket(addr.family === 6 ? 'udp6' : 'udp4');
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    try {
      sock.close();
    } catch {
      /* already closed */
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ port: opts.localPort ?? 0, address: opts.bindHost, exclusive: true }, () => {
        sock.removeListener('error', reject);
        resolve();
      });
    });
  } catch (e) {
    close();
    return failed(`cannot bind UDP port ${opts.localPort ?? 0}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const localPort = sock.address().port;
  const branch = newBranch();
  let request: Buffer;
  try {
    request = buildNotify({
      target: opts.target,
      event: opts.event,
      fromHost: opts.fromHost,
      localPort,
      user: opts.user,
      contentType: opts.contentType,
      body: opts.body,
      branch,
      extraHeaders: opts.extraHeaders,
    });
  } catch (e) {
    close();
    return failed(e instanceof ApsError ? e.message : String(e));
  }
  const tx = startClientTransaction({
    request,
    branch,
    method: 'NOTIFY',
    timers: opts.timers,
    send: (buf) =>
      new Promise<void>((resolve, reject) => {
        if (closed) return resolve();
        sock.send(buf, opts.target.port, addr.address, (err) => (err ? reject(err) : resolve()));
      }),
    onProvisional: (r) => log.debug('notify provisional response', { ...fields, status: r.status }),
  });
  sock.on('error', (e) => tx.cancel(`socket error: ${e.message}`));
  sock.on('message', (buf) => {
    const p = parseSip(buf);
    if (!p.ok) {
      log.debug('notify: unreadable datagram ignored', { ...fields, reason: p.reason });
      return;
    }
    tx.receive(p.msg);
  });
  const r = await tx.done;
  close();
  const out: NotifyResult = { ok: r.ok, attempts: r.attempts, ms: Math.round(performance.now() - started) };
  if (r.status !== undefined) out.status = r.status;
  if (r.reason !== undefined) out.reason = r.reason;
  if (r.ok) log.info('notify answered', { ...fields, status: r.status, attempts: r.attempts, ms: out.ms });
  else log.warn('notify failed', { ...fields, status: r.status, attempts: r.attempts, ms: out.ms, reason: r.reason });
  return out;
}
