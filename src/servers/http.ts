/**
 * The HTTP server: GET and HEAD of `/<alias>/<file>` and `/<file>`. A thin adapter: decode
 * the path, ask the provider, map the outcome to a status. Uploads and other methods are
 * refused (405); files with secrets need proof (401 with a digest or basic challenge).
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { parseMac, type Mac } from '../mac.js';
import { ApsError, Refusals, describeError } from '../errors.js';
import { formatHostPort, type HostPort } from '../config/fields.js';
import { requestId, type Logger } from '../log.js';
import type { Settings } from '../config/index.js';
import type { DigestAuth } from '../provisioning/digest.js';
import type { Guard } from '../provisioning/guard.js';
import type { FetchLog } from '../inventory/fetches.js';
import { normalizeIp } from '../net/address.js';
import { provide, refresh, type ProviderDeps } from '../provisioning/provider.js';
import { ConnectionGate, connectionBudget } from './limits.js';
import { sendFile } from './http-file.js';

export interface ApiRequestInfo {
  ip: string;
  reqId: string;
  proto: 'http' | 'https';
}

export interface HttpServerDeps extends ProviderDeps {
  guard: Guard;
  /** where every fetch that names a MAC is recorded (src/inventory/fetches.ts) */
  fetches?: Pick<FetchLog, 'record'>;
  auth: DigestAuth;
  settings: () => Settings;
  /** handles /api/… requests (any method); absent: 404 */
  api?: (req: http.IncomingMessage, res: http.ServerResponse, info: ApiRequestInfo) => void;
}


export interface TlsFiles {
  cert: string;
  key: string;
  clientCa: string;
}

/**
 * The MAC a client certificate names: a subject field (CN, serialNumber, OU, UID…) or a
 * subjectAltName that is a MAC address and nothing else. Only called for certificates that
 * chain to client_ca.
 */
export function macOfCertificate(cert: { subject?: Record<string, string | string[] | undefined> | object; subjectaltname?: string } | undefined): Mac | null {
  if (!cert || !cert.subject) return null;
  const values: string[] = [];
  for (const v of Object.values(cert.subject as Record<string, unknown>)) if (v !== undefined) values.push(...(Array.isArray(v) ? v.map(String) : [String(v)]));
  for (const san of (cert.subjectaltname ?? '').split(',')) values.push(san.replace(/^\s*[A-Za-z ]+:/, '').trim());
  for (const v of values) {
    const m = parseMac(String(v).replace(/^MAC[:= ]?/i, ''));
    if (m) return m;
  }
  return null;
}

/** What a connection refused for the connection limit gets: an answer, not a reset. */
const REFUSED = new WeakSet<Socket>();
const BUSY_503 = 'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

export class HttpService {
  private servers: http.Server[] = [];
  private inflight = 0;
  /** open connections, in total (from [http] max_connections or the descriptor limit) and per source */
  readonly gate: ConnectionGate;

  constructor(private readonly deps: HttpServerDeps) {
    const budget = () => {
      const h = deps.settings().http;
      return { max: connectionBudget(h.maxConnections), perSource: h.perSource };
    };
    let cached = budget();
    let at = Date.now();
    this.gate = new ConnectionGate('http', () => {
      if (Date.now() - at > 1000) {
        cached = budget();
        at = Date.now();
      }
      return cached;
    }, deps.log);
  }

  /** Counts the connection, or answers 503 and closes it when it is one too many. */
  private onConnection(sock: Socket, tls: boolean): void {
    const ip = normalizeIp(sock.remoteAddress);
    if (this.gate.admit(ip) !== 'ok') {
      REFUSED.add(sock);
      sock.on('error', () => sock.destroy());
      // plain HTTP gets a 503; a TLS client cannot read one before its handshake, so it is closed
      if (tls) sock.destroy();
      else sock.end(BUSY_503);
      setTimeout(() => sock.destroy(), 1000).unref();
      return;
    }
    sock.once('close', () => this.gate.release(ip));
  }

  async start(listen: HostPort[], tls?: TlsFiles): Promise<void> {
    const proto = tls ? 'https' : 'http';
    const opts = { keepAliveTimeout: this.deps.settings().http.idleTimeoutMs, requestTimeout: 30_000, headersTimeout: 10_000, connectionsCheckingInterval: 1000, maxHeaderSize: 16384 };
    for (const hp of listen) {
      const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res, proto);
      const srv: http.Server = tls
        ? https.createServer({
            ...opts,
            cert: fs.readFileSync(tls.cert),
            key: fs.readFileSync(tls.key),
            ...(tls.clientCa ? { ca: fs.readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: false } : {}),
          }, handler)
        : http.createServer(opts, handler);
      // counted from the TCP accept (a TLS client that never finishes its handshake holds a descriptor too)
      srv.prependListener('connection', (sock: Socket) => this.onConnection(sock, !!tls));
      srv.on('tlsClientError', (err: Error) => this.deps.log.debug('tls client error', { err: err.message }));
      srv.on('clientError', (err, sock) => {
        this.deps.log.debug('http client error', { err: (err as NodeJS.ErrnoException).code ?? err.message });
        if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        else sock.destroy();
      });
      await new Promise<void>((resolve, reject) => {
        srv.once('error', (e: NodeJS.ErrnoException) =>
          reject(new ApsError('APS_ERR_BIND', `cannot listen for ${proto.toUpperCase()} on ${formatHostPort(hp)}: ${e.code ?? e.message}`, { key: `[${proto}] listen`, expected: 'a free address and port (ports below 1024 need CAP_NET_BIND_SERVICE)' })));
        srv.listen({ host: hp.host, port: hp.port, backlog: 4096 }, () => resolve());
      });
      srv.on('error', (e) => this.deps.log.error('http server error', { err: e.message }));
      this.servers.push(srv);
    }
  }

  addresses(): HostPort[] {
    return this.servers.map((s) => {
      const a = s.address() as AddressInfo;
      return { host: a.address, port: a.port };
    });
  }

  /** Stop accepting, let requests in flight finish (up to drainMs), then close. */
  async close(drainMs = 5000): Promise<void> {
    const closing = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.servers) s.closeIdleConnections();
    const deadline = Date.now() + drainMs;
    while (this.inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.servers) s.closeAllConnections();
    await Promise.all(closing);
    this.servers = [];
  }

  private sendBanned(res: http.ServerResponse, req: http.IncomingMessage): void {
    res.writeHead(Refusals.refused.http, { 'Content-Length': 0, Connection: 'close' });
    res.end();
    req.resume();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, proto: 'http' | 'https'): void {
    if (REFUSED.has(req.socket)) return; // answered 503 at accept
    const started = process.hrtime.bigint();
    const reqId = requestId('h');
    const ip = normalizeIp(req.socket.remoteAddress);
    refresh(this.deps);
    if (this.deps.guard.banned(ip)) {
      // fast path before any parsing (the decision says the same): a banned address learns nothing, not even why
      this.sendBanned(res, req);
      return;
    }
    this.inflight++;
    res.on('close', () => {
      this.inflight--;
    });
    res.setHeader('Server', 'aps');
    try {
      this.route(req, res, reqId, ip, started, proto);
    } catch (e) {
      this.deps.log.error('http handler failed', { req: reqId, ip, err: describeError(e) });
      if (!res.headersSent) this.send(res, 500, 'internal error\n');
      else res.destroy();
    }
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse, reqId: string, ip: string, started: bigint, proto: 'http' | 'https'): void {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const log = this.deps.log;
    if (url.startsWith('/api/')) {
      if (this.deps.api) this.deps.api(req, res, { ip, reqId, proto });
      else {
        this.send(res, 404, 'no API here\n', method);
        req.resume();
      }
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      this.send(res, Refusals.method.http, `${Refusals.method.message}\n`);
      log.info('http refused', { req: reqId, ip, method, reason: 'method' });
      req.resume();
      return;
    }
    const name = this.fileName(url);
    if (!name.ok) {
      this.send(res, name.status, name.reason + '\n', method);
      log.info('http refused', { req: reqId, ip, path: url.slice(0, 200), status: name.status, reason: name.reason });
      return;
    }
    let certMac: Mac | null = null;
    if (proto === 'https') {
      const sock = req.socket as TLSSocket;
      if (sock.authorized) certMac = macOfCertificate(sock.getPeerCertificate());
    }
    const ua = req.headers['user-agent'];
    const out = provide(this.deps, name.name, { proto, ip, userAgent: ua }, (mac) =>
      this.deps.guard.http({ proto, method, url, authorization: req.headers.authorization, ip, certMac }, mac));
    const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
    if (out.named && this.deps.fetches) {
      const fetches = this.deps.fetches;
      const named = out.named;
      const proof = out.kind === 'rendered' && out.proof?.ok ? out.proof.by : undefined;
      res.once('finish', () => fetches.record({ at: Date.now(), ip, proto, file: name.name, answer: String(res.statusCode), proof, userAgent: ua, mac: named.mac, model: named.model }));
    }
    switch (out.kind) {
      case 'banned':
        this.sendBanned(res, req);
        return;
      case 'refused':
        this.send(res, Refusals.refused.http, `refused: ${out.reason}\n`, method);
        log.info('http refused', { req: reqId, ip, file: name.name.slice(0, 200), status: 403, reason: out.reason });
        return;
      case 'notfound':
        this.send(res, Refusals.notfound.http, `${Refusals.notfound.message}\n`, method);
        if (log.enabled('debug')) log.debug('http not found', { req: reqId, ip, file: name.name.slice(0, 200), mac: out.mac, reason: out.reason });
        return;
      case 'noproof': {
        const s = this.deps.settings().security;
        if (out.proof.challenge) {
          const ch = this.deps.auth.challenge(out.proof.stale);
          res.setHeader('WWW-Authenticate', s.auth === 'basic' && proto === 'https' ? [...ch, this.deps.auth.basicChallenge()] : ch);
          this.send(res, Refusals.challenge.http, `${Refusals.challenge.message}\n`, method);
        } else {
          this.send(res, Refusals.noproof.http, `${Refusals.noproof.message}\n`, method);
        }
        log.security('secret-refused', { proto: 'http', ip, mac: out.mac, file: out.file, reason: out.proof.reason, req: reqId });
        return;
      }
      case 'error':
        this.send(res, Refusals.error.http, `${Refusals.error.message}\n`, method);
        return;
      case 'firmware': {
        // streamed from disk, with Range and conditional GETs (src/servers/http-file.ts)
        const a = sendFile(req, res, out.path, method);
        if (!a.stream) return;
        a.stream.on('error', (e) => {
          log.error('firmware read failed', { req: reqId, file: out.file, err: e.message });
          res.destroy();
        });
        a.stream.pipe(res);
        res.on('finish', () => log.info('http firmware sent', { req: reqId, ip, file: out.file, status: a.status, bytes: a.bytes, ms: ms().toFixed(1) }));
        return;
      }
      case 'rendered': {
        const r = out.rendered;
        if (out.secrets) log.security('secret-served', { proto: 'http', ip, mac: out.mac, file: out.file, proof: out.proof?.ok ? out.proof.by : undefined, req: reqId });
        if (req.headers['if-none-match'] === r.etag) {
          res.writeHead(304, { ETag: r.etag, 'Cache-Control': 'no-cache' });
          res.end();
          return;
        }
        res.writeHead(200, { 'Content-Type': r.contentType, 'Content-Length': r.body.length, ETag: r.etag, 'Cache-Control': 'no-cache' });
        res.end(method === 'HEAD' ? undefined : r.body);
        if (log.enabled('debug')) log.debug('http served', { req: reqId, ip, file: out.file, mac: out.mac, bytes: r.body.length, ms: ms().toFixed(2) });
        return;
      }
    }
  }

  /** `/<alias>/<file>` or `/<file>`, query dropped, percent-decoded once, then vetted by the resolver. */
  private fileName(url: string): { ok: true; name: string } | { ok: false; status: number; reason: string } {
    if (!url.startsWith('/')) return { ok: false, status: 400, reason: 'bad request target' };
    const q = url.indexOf('?');
    let p = q >= 0 ? url.slice(0, q) : url;
    if (p.length > 1024) return { ok: false, status: 414, reason: 'path too long' };
    try {
      p = decodeURIComponent(p);
    } catch {
      return { ok: false, status: 400, reason: 'malformed percent-encoding' };
    }
    const alias = this.deps.settings().http.alias;
    let rest = p.slice(1);
    if (alias && rest.startsWith(alias + '/')) rest = rest.slice(alias.length + 1);
    if (rest === '' || rest.endsWith('/')) return { ok: false, status: 404, reason: 'no file named' };
    return { ok: true, name: rest };
  }

  private send(res: http.ServerResponse, status: number, body: string, method = 'GET'): void {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(method === 'HEAD' ? undefined : body);
  }
}
