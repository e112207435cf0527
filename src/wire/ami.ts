/**
 * Asterisk Manager Interface client, for one action at a time (resync through the PBX:
 * `Action: PJSIPNotify`, `Endpoint: 101`, `Variable: Event=check-sync`).
 *
 * The conversation, as Asterisk's manager.c speaks it (lines end in CRLF, a message ends
 * with an empty line):
 *
 *   ← Asterisk Call Manager/9.0.0
 *   → Action: Login / Username / Secret / Events: off / ActionID
 *   ← Response: Success / Message: Authentication accepted   (or Response: Error → refused)
 *   ← Event: FullyBooted …                                    (events are skipped)
 *   → Action: PJSIPNotify / Endpoint / Variable … / ActionID
 *   ← Response: Success / Message: NOTIFY sent                (or Response: Error)
 *   → Action: Logoff
 *   ← Response: Goodbye, then the connection closes
 *
 * Responses are matched by ActionID. The whole exchange has one deadline. Every failure is
 * an ApsError APS_ERR_PROTOCOL; the secret appears in no message and no log line.
 */
import net from 'node:net';
import { ApsError } from '../errors.js';
import type { Logger } from '../log.js';

export interface AmiOptions {
  host: string;
  port: number;
  user: string;
  secret: string;
  /** deadline for the whole exchange, connect to response */
  timeoutMs: number;
  log?: Logger;
}

export type AmiAction = Record<string, string | string[]>;
export type AmiMessage = Record<string, string>;

const MAX_LINE = 8192;
const MAX_MESSAGE_LINES = 512;
const MAX_MESSAGES = 10_000; // events skipped while waiting, before giving up

let seq = 0;

function amiError(message: string, context: Record<string, unknown> = {}): ApsError {
  return new ApsError('APS_ERR_PROTOCOL', message, context);
}

/** The value of a key, case-insensitively. */
export function amiGet(msg: AmiMessage, key: string): string | undefined {
  if (key in msg) return msg[key];
  const k = key.toLowerCase();
  for (const [kk, v] of Object.entries(msg)) if (kk.toLowerCase() === k) return v;
  return undefined;
}

/** One action as wire text: `Key: value` lines (a list gives the key once per value), then an empty line. */
export function encodeAmiAction(action: AmiAction): string {
  let out = '';
  for (const [k, v] of Object.entries(action)) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(k)) throw amiError(`invalid AMI header name ${JSON.stringify(k.slice(0, 40))}`, { key: k.slice(0, 40) });
    for (const one of Array.isArray(v) ? v : [v]) {
      if (/[\r\n]/.test(one)) throw amiError(`AMI header ${k} has a line break`, { key: k });
      out += `${k}: ${one}\r\n`;
    }
  }
  return out + '\r\n';
}

class Conn {
  private buf = '';
  private banner: string | null = null;
  private lines: string[] = [];
  private queue: AmiMessage[] = [];
  private waiter: ((m: AmiMessage | Error) => void) | null = null;
  private bannerWaiter: ((b: string | Error) => void) | null = null;
  private failure: Error | null = null;
  private output: string[] = [];

  constructor(
    readonly sock: net.Socket,
    private readonly where: string,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e: NodeJS.ErrnoException) => this.fail(amiError(`AMI ${where}: connection error: ${e.code ?? e.message}`, { errno: e.code })));
    sock.on('close', () => this.fail(amiError(`AMI ${where}: connection closed by the other side`)));
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      let line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.onLine(line);
      if (this.failure) return;
    }
    if (this.buf.length > MAX_LINE) this.fail(amiError(`AMI ${this.where}: line too long`));
  }

  private onLine(line: string): void {
    if (line.length > MAX_LINE) return this.fail(amiError(`AMI ${this.where}: line too long`));
    if (this.banner === null) {
      if (!/^Asterisk Call Manager\/\S+/.test(line)) return this.fail(amiError(`AMI ${this.where}: not an Asterisk manager (unexpected greeting)`, { expected: 'Asterisk Call Manager/x.y' }));
      this.banner = line;
      this.bannerWaiter?.(line);
      this.bannerWaiter = null;
      return;
    }
    if (line === '') {
      if (!this.lines.length) return;
      const msg: AmiMessage = {};
      for (const l of this.lines) {
        const c = l.indexOf(':');
        if (c <= 0) {
          this.output.push(l); // old-style Command output (Response: Follows)
          continue;
        }
        const k = l.slice(0, c).trim();
        const v = l.slice(c + 1).trim();
        msg[k] = k in msg ? `${msg[k]}\n${v}` : v;
      }
      if (this.output.length) msg.Output = [msg.Output, ...this.output].filter(Boolean).join('\n');
      this.lines = [];
      this.output = [];
      this.push(msg);
      return;
    }
    if (this.lines.length >= MAX_MESSAGE_LINES) return this.fail(amiError(`AMI ${this.where}: message too long`));
    this.lines.push(line);
  }

  private push(m: AmiMessage): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(m);
    } else if (this.queue.length < MAX_MESSAGES) this.queue.push(m);
    else this.fail(amiError(`AMI ${this.where}: too many messages unread`));
  }

  fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.waiter?.(e);
    this.waiter = null;
    this.bannerWaiter?.(e);
    this.bannerWaiter = null;
  }

  greeting(): Promise<string> {
    if (this.banner !== null) return Promise.resolve(this.banner);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.bannerWaiter = (b) => (b instanceof Error ? reject(b) : resolve(b))));
  }

  next(): Promise<AmiMessage> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiter = (x) => (x instanceof Error ? reject(x) : resolve(x))));
  }

  /** The Response message carrying this ActionID; events and other responses are skipped. */
  async response(actionId: string): Promise<AmiMessage> {
    for (let i = 0; i < MAX_MESSAGES; i++) {
      const m = await this.next();
      if (amiGet(m, 'Event') !== undefined) continue;
      if (amiGet(m, 'Response') === undefined) continue;
      const id = amiGet(m, 'ActionID');
      if (id === undefined || id === actionId) return m;
    }
    throw amiError(`AMI ${this.where}: no response among too many messages`);
  }

  /** The events of a list action (EventList: start … the event with EventList: Complete), by ActionID. */
  async events(actionId: string): Promise<AmiMessage[]> {
    const out: AmiMessage[] = [];
    for (let i = 0; i < MAX_MESSAGES; i++) {
      const m = await this.next();
      if (amiGet(m, 'ActionID') !== actionId || amiGet(m, 'Event') === undefined) continue;
      if ((amiGet(m, 'EventList') ?? '').toLowerCase() === 'complete') return out;
      out.push(m);
    }
    throw amiError(`AMI ${this.where}: the event list did not end`);
  }

  send(text: string): void {
    this.sock.write(text);
  }
}

/**
 * Logs in, sends one action, returns its response (Response: Success / Follows), logs off.
 * Throws ApsError APS_ERR_PROTOCOL on a refused login, a `Response: Error`, a timeout or a
 * broken connection; context.response holds the AMI Message when there is one.
 */
export async function amiAction(opts: AmiOptions, action: AmiAction): Promise<AmiMessage> {
  return (await exchange(opts, action, false)).response;
}

/** A list action (PJSIPShowEndpoint …): its response and the events it lists. Errors as amiAction. */
export async function amiList(opts: AmiOptions, action: AmiAction): Promise<{ response: AmiMessage; events: AmiMessage[] }> {
  return exchange(opts, action, true);
}

async function exchange(opts: AmiOptions, action: AmiAction, list: boolean): Promise<{ response: AmiMessage; events: AmiMessage[] }> {
  const name = (Array.isArray(action.Action) ? action.Action[0] : action.Action) ?? '';
  if (!name) throw amiError('AMI action without an Action header', { expected: "{ Action: 'PJSIPNotify', … }" });
  const tag = `aps-${process.pid}-${++seq}`;
  const actionId = (Array.isArray(action.ActionID) ? action.ActionID[0] : action.ActionID) ?? `${tag}-a`;
  const loginText = encodeAmiAction({ Action: 'Login', Username: opts.user, Secret: opts.secret, Events: 'off', ActionID: `${tag}-l` });
  const actionText = encodeAmiAction({ ...action, ActionID: actionId });
  const where = `${opts.host}:${opts.port}`;
  const log = opts.log;
  let phase = 'connecting';

  const sock = net.connect({ host: opts.host, port: opts.port });
  sock.setNoDelay(true);
  const conn = new Conn(sock, where);
  const timer = setTimeout(
    () => conn.fail(amiError(`AMI ${where}: no answer within ${opts.timeoutMs} ms while ${phase}`, { reason: 'timeout', phase })),
    Math.max(1, opts.timeoutMs),
  );
  try {
    phase = 'waiting for the greeting';
    await conn.greeting();
    phase = 'logging in';
    conn.send(loginText);
    const login = await conn.response(`${tag}-l`);
    if ((amiGet(login, 'Response') ?? '').toLowerCase() !== 'success') {
      const why = amiGet(login, 'Message') ?? 'refused';
      log?.security('ami_login_refused', { host: opts.host, port: opts.port, user: opts.user });
      throw amiError(`AMI ${where}: login as ${JSON.stringify(opts.user)} refused: ${why}`, { reason: 'login', response: why, key: '[resync] ami_user' });
    }
    phase = `waiting for the ${name} response`;
    conn.send(actionText);
    const resp = await conn.response(actionId);
    const status = (amiGet(resp, 'Response') ?? '').toLowerCase();
    if (status !== 'success' && status !== 'follows') {
      const why = amiGet(resp, 'Message') ?? amiGet(resp, 'Response') ?? 'error';
      throw amiError(`AMI ${where}: ${name} failed: ${why}`, { reason: 'action', response: why });
    }
    let events: AmiMessage[] = [];
    if (list) {
      phase = `waiting for the ${name} events`;
      events = await conn.events(actionId);
    }
    log?.debug('ami action done', { host: opts.host, action: name, response: amiGet(resp, 'Message') });
    // Logoff is a courtesy: its answer (Goodbye) or the close is waited for briefly, its failure ignored
    phase = 'logging off';
    conn.send(encodeAmiAction({ Action: 'Logoff', ActionID: `${tag}-o` }));
    const bye = conn.response(`${tag}-o`).catch(() => undefined); // Asterisk closes right after Goodbye
    await Promise.race([bye, new Promise((r) => setTimeout(r, Math.min(1000, opts.timeoutMs)).unref())]);
    return { response: resp, events };
  } finally {
    clearTimeout(timer);
    conn.fail(amiError('done')); // releases any waiter
    sock.end();
    sock.destroy();
  }
}
