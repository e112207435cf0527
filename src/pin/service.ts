/**
 * The PIN registration part of apsd, three thin things around the workflow:
 * - the FastAGI server on [pin] agi_listen: `AGI(agi://HOST:4573/register,${PIN},${EXTEN_WANTED}[,MAC])`
 *   answers by setting APS_RESULT. The device is the explicit MAC argument (or ?mac= in the
 *   URL), else the unprov account the call comes from: the endpoint of agi_channel
 *   (PJSIP/<account>-<id>), else agi_callerid.
 * - the accounts file [pbx] accounts_file: every unprovisioned device's account, rewritten
 *   atomically (write, fsync, rename) when the set changes: checked at start, after a reload,
 *   after each registration and every 5 s (devices that discovery or apsctl created).
 * - POST /api/v1/pin-register on the HTTP listeners, with the bearer token of [api] token.
 * AGI listen addresses are read at start; a change needs a restart (like the HTTP listeners).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import type { App, Service } from '../app.js';
import { formatHostPort } from '../config/fields.js';
import { ApsError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseMac, type Mac } from '../mac.js';
import { createAgiServer, type AgiServer, type AgiSession } from '../pbx/agi.js';
import { pjsipAccounts } from '../pbx/accounts.js';
import type { ApiRequestInfo } from '../serve/http.js';
import { pinStore } from '../store/pin.js';
import { parseSipAddress, resync } from './resync.js';
import { register, type RegisterOutcome, type RegisterRequest, type WorkflowDeps } from './workflow.js';

export const PIN_API_PATH = '/api/v1/pin-register';
export const MAX_API_BODY = 4096;
const POLL_MS = 5000;

export interface PinService extends Service {
  /** where FastAGI listens (port 0 resolved) */
  agiAddresses(): { host: string; port: number }[];
  /** checks the accounts file now; true when it was rewritten */
  syncAccounts(force?: boolean): boolean;
  /** the workflow as the adapters call it (resync and accounts file included) */
  register(req: RegisterRequest): Promise<RegisterOutcome>;
}

/**
 * null when there is nothing to do: no PIN configured (FastAGI and the API would refuse every
 * registration, so they stay off) and no accounts file.
 */
export function createPinService(app: App): PinService | null {
  const s0 = app.config.settings;
  if (!hasPin(s0) && !s0.pbx.accountsFile) return null;
  return new PinServiceImpl(app);
}

function hasPin(s: App['config']['settings']): boolean {
  return !!(s.provisioning.pinHash || s.provisioning.pin);
}

class PinServiceImpl implements PinService {
  readonly name = 'pin';
  private agi: AgiServer[] = [];
  private readonly accounts: AccountsFile;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private readonly agiListen: string;
  private readonly deps: WorkflowDeps;

  constructor(private readonly app: App) {
    const log = app.log;
    this.accounts = new AccountsFile(app, log);
    this.agiListen = hasPin(app.config.settings) ? app.config.settings.pinSettings.agiListen.map(formatHostPort).join(',') : '';
    this.deps = {
      store: app.store,
      config: () => app.config,
      log,
      resync: (mac, o) => resync({ store: app.store, registry: app.registry, config: () => app.config, log }, mac, o),
      onRegistered: () => this.syncAccounts(),
    };
    const prev = app.api;
    const api = pinApi({ settings: () => app.config.settings, log, register: (r) => this.register(r), refused: (ip, reason) => app.guard.note(ip, 'auth-failed', { proto: 'api', reason }) });
    app.api = (req, res, info) => {
      if (api(req, res, info)) return;
      if (prev) prev(req, res, info);
      else notFound(res, req);
    };
  }

  register(req: RegisterRequest): Promise<RegisterOutcome> {
    return register(this.deps, req);
  }

  async start(): Promise<void> {
    const s = this.app.config.settings;
    const log = this.app.log;
    try {
      for (const listen of hasPin(s) ? s.pinSettings.agiListen : []) {
        const srv = createAgiServer({ listen, log, handle: (sess) => this.onAgi(sess) });
        await srv.start();
        this.agi.push(srv);
        if (!isLoopback(listen.host)) log.warn('FastAGI listens beyond loopback: whoever reaches it may try PINs; let only the PBX reach it', { listen: formatHostPort(listen) });
      }
    } catch (e) {
      await Promise.all(this.agi.map((a) => a.close({ drainMs: 0 })));
      this.agi = [];
      throw e;
    }
    this.syncAccounts(true);
    this.timer = setInterval(() => this.syncAccounts(), POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.all(this.agi.map((a) => a.close({ drainMs: 2000 })));
    this.agi = [];
  }

  reload(): void {
    const s = this.app.config.settings;
    const now = hasPin(s) ? s.pinSettings.agiListen.map(formatHostPort).join(',') : '';
    if (now !== this.agiListen) this.app.log.warn('[pin] agi_listen takes effect at the next restart', { running: this.agiListen || '(off)', configured: now || '(off)' });
    this.syncAccounts(true);
  }

  describe(): Record<string, string> {
    const s = this.app.config.settings;
    return {
      agi: this.agiAddresses().map(formatHostPort).join(',') || (hasPin(s) ? 'off' : 'off(no PIN)'),
      pbx_accounts: s.pbx.accountsFile || 'off',
      pin_api: s.api.token && hasPin(s) ? 'on' : 'off',
    };
  }

  agiAddresses(): { host: string; port: number }[] {
    return this.agi.flatMap((a) => a.addresses());
  }

  syncAccounts(force = false): boolean {
    try {
      const wrote = this.accounts.check(force);
      this.failing = false;
      return wrote;
    } catch (e) {
      // retried at every poll; said once until it works again
      if (!this.failing) this.app.log.error('cannot write the PBX accounts file', { file: this.app.config.settings.pbx.accountsFile, err: e instanceof ApsError ? e.describe() : (e as Error).message });
      this.failing = true;
      return false;
    }
  }

  private async onAgi(sess: AgiSession): Promise<void> {
    const log = this.app.log;
    if (sess.script !== 'register') {
      log.warn('agi: unknown script', { session: sess.id, script: sess.script.slice(0, 64) });
      await sess.verbose(`aps: no FastAGI script "${sess.script.slice(0, 64)}"; the script is register`).catch(() => undefined);
      return;
    }
    const [pin = '', extension = '', macArg = ''] = sess.args;
    const macText = macArg || sess.params.mac || '';
    const mac = macText ? parseMac(macText) : null;
    const channel = sess.env.agi_channel ?? '';
    const accounts = macText ? [] : [endpointOf(channel), sess.env.agi_callerid].filter((x): x is string => !!x && x !== 'unknown');
    let contact: { host: string; port: number } | undefined;
    if (/^PJSIP\//i.test(channel) && !sess.hungUp) {
      contact = parseSipAddress(await sess.getVariable('CHANNEL(pjsip,remote_addr)').catch(() => undefined)) ?? undefined;
    }
    const out = await this.register({ mac: mac ?? undefined, account: accounts, pin, extension, via: 'agi', ip: sess.remote.address, contact });
    try {
      await sess.setVariable('APS_RESULT', out.result);
      await sess.verbose(`aps: PIN registration ${out.result}${out.result === 'OK' ? `: extension ${out.extension} of ${out.tenant}` : ''}`, 3);
    } catch (e) {
      log.debug('agi: the caller left before the result', { session: sess.id, result: out.result, err: (e as Error).message });
    }
  }
}

/** `PJSIP/unprov-805ec0123456-0000002a` → `unprov-805ec0123456` (the channel name is <tech>/<endpoint>-<sequence>). */
export function endpointOf(channel: string): string | undefined {
  const m = /^[A-Za-z0-9]+\/(.+)-[0-9a-fA-F]{8}$/.exec(channel);
  return m?.[1];
}

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.') || host === 'localhost';
}

// ---------------------------------------------------------------------- accounts file

class AccountsFile {
  private written: string | null = null;
  private signature = '';

  constructor(
    private readonly app: App,
    private readonly log: Logger,
  ) {}

  check(force: boolean): boolean {
    const s = this.app.config.settings;
    const file = s.pbx.accountsFile;
    if (!file) return false;
    const pins = pinStore(this.app.store);
    const key = () => [pins.signature(), s.provisioning.unprovPrefix, s.pbx.unprovContext, s.provisioning.sipServer, file].join('|');
    if (!force && key() === this.signature) return false;
    pins.ensureUnprovAccounts(s.provisioning.unprovPrefix);
    const signature = key();
    const rows = pins.unprovAccounts();
    const text = pjsipAccounts(rows, { context: s.pbx.unprovContext, sipServer: s.provisioning.sipServer });
    if (this.written === null || force) {
      let current: string | null = null;
      try {
        current = fs.readFileSync(file, 'utf8');
      } catch {
        current = null;
      }
      this.written = current;
    }
    if (text === this.written) {
      this.signature = signature;
      return false;
    }
    writeAtomic(file, text);
    this.written = text;
    this.signature = signature;
    this.log.info('pbx accounts file written', { file, accounts: rows.length });
    return true;
  }
}

/** Replaces `file` with `text` so that a reader sees the old file or the new one, never a part: write a temporary file beside it, fsync, rename. Keeps the old file's mode and owner where allowed. */
export function writeAtomic(file: string, text: string): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  let old: fs.Stats | null = null;
  try {
    old = fs.statSync(file);
  } catch {
    old = null;
  }
  try {
    const fd = fs.openSync(tmp, 'w', old ? old.mode & 0o777 : 0o640);
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (old) {
      fs.chmodSync(tmp, old.mode & 0o777);
      try {
        fs.chownSync(tmp, old.uid, old.gid);
      } catch {
        // not allowed for this user: the new file gets apsd's owner (documented: give the directory the PBX's group, setgid)
      }
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // nothing was created
    }
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ApsError('APS_ERR_CONFIG', `cannot write ${file}: ${code}`, { file, key: '[pbx] accounts_file', expected: 'a path in a directory apsd may write' });
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
  } catch {
    // a directory fsync is best effort (not every file system allows it)
  }
}

// ---------------------------------------------------------------------- HTTP API

export interface PinApiDeps {
  settings: () => App['config']['settings'];
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

function notFound(res: http.ServerResponse, req: http.IncomingMessage): void {
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
export function pinApi(deps: PinApiDeps): (req: http.IncomingMessage, res: http.ServerResponse, info: ApiRequestInfo) => boolean {
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
          log.error('api pin-register failed', { req: info.reqId, ip: info.ip, err: e instanceof ApsError ? e.describe() : (e as Error).message });
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
