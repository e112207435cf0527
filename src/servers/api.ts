/**
 * The HTTP API on the HTTP(S) listeners: POST /api/v1/pin-register with the bearer token of
 * [api] token, a thin adapter over the PIN workflow.
 */
import crypto from 'node:crypto';
import type http from 'node:http';
import type { Settings } from '../config/index.js';
import { ApsError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseMac, type Mac } from '../mac.js';
import { hasPin } from '../pin/workflow.js';
import type { RegisterOutcome, RegisterRequest } from '../pin/workflow.js';
import type { ApiRequestInfo } from './http.js';

export const PIN_API_PATH = '/api/v1/pin-register';
export const MAX_API_BODY = 4096;

/** A handler of /api/…: true when the path was its own (answered), false to let the next one try. */
export type ApiHandler = (req: http.IncomingMessage, res: http.ServerResponse, info: ApiRequestInfo) => boolean;

export interface PinApiDeps {
  settings: () => Settings;
  log: Logger;
  register: (req: RegisterRequest) => Promise<RegisterOutcome>;
  /** a wrong or missing token: logs it and counts it against the source address (Guard.note) */
  refused?: (ip: string, reason: string) => void;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

export function notFound(res: http.ServerResponse, req: http.IncomingMessage): void {
  res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end('no API here\n');
  req.resume();
}

function tokenMatches(given: string, want: string): boolean {
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(want).digest();
  return crypto.timingSafeEqual(a, b);
}

/**
 * POST /api/v1/pin-register, JSON {mac | account, pin, extension} → 200 {result} for every
 * workflow result. 404 while [api] token (or the PIN) is empty, 401 without the right bearer token, 405
 * for another method, 413 for a body over 4 KB, 400 for anything that is not such a JSON
 * object. Returns false for other paths (not this handler's).
 */
export function pinApi(deps: PinApiDeps): ApiHandler {
  return (req, res, info) => {
    const url = req.url ?? '';
    const p = url.split('?')[0];
    if (p !== PIN_API_PATH) return false;
    const log = deps.log;
    const token = deps.settings().api.token;
    if (!token || !hasPin(deps.settings())) {
      notFound(res, req);
      return true;
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m || !tokenMatches(m[1], token)) {
      if (deps.refused) deps.refused(info.ip, m ? 'wrong-token' : 'no-token');
      else log.security('auth-failed', { req: info.reqId, ip: info.ip, path: p, reason: m ? 'wrong-token' : 'no-token' });
      sendJson(res, 401, { error: 'a bearer token is needed ([api] token)' }, { 'WWW-Authenticate': 'Bearer realm="aps"' });
      req.resume();
      return true;
    }
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: 'POST only' }, { Allow: 'POST' });
      req.resume();
      return true;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_API_BODY) {
      sendJson(res, 413, { error: `the body is limited to ${MAX_API_BODY} bytes` }, { Connection: 'close' });
      req.resume();
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > MAX_API_BODY) {
        over = true;
        sendJson(res, 413, { error: `the body is limited to ${MAX_API_BODY} bytes` }, { Connection: 'close' });
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (over) return;
      const parsed = parseRequestBody(Buffer.concat(chunks).toString('utf8'));
      if ('error' in parsed) {
        sendJson(res, 400, { error: parsed.error });
        return;
      }
      deps
        .register({ ...parsed.req, via: 'http', ip: info.ip })
        .then((out) => {
          sendJson(res, 200, out.result === 'OK' ? { result: out.result, mac: out.mac, extension: out.extension, tenant: out.tenant } : { result: out.result });
          log.info('api pin-register', { req: info.reqId, ip: info.ip, result: out.result });
        })
        .catch((e: unknown) => {
          log.error('api pin-register failed', { req: info.reqId, ip: info.ip, err: describeError(e) });
          if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
        });
    });
    return true;
  };
}

type BodyRequest = Pick<RegisterRequest, 'mac' | 'account' | 'pin' | 'extension'>;

function parseRequestBody(text: string): { req: BodyRequest } | { error: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { error: 'the body is not JSON' };
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { error: 'expected a JSON object {mac|account, pin, extension}' };
  const o = v as Record<string, unknown>;
  const str = (x: unknown): string | undefined => (typeof x === 'string' ? x : typeof x === 'number' && Number.isInteger(x) && x >= 0 ? String(x) : undefined);
  const pin = str(o.pin);
  const extension = str(o.extension);
  if (pin === undefined) return { error: 'pin: expected a string of digits' };
  if (extension === undefined) return { error: 'extension: expected a string' };
  if ((o.mac === undefined) === (o.account === undefined)) return { error: 'expected exactly one of mac and account' };
  if (o.mac !== undefined) {
    const mac = typeof o.mac === 'string' ? parseMac(o.mac) : null;
    if (!mac) return { error: 'mac: expected a MAC address, e.g. 80:5e:c0:12:34:56' };
    return { req: { mac: mac as Mac, pin, extension } };
  }
  if (typeof o.account !== 'string' || o.account === '') return { error: 'account: expected a string' };
  return { req: { account: o.account, pin, extension } };
}
