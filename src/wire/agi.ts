/**
 * FastAGI server: the dialplan's `AGI(agi://HOST:4573/register,${PIN},${EXTEN_WANTED})`
 * connects here. The protocol as Asterisk's res_agi speaks it:
 *
 * 1. Asterisk sends `agi_network: yes`, `agi_network_script: register` (the URL path after
 *    the host), then the environment (`agi_request`, `agi_channel`, … `agi_threadid`,
 *    `agi_arg_1`…) as `key: value` lines, ended by an empty line.
 * 2. The script writes one command per line; Asterisk answers `200 result=N [(data)] [k=v]`,
 *    `510 Invalid or unknown command`, `511 Command Not Permitted on a dead channel`,
 *    `520-…` usage lines ending with `520 End of proper usage.`, or `520 …` on one line.
 *    Arguments are split on blanks; `"` groups, `\` escapes the next character.
 * 3. When the caller hangs up (and AGISIGHUP is not `no`), Asterisk writes `HANGUP` on a line
 *    of its own, between answers, and keeps reading commands (those allowed on a dead
 *    channel still get answers). The script ends the session by closing the socket.
 *
 * Input is bounded (line length, environment size, idle time while waiting for Asterisk);
 * anything malformed ends that session, never the server. Arguments (they carry the PIN)
 * are never logged.
 */
import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { ApsError, describeError } from '../errors.js';
import type { Logger } from '../log.js';

export interface AgiResponse {
  /** 200, 510, 511, 520, … */
  code: number;
  /** the value after `result=` ('' when the answer has none) */
  result: string;
  /** the text in parentheses after the result; for other codes the message (520: the usage text) */
  data: string;
  /** what follows the result and data, e.g. `endpos=12345` */
  extra: string;
}

export interface AgiSession {
  readonly id: string;
  /** the environment block: `agi_*` keys as Asterisk sent them */
  readonly env: Readonly<Record<string, string>>;
  /** `register` for agi://host:4573/register (the query part removed) */
  readonly script: string;
  /** the query of the script path: agi://host/register?mac=… → { mac: … } */
  readonly params: Readonly<Record<string, string>>;
  /** agi_arg_1 … agi_arg_N */
  readonly args: readonly string[];
  readonly remote: { address: string; port: number };
  /** Asterisk said HANGUP (or answered 511): no more commands are sent */
  readonly hungUp: boolean;
  readonly closed: boolean;
  /** aborted on hangup or when the connection ends */
  readonly signal: AbortSignal;
  /** Sends one command line and waits for its answer. Rejects (ApsError APS_ERR_PROTOCOL, context.reason 'hangup' | 'closed' | 'timeout' | 'usage') when it cannot be answered. */
  command(cmd: string): Promise<AgiResponse>;
  /** SET VARIABLE NAME "value" */
  setVariable(name: string, value: string): Promise<AgiResponse>;
  /** GET VARIABLE NAME: the value, or undefined when unset */
  getVariable(name: string): Promise<string | undefined>;
  /** VERBOSE "message" level — shows in the Asterisk console */
  verbose(message: string, level?: number): Promise<AgiResponse>;
}

export interface AgiServerOptions {
  listen: { host: string; port: number };
  log: Logger;
  handle: (session: AgiSession) => Promise<void>;
  /** waiting for Asterisk (environment or an answer) longer than this ends the session; default 30 s */
  idleTimeoutMs?: number;
  /** a whole session longer than this is cut; default 120 s */
  sessionTimeoutMs?: number;
  /** after HANGUP, how long a command already sent may still wait for its answer; default 2 s */
  hangupGraceMs?: number;
  /** default 8192 bytes */
  maxLineBytes?: number;
  /** default 256 */
  maxEnvLines?: number;
  /** concurrent sessions; more connections are closed at once; default 64 */
  maxSessions?: number;
  /** concurrent sessions from one address; default 16 */
  perSource?: number;
  /** the AGI environment must be complete this long after the connection (Asterisk sends it at once); default 5 s */
  envTimeoutMs?: number;
}

export interface AgiServer {
  start(): Promise<void>;
  addresses(): { host: string; port: number }[];
  /** Stops accepting, lets sessions finish for up to drainMs (default 2 s), then cuts them. */
  close(opts?: { drainMs?: number }): Promise<void>;
  stats(): { active: number; sessions: number; failed: number; malformed: number };
}

/** Asterisk reads a command into a 2048-byte buffer; longer lines would be cut in two. */
const MAX_COMMAND_BYTES = 2000;
const MAX_USAGE_LINES = 256;

/** An AGI argument in double quotes, `"` and `\` escaped (res_agi parse_args). Line breaks become blanks: they would end the command. */
export function quoteAgiArg(s: string): string {
  return '"' + s.replace(/[\r\n]+/g, ' ').replace(/[\\"]/g, '\\$&') + '"';
}

/** The words Asterisk's parse_args makes of a command line (for tests and for the fake Asterisk). */
export function parseAgiArgs(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  let escaped = false;
  for (const ch of line) {
    if (ch === '"' && !escaped) {
      quoted = !quoted;
      if (quoted && !inWord) inWord = true;
      continue;
    }
    if ((ch === ' ' || ch === '\t') && !quoted && !escaped) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      continue;
    }
    if (ch === '\\' && !escaped) {
      escaped = true;
      continue;
    }
    inWord = true;
    cur += ch;
    escaped = false;
  }
  if (inWord) out.push(cur);
  return out;
}

/** One answer line (`200 result=1 (data) endpos=0`, `510 …`); multi-line 520 answers are joined by the session. */
export function parseAgiResponse(line: string): AgiResponse | undefined {
  const m = /^(\d{3}) (.*)$/s.exec(line);
  if (!m) return undefined;
  const code = Number(m[1]);
  const body = m[2];
  const r = /^result=(\S*)(?: \((.*)\))?(?: (.*))?$/s.exec(body);
  if (r) return { code, result: r[1], data: r[2] ?? '', extra: (r[3] ?? '').trim() };
  return { code, result: '', data: body.trim(), extra: '' };
}

function protocolError(message: string, reason: string): ApsError {
  return new ApsError('APS_ERR_PROTOCOL', message, { reason });
}

function errMessage(e: unknown): string {
  return describeError(e);
}

interface Pending {
  resolve: (r: AgiResponse) => void;
  reject: (e: Error) => void;
  usage: string[] | null;
}

let sessionSeq = 0;

class Session implements AgiSession {
  readonly id: string;
  env: Record<string, string> = {};
  script = '';
  params: Record<string, string> = {};
  args: string[] = [];
  readonly remote: { address: string; port: number };
  hungUp = false;
  closed = false;
  private readonly ac = new AbortController();
  readonly signal = this.ac.signal;
  private envDone = false;
  private envLines = 0;
  private partial = '';
  private readonly decoder = new StringDecoder('utf8');
  private pending: Pending | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  private envReady!: (ok: boolean) => void;
  readonly ready = new Promise<boolean>((r) => (this.envReady = r));

  constructor(
    private readonly sock: net.Socket,
    private readonly o: Required<Omit<AgiServerOptions, 'listen' | 'handle'>>,
    private readonly log: Logger,
    private readonly onMalformed: () => void,
  ) {
    this.id = `agi${(++sessionSeq).toString(36)}`;
    this.remote = { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 };
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('end', () => this.end('closed'));
    sock.on('close', () => this.end('closed'));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      this.log.debug('agi socket error', { err: e.code ?? e.message });
      this.end('closed');
    });
    this.armIdle();
  }

  // ------------------------------------------------------------------ input

  private onData(d: Buffer): void {
    if (this.closed) return;
    this.partial += this.decoder.write(d);
    let nl: number;
    while (!this.closed && (nl = this.partial.indexOf('\n')) >= 0) {
      let line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (Buffer.byteLength(line) > this.o.maxLineBytes) return this.malformed('line too long');
      this.onLine(line);
    }
    if (Buffer.byteLength(this.partial) > this.o.maxLineBytes) this.malformed('line too long');
  }

  private onLine(line: string): void {
    if (!this.envDone) return this.onEnvLine(line);
    if (this.pending?.usage) {
      // inside `520-…`: usage text until `520 End of proper usage.` (Asterisk sends the usage
      // with "%s", so that line can be glued to the last line of the text)
      const p = this.pending;
      const usage = p.usage!;
      const endAt = line.indexOf('520 End of proper usage.');
      if (line.startsWith('520 ') || endAt >= 0) {
        if (endAt > 0) usage.push(line.slice(0, endAt));
        this.settle({ code: 520, result: '', data: usage.join('\n').trim(), extra: '' });
      } else if (usage.length >= MAX_USAGE_LINES) {
        this.malformed('usage text too long');
      } else usage.push(line);
      return;
    }
    if (line === 'HANGUP') return this.onHangup();
    if (!this.pending) {
      if (line === '') return; // stray blank line
      return this.malformed('answer without a command');
    }
    if (line.startsWith('520-')) {
      this.pending.usage = [];
      this.armIdle();
      return;
    }
    const r = parseAgiResponse(line);
    if (!r) return this.malformed('unreadable answer');
    if (r.code === 511) this.markHungUp();
    this.settle(r);
  }

  private onEnvLine(line: string): void {
    if (line === '') {
      if (this.envLines === 0) return this.malformed('empty environment');
      this.envDone = true;
      this.disarmIdle();
      this.finishEnv();
      this.envReady(true);
      return;
    }
    if (++this.envLines > this.o.maxEnvLines) return this.malformed('environment too long');
    const m = /^([A-Za-z0-9_]{1,64}):(?: ?)(.*)$/s.exec(line);
    if (!m) return this.malformed('unreadable environment line');
    this.env[m[1]] = m[2];
  }

  private finishEnv(): void {
    const raw = this.env.agi_network_script ?? '';
    const q = raw.indexOf('?');
    this.script = q >= 0 ? raw.slice(0, q) : raw;
    if (q >= 0) {
      for (const [k, v] of new URLSearchParams(raw.slice(q + 1))) this.params[k] = v;
    }
    for (let i = 1; i <= this.o.maxEnvLines; i++) {
      const v = this.env[`agi_arg_${i}`];
      if (v === undefined) break;
      this.args.push(v);
    }
  }

  private onHangup(): void {
    this.markHungUp();
    if (this.pending && !this.graceTimer) {
      // the command already written may still be answered (Asterisk reads it after HANGUP)
      this.graceTimer = setTimeout(() => {
        this.graceTimer = null;
        this.fail(protocolError('the caller hung up before Asterisk answered', 'hangup'));
      }, this.o.hangupGraceMs);
    }
  }

  private markHungUp(): void {
    if (this.hungUp) return;
    this.hungUp = true;
    this.log.debug('agi hangup', { session: this.id });
    this.ac.abort();
  }

  private malformed(why: string): void {
    this.onMalformed();
    this.log.warn('agi session ended: malformed input from Asterisk', { session: this.id, ip: this.remote.address, reason: why });
    this.end('malformed');
    this.sock.destroy();
  }

  // ---------------------------------------------------------------- timers

  private armIdle(): void {
    this.disarmIdle();
    // before the environment: a connection that says nothing is not Asterisk, and holds a slot
    const ms = this.envDone ? this.o.idleTimeoutMs : Math.min(this.o.envTimeoutMs, this.o.idleTimeoutMs);
    this.idleTimer = setTimeout(() => {
      if (this.envDone) this.log.warn('agi session ended: Asterisk silent too long', { session: this.id, ip: this.remote.address, ms });
      else this.log.debug('agi connection closed: no AGI environment in time', { session: this.id, ip: this.remote.address, ms });
      this.end('timeout');
      this.sock.destroy();
    }, ms);
  }

  private disarmIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  // -------------------------------------------------------------- commands

  private settle(r: AgiResponse): void {
    const p = this.pending;
    this.pending = null;
    this.disarmIdle();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
    p?.resolve(r);
  }

  private fail(e: Error): void {
    const p = this.pending;
    this.pending = null;
    this.disarmIdle();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
    p?.reject(e);
  }

  /** The connection is over (closed by either side, malformed, timed out). */
  end(reason: 'closed' | 'malformed' | 'timeout' | 'done'): void {
    if (this.closed) return;
    this.closed = true;
    this.disarmIdle();
    this.ac.abort();
    this.fail(protocolError(reason === 'timeout' ? 'Asterisk did not answer in time' : 'the AGI connection closed', reason === 'timeout' ? 'timeout' : 'closed'));
    this.envReady(false);
  }

  command(cmd: string): Promise<AgiResponse> {
    const run = this.chain.then(
      () => this.exec(cmd),
      () => this.exec(cmd),
    );
    this.chain = run.catch(() => undefined);
    return run;
  }

  private exec(cmd: string): Promise<AgiResponse> {
    if (/[\r\n]/.test(cmd)) return Promise.reject(protocolError('an AGI command must be one line', 'usage'));
    if (Buffer.byteLength(cmd) > MAX_COMMAND_BYTES) return Promise.reject(protocolError(`AGI command longer than ${MAX_COMMAND_BYTES} bytes`, 'usage'));
    if (this.closed) return Promise.reject(protocolError('the AGI connection closed', 'closed'));
    if (this.hungUp) return Promise.reject(protocolError('the caller hung up', 'hangup'));
    const verb = cmd.trim().split(/\s+/).slice(0, 2).join(' ').toUpperCase();
    return new Promise<AgiResponse>((resolve, reject) => {
      this.pending = { resolve, reject, usage: null };
      this.armIdle();
      this.sock.write(cmd + '\n');
      this.log.debug('agi command', { session: this.id, cmd: verb });
    });
  }

  setVariable(name: string, value: string): Promise<AgiResponse> {
    if (!/^[^\s"\\]{1,256}$/.test(name)) return Promise.reject(protocolError('invalid channel variable name', 'usage'));
    return this.command(`SET VARIABLE ${name} ${quoteAgiArg(value)}`);
  }

  async getVariable(name: string): Promise<string | undefined> {
    if (!/^[^\s"\\]{1,256}$/.test(name)) throw protocolError('invalid channel variable name', 'usage');
    const r = await this.command(`GET VARIABLE ${name}`);
    return r.code === 200 && r.result === '1' ? r.data : undefined;
  }

  verbose(message: string, level = 1): Promise<AgiResponse> {
    const lv = Number.isInteger(level) && level >= 0 && level <= 10 ? level : 1;
    return this.command(`VERBOSE ${quoteAgiArg(message)} ${lv}`);
  }
}

class Server implements AgiServer {
  private srv: net.Server | null = null;
  private readonly sessions = new Map<Session, Promise<void>>();
  private readonly sockets = new Set<net.Socket>();
  private readonly o: Required<Omit<AgiServerOptions, 'listen' | 'handle'>>;
  private readonly st = { sessions: 0, failed: 0, malformed: 0 };

  constructor(private readonly opts: AgiServerOptions) {
    const int = (v: number | undefined, def: number, lo: number, hi: number): number =>
      v === undefined || !Number.isFinite(v) ? def : Math.max(lo, Math.min(hi, Math.floor(v)));
    this.o = {
      log: opts.log,
      idleTimeoutMs: int(opts.idleTimeoutMs, 30_000, 1, 3_600_000),
      sessionTimeoutMs: int(opts.sessionTimeoutMs, 120_000, 1, 86_400_000),
      hangupGraceMs: int(opts.hangupGraceMs, 2000, 0, 60_000),
      maxLineBytes: int(opts.maxLineBytes, 8192, 64, 1 << 20),
      maxEnvLines: int(opts.maxEnvLines, 256, 1, 10_000),
      maxSessions: int(opts.maxSessions, 64, 1, 100_000),
      perSource: int(opts.perSource, 16, 1, 100_000),
      envTimeoutMs: int(opts.envTimeoutMs, 5000, 1, 600_000),
    };
  }

  async start(): Promise<void> {
    if (this.srv) return;
    const { host, port } = this.opts.listen;
    const srv = net.createServer({ noDelay: true }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new ApsError('APS_ERR_BIND', `cannot listen for FastAGI on ${host}:${port}: ${e.code ?? e.message}`, {
            key: '[pin] agi_listen',
            expected: 'a free address and port',
            errno: e.code,
          }),
        ),
      );
      srv.listen({ host, port }, () => resolve());
    });
    srv.on('error', (e) => this.opts.log.error('agi server error', { err: e.message }));
    this.srv = srv;
  }

  addresses(): { host: string; port: number }[] {
    const a = this.srv?.address();
    return a && typeof a === 'object' ? [{ host: a.address, port: a.port }] : [];
  }

  stats(): { active: number; sessions: number; failed: number; malformed: number } {
    return { active: this.sessions.size, ...this.st };
  }

  private readonly bySource = new Map<string, number>();
  private lastRefusal = 0;
  private refusedSince = 0;

  private accept(sock: net.Socket): void {
    const log = this.opts.log;
    const ip = sock.remoteAddress ?? '';
    const mine = this.bySource.get(ip) ?? 0;
    if (this.sessions.size >= this.o.maxSessions || mine >= this.o.perSource) {
      // logged when it starts, then at most once a minute with a count
      this.refusedSince++;
      const now = Date.now();
      if (now - this.lastRefusal >= 60_000) {
        log.warn(mine >= this.o.perSource ? 'agi connections refused: one address holds its share of sessions' : 'agi connections refused: too many sessions', {
          ip, max: this.o.maxSessions, per_source: this.o.perSource, refused: this.refusedSince,
        });
        this.lastRefusal = now;
        this.refusedSince = 0;
      }
      sock.destroy();
      return;
    }
    this.bySource.set(ip, mine + 1);
    this.sockets.add(sock);
    sock.on('close', () => {
      this.sockets.delete(sock);
      const n = (this.bySource.get(ip) ?? 1) - 1;
      if (n > 0) this.bySource.set(ip, n);
      else this.bySource.delete(ip);
    });
    const s = new Session(sock, this.o, log, () => this.st.malformed++);
    const run = this.run(s, sock).finally(() => this.sessions.delete(s));
    this.sessions.set(s, run);
  }

  private async run(s: Session, sock: net.Socket): Promise<void> {
    const log = this.opts.log;
    const cap = setTimeout(() => {
      log.warn('agi session cut: too long', { session: s.id, ms: this.o.sessionTimeoutMs });
      s.end('timeout');
      sock.destroy();
    }, this.o.sessionTimeoutMs);
    try {
      if (!(await s.ready)) return;
      this.st.sessions++;
      log.debug('agi session', { session: s.id, ip: s.remote.address, script: s.script, channel: s.env.agi_channel, callerid: s.env.agi_callerid });
      try {
        await this.opts.handle(s);
      } catch (e) {
        this.st.failed++;
        log.error('agi handler failed', { session: s.id, script: s.script, err: errMessage(e) });
      }
    } finally {
      clearTimeout(cap);
      s.end('done');
      if (!sock.destroyed) {
        sock.end(); // Asterisk reads EOF: "AGI Script … completed"
        const t = setTimeout(() => sock.destroy(), 2000);
        t.unref();
        sock.once('close', () => clearTimeout(t));
      }
    }
  }

  async close(opts: { drainMs?: number } = {}): Promise<void> {
    const srv = this.srv;
    this.srv = null;
    const closed = srv ? new Promise<void>((r) => srv.close(() => r())) : Promise.resolve();
    const drain = opts.drainMs ?? 2000;
    if (this.sessions.size) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.sessions.values()]), new Promise<void>((r) => (timer = setTimeout(r, drain)))]);
      clearTimeout(timer);
    }
    for (const sock of this.sockets) sock.destroy();
    await closed;
  }
}

export function createAgiServer(opts: AgiServerOptions): AgiServer {
  return new Server(opts);
}
