/**
 * Network-namespace harness for DHCP end-to-end tests (dnsmasq, dhclient, udhcpc, ISC, Kea,
 * apsd's own DHCP server and passive capture).
 *
 * Layout (default): two fresh namespaces joined by a veth pair created directly inside them,
 * so the machine's own namespace never sees an interface, address or route of ours:
 *
 *     ns aps-<id>-host  [hostIf hostIp/prefix] <--veth--> [peerIf peerIp?/prefix]  ns aps-<id>-peer
 *
 * With `hostNs: false` the host end lives in the root namespace instead (for a server that
 * must run unwrapped); its subnet is then refused if it overlaps any root-namespace address.
 *
 * Every name carries a random id (interfaces ≤ 15 chars). Every process started through a
 * link is tracked by PID; `cleanup()` stops them (TERM, then KILL), kills by PID whatever is
 * still inside our namespaces (daemons that forked), deletes the veth and the namespaces and
 * the link's temp dir. It is idempotent. `cleanupAll()`/`cleanupAllSync()` do that for every
 * live link and run by themselves on process exit, SIGINT, SIGTERM and uncaught exceptions.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface NetnsSupport {
  ok: boolean;
  /** Why not, in words a person can act on. */
  why?: string;
}

export type Side = 'host' | 'peer';

export interface LinkOptions {
  /** A short label (a-z, 0-9; first 4 kept) put into the names, to tell links apart in `ip` output. */
  name?: string;
  /** The server side's address, e.g. 10.199.0.1. */
  hostIp: string;
  /** The client side's address; omit when a DHCP client will get one. */
  peerIp?: string;
  prefix: number;
  /** Default true: the host end lives in its own namespace. false: in the root namespace. */
  hostNs?: boolean;
  hostMac?: string;
  /** e.g. a Yealink OUI: '80:5e:c0:12:34:56'. */
  peerMac?: string;
  /** Default false: IPv6 is disabled on both ends (no DAD, RS or MLD noise in captures). */
  ipv6?: boolean;
}

export interface ExecOptions {
  /** Default 30 s; the process is killed (by PID) when it runs longer. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string | Buffer;
  /** Throw when the exit code is not 0 (default false). */
  check?: boolean;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface NsProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: boolean;
  /** stdout and stderr as they arrived (the last 1 MiB). */
  output(): string;
  /** Resolves with the output once it matches `re`; rejects after `timeoutMs` or when the process exits first. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 2000). */
  stop(graceMs?: number): Promise<void>;
}

export interface Link {
  readonly id: string;
  /** The host side's namespace, or null when it is the root namespace. */
  readonly hostNs: string | null;
  readonly peerNs: string;
  readonly hostIf: string;
  readonly peerIf: string;
  readonly hostIp: string;
  readonly peerIp: string | undefined;
  readonly prefix: number;
  readonly hostMac: string;
  readonly peerMac: string;
  /** A temp dir for this link's files (configs, lease and pid files); removed by cleanup. */
  readonly dir: string;
  /** `path.join(dir, name)`; with `content`, writes it first (mode default 0644). */
  file(name: string, content?: string, mode?: number): string;
  /** The interface of a side. */
  ifname(side: Side): string;
  /** Runs to completion inside a side's namespace ('host' | 'peer' | one of this link's namespace names). */
  exec(ns: Side | string, cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a tracked long-running process inside a side's namespace. */
  spawn(ns: Side | string, cmd: string, args?: readonly string[], opts?: SpawnOptions): NsProcess;
  /** Sets a side's MAC address (the link goes down and up around it). */
  setMac(side: Side, mac: string): Promise<void>;
  /** The IPv4 addresses (CIDR) on a side's interface right now. */
  addresses(side: Side): Promise<string[]>;
  cleanup(): Promise<void>;
  cleanupSync(): void;
}

// ------------------------------------------------------------------------------ helpers

const IP = 'ip';

function runSync(cmd: string, args: readonly string[], timeoutMs = 10_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args as string[], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) return { code: null, stdout: '', stderr: String(r.error.message) };
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** The full path of a program on PATH (plus the sbin dirs), or null. */
export function which(cmd: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return null;
}

/** Polls `pred` every `everyMs` until true; rejects with `what` after `timeoutMs`. */
export async function waitUntil(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(Math.min(everyMs, Math.max(1, deadline - Date.now())));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // a zombie (exited, not yet reaped by its parent) counts as gone
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** PIDs of every process inside a namespace (`ip netns pids`). */
export function namespacePids(ns: string): number[] {
  const r = runSync(IP, ['netns', 'pids', ns]);
  if (r.code !== 0) return [];
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid);
}

/** Names from `ip netns list`. */
export function listNamespaces(): string[] {
  const r = runSync(IP, ['netns', 'list']);
  if (r.code !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/** Interface names in the root namespace. */
export function rootInterfaces(): string[] {
  const r = runSync(IP, ['-o', 'link', 'show']);
  if (r.code !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter(Boolean);
}

function ipToInt(ip: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return null;
  const p = m.slice(1).map(Number);
  if (p.some((x) => x > 255)) return null;
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

function sameSubnet(a: number, b: number, prefix: number): boolean {
  if (prefix === 0) return true;
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  return (a & mask) === (b & mask);
}

function randomMac(oui = '02:00:00'): string {
  const r = randomBytes(3).toString('hex').match(/../g)!.join(':');
  return `${oui}:${r}`;
}

// ------------------------------------------------------------------------------ capability

let support: NetnsSupport | undefined;

/** Whether this machine lets us make namespaces and veth pairs (cached). Set APS_SKIP_NETNS=1 to say no. */
export function canUseNetns(): NetnsSupport {
  if (support) return support;
  support = probe();
  return support;
}

function probe(): NetnsSupport {
  if (process.env.APS_SKIP_NETNS) return { ok: false, why: 'APS_SKIP_NETNS is set' };
  if (process.platform !== 'linux') return { ok: false, why: `network namespaces need Linux (this is ${process.platform})` };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, why: 'not root: network namespaces and veth pairs need CAP_SYS_ADMIN and CAP_NET_ADMIN' };
  if (!which(IP)) return { ok: false, why: '`ip` not found: apt-get install iproute2' };
  const id = randomBytes(3).toString('hex');
  const ns = `aps-probe-${id}`;
  try {
    let r = runSync(IP, ['netns', 'add', ns]);
    if (r.code !== 0) return { ok: false, why: `\`ip netns add\` fails: ${r.stderr.trim() || 'exit ' + r.code}` };
    created.add(ns);
    r = runSync(IP, ['-n', ns, 'link', 'add', `apr${id}a`, 'type', 'veth', 'peer', 'name', `apr${id}b`]);
    if (r.code !== 0) return { ok: false, why: `cannot create a veth pair: ${r.stderr.trim() || 'exit ' + r.code}` };
    r = runSync(IP, ['netns', 'exec', ns, 'true']);
    if (r.code !== 0) return { ok: false, why: `\`ip netns exec\` fails: ${r.stderr.trim() || 'exit ' + r.code}` };
    return { ok: true };
  } finally {
    runSync(IP, ['netns', 'del', ns]);
  }
}

// ------------------------------------------------------------------------------ registry

const live = new Set<LinkImpl>();
/** Every namespace this process created, for leak assertions. */
const created = new Set<string>();
let hooked = false;

export function createdNamespaces(): string[] {
  return [...created];
}

function hookProcess(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => cleanupAllSync());
  process.on('uncaughtExceptionMonitor', () => cleanupAllSync());
  for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15]] as const) {
    process.once(sig, () => {
      cleanupAllSync();
      process.exit(128 + n);
    });
  }
}

/** Cleans up every live link (graceful stop of processes first). */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...live].map((l) => l.cleanup()));
}

/** Cleans up every live link now: SIGKILL by PID, namespaces deleted. For exit handlers. */
export function cleanupAllSync(): void {
  for (const l of [...live]) l.cleanupSync();
}

// ------------------------------------------------------------------------------ links

class Proc implements NsProcess {
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #out = '';
  #done = false;
  #listeners = new Set<() => void>();

  constructor(readonly child: ChildProcess, readonly label: string) {
    if (child.pid === undefined) throw new Error(`could not start ${label}`);
    this.pid = child.pid;
    const add = (d: Buffer) => {
      this.#out += d.toString('utf8');
      if (this.#out.length > 1 << 20) this.#out = this.#out.slice(-(1 << 20));
      for (const f of this.#listeners) f();
    };
    child.stdout?.on('data', add);
    child.stderr?.on('data', add);
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.#done = true;
        for (const f of this.#listeners) f();
        resolve({ code, signal });
      });
    });
  }
  get running(): boolean {
    return !this.#done && this.child.exitCode === null && this.child.signalCode === null;
  }
  output(): string {
    return this.#out;
  }
  waitFor(re: RegExp, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (re.test(this.#out)) finish(null);
        else if (this.#done) finish(new Error(`${this.label} exited before printing ${re}; output:\n${this.#out}`));
      };
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${this.label} to print ${re}; output:\n${this.#out}`)), timeoutMs);
      const finish = (err: Error | null) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        if (err) reject(err);
        else resolve(this.#out);
      };
      this.#listeners.add(check);
      check();
    });
  }
  async stop(graceMs = 2000): Promise<void> {
    if (!this.running) return;
    kill(this.pid, 'SIGTERM');
    const t = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!t && this.running) {
      kill(this.pid, 'SIGKILL');
      await Promise.race([this.exited, sleep(2000)]);
    }
  }
}

class LinkImpl implements Link {
  readonly procs = new Set<Proc>();
  #cleaning: Promise<void> | undefined;
  #cleaned = false;
  readonly namespaces: string[];

  constructor(
    readonly id: string,
    readonly hostNs: string | null,
    readonly peerNs: string,
    readonly hostIf: string,
    readonly peerIf: string,
    readonly hostIp: string,
    readonly peerIp: string | undefined,
    readonly prefix: number,
    public hostMac: string,
    public peerMac: string,
    readonly dir: string,
  ) {
    this.namespaces = hostNs ? [hostNs, peerNs] : [peerNs];
  }

  file(name: string, content?: string, mode = 0o644): string {
    const p = path.join(this.dir, name);
    if (content !== undefined) {
      fs.writeFileSync(p, content, { mode });
      fs.chmodSync(p, mode);
    }
    return p;
  }

  ifname(side: Side): string {
    return side === 'host' ? this.hostIf : this.peerIf;
  }

  /** The namespace for `ns`, or null for the root namespace. Refuses namespaces not ours. */
  resolve(ns: Side | string): string | null {
    if (this.#cleaned) throw new Error(`link ${this.id} is cleaned up`);
    if (ns === 'host') return this.hostNs;
    if (ns === 'peer') return this.peerNs;
    if (this.namespaces.includes(ns)) return ns;
    throw new Error(`"${ns}" is not a namespace of link ${this.id} (${this.namespaces.join(', ')})`);
  }

  #argv(ns: Side | string, cmd: string, args: readonly string[]): [string, string[]] {
    const n = this.resolve(ns);
    return n ? [IP, ['netns', 'exec', n, cmd, ...args]] : [cmd, [...args]];
  }

  spawn(ns: Side | string, cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): NsProcess {
    const [c, a] = this.#argv(ns, cmd, args);
    // `ip netns exec` execs the command in place: the PID is the command's own
    const child = spawn(c, a, { cwd: opts.cwd ?? this.dir, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.on('error', () => {}); // ENOENT and the like show up as an exit with no code
    if (child.pid === undefined) throw new Error(`could not start ${cmd} in ${ns}`);
    const p = new Proc(child, `${cmd} (in ${ns})`);
    this.procs.add(p);
    p.exited.then(() => this.procs.delete(p));
    return p;
  }

  exec(ns: Side | string, cmd: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    const [c, a] = this.#argv(ns, cmd, args);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const child = spawn(c, a, { cwd: opts.cwd ?? this.dir, env: opts.env ?? process.env, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      let spawnError: Error | undefined;
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      child.on('error', (e) => (spawnError = e));
      if (opts.input !== undefined) child.stdin!.end(opts.input);
      const proc = child.pid !== undefined ? new Proc(child, cmd) : undefined;
      if (proc) this.procs.add(proc);
      const timer = setTimeout(() => {
        timedOut = true;
        if (child.pid !== undefined) kill(child.pid, 'SIGKILL');
      }, timeoutMs);
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (proc) this.procs.delete(proc);
        const r: ExecResult = { code, signal, stdout, stderr, timedOut };
        if (spawnError) return reject(new Error(`${cmd}: ${spawnError.message}`));
        if (opts.check && code !== 0) {
          return reject(new Error(`\`${[cmd, ...args].join(' ')}\` in ${ns} ${timedOut ? `timed out after ${timeoutMs} ms` : `exited ${code ?? signal}`}: ${stderr.trim() || stdout.trim()}`));
        }
        resolve(r);
      });
    });
  }

  #ipArgs(side: Side, rest: string[]): string[] {
    const ns = this.resolve(side);
    return ns ? ['-n', ns, ...rest] : rest;
  }

  async setMac(side: Side, mac: string): Promise<void> {
    const dev = this.ifname(side);
    await runIp(this.#ipArgs(side, ['link', 'set', 'dev', dev, 'down']));
    await runIp(this.#ipArgs(side, ['link', 'set', 'dev', dev, 'address', mac]));
    await runIp(this.#ipArgs(side, ['link', 'set', 'dev', dev, 'up']));
    if (side === 'host') this.hostMac = mac;
    else this.peerMac = mac;
  }

  async addresses(side: Side): Promise<string[]> {
    const r = await runIp(this.#ipArgs(side, ['-4', '-o', 'addr', 'show', 'dev', this.ifname(side)]));
    return [...r.stdout.matchAll(/\binet\s+(\S+)/g)].map((m) => m[1]!);
  }

  cleanup(): Promise<void> {
    return (this.#cleaning ??= this.#cleanupAsync());
  }

  async #cleanupAsync(): Promise<void> {
    if (this.#cleaned) return;
    try {
      await Promise.all([...this.procs].map((p) => p.stop(2000)));
      // forked daemons and anything else still inside our namespaces (bounded sweep)
      for (let round = 0; round < 20; round++) {
        const pids = this.namespaces.flatMap(namespacePids).filter(alive);
        if (!pids.length) break;
        for (const pid of pids) kill(pid, round < 2 ? 'SIGTERM' : 'SIGKILL');
        await sleep(100);
      }
    } finally {
      this.cleanupSync();
    }
  }

  cleanupSync(): void {
    if (this.#cleaned) return;
    this.#cleaned = true;
    for (const p of this.procs) if (p.running) kill(p.pid, 'SIGKILL');
    for (const ns of this.namespaces) for (const pid of namespacePids(ns)) kill(pid, 'SIGKILL');
    if (!this.hostNs) runSync(IP, ['link', 'del', 'dev', this.hostIf]);
    for (const ns of this.namespaces) runSync(IP, ['netns', 'del', ns]);
    fs.rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

async function runIp(args: string[]): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(IP, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    const timer = setTimeout(() => child.pid !== undefined && kill(child.pid, 'SIGKILL'), 10_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout });
      else reject(new Error(`\`ip ${args.join(' ')}\` exited ${code}: ${stderr.trim()}`));
    });
  });
}

/**
 * Makes the namespaces and the veth pair, addresses on, links up. Throws (after removing
 * whatever it had made) if anything fails; call `canUseNetns()` first to skip cleanly.
 */
export async function createLink(opts: LinkOptions): Promise<Link> {
  const hostIpN = ipToInt(opts.hostIp);
  if (hostIpN === null) throw new Error(`hostIp "${opts.hostIp}" is not an IPv4 address`);
  if (opts.peerIp !== undefined && ipToInt(opts.peerIp) === null) throw new Error(`peerIp "${opts.peerIp}" is not an IPv4 address`);
  if (!Number.isInteger(opts.prefix) || opts.prefix < 8 || opts.prefix > 30) throw new Error(`prefix ${opts.prefix} must be 8..30`);
  const inNs = opts.hostNs ?? true;
  if (!inNs) {
    // never shadow the machine's own networks
    const r = await runIp(['-4', '-o', 'addr', 'show']);
    for (const m of r.stdout.matchAll(/\binet\s+(\d+\.\d+\.\d+\.\d+)\/(\d+)/g)) {
      const other = ipToInt(m[1]!)!;
      const p = Math.min(Number(m[2]), opts.prefix);
      if (sameSubnet(other, hostIpN, p)) throw new Error(`${opts.hostIp}/${opts.prefix} overlaps ${m[1]}/${m[2]} in the root namespace: pick another subnet`);
    }
  }
  hookProcess();
  const label = (opts.name ?? '').toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 4);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-netns-'));
  fs.chmodSync(dir, 0o755); // daemons that drop privileges (dnsmasq) read and write here
  let id = '';
  let hostNs: string | null = null;
  let peerNs = '';
  for (let attempt = 0; ; attempt++) {
    id = randomBytes(3).toString('hex');
    peerNs = `aps-${label ? label + '-' : ''}${id}-peer`;
    hostNs = inNs ? `aps-${label ? label + '-' : ''}${id}-host` : null;
    const taken = new Set(listNamespaces());
    const ifs = new Set(rootInterfaces());
    if (!taken.has(peerNs) && !(hostNs && taken.has(hostNs)) && !ifs.has(`aps${label}${id}h`)) break;
    if (attempt >= 5) throw new Error('could not find unused namespace names');
  }
  const hostIf = `aps${label}${id}h`;
  const peerIf = `aps${label}${id}p`;
  const link = new LinkImpl(id, hostNs, peerNs, hostIf, peerIf, opts.hostIp, opts.peerIp, opts.prefix, opts.hostMac ?? randomMac(), opts.peerMac ?? randomMac(), dir);
  live.add(link);
  try {
    for (const ns of link.namespaces) {
      await runIp(['netns', 'add', ns]);
      created.add(ns);
    }
    const hostPart = hostNs ? [hostIf, 'netns', hostNs] : [hostIf];
    await runIp(['link', 'add', ...hostPart, 'address', link.hostMac, 'type', 'veth', 'peer', 'name', peerIf, 'netns', peerNs, 'address', link.peerMac]);
    const inSide = (side: Side, rest: string[]) => (side === 'host' && !hostNs ? rest : ['-n', side === 'host' ? hostNs! : peerNs, ...rest]);
    for (const ns of link.namespaces) {
      await runIp(['-n', ns, 'link', 'set', 'dev', 'lo', 'up']);
    }
    if (!opts.ipv6) {
      for (const ns of link.namespaces) {
        await link.exec(ns, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'], { check: true });
      }
      if (!hostNs) fs.writeFileSync(`/proc/sys/net/ipv6/conf/${hostIf}/disable_ipv6`, '1');
    }
    await runIp(inSide('host', ['addr', 'add', `${opts.hostIp}/${opts.prefix}`, 'dev', hostIf]));
    if (opts.peerIp) await runIp(inSide('peer', ['addr', 'add', `${opts.peerIp}/${opts.prefix}`, 'dev', peerIf]));
    await runIp(inSide('host', ['link', 'set', 'dev', hostIf, 'up']));
    await runIp(inSide('peer', ['link', 'set', 'dev', peerIf, 'up']));
    return link;
  } catch (e) {
    await link.cleanup();
    throw e;
  }
}
