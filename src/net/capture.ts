/**
 * A capture that survives its interface: the libpcap handle lives in a child process
 * (src/net/capture-child.ts) that this module starts, watches and starts again. The `cap`
 * binding aborts the whole process (`Assertion 'status == 0' failed` in cb_packets) when a
 * captured interface goes down, is deleted or is moved away; in the child that abort ends the
 * child only, and apsd keeps serving.
 *
 * Once a second the supervisor looks at /sys/class/net/<ifname>: while the interface is
 * missing, administratively down, replaced by another one of the same name (a new ifindex),
 * or not `ready` (e.g. the DHCP server needs an IPv4 address on it), no child runs; when it is
 * back, a child is started. A child that dies is started again after 1 s, doubling to 30 s
 * while it keeps dying. Every change of state is reported once through onState.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export type CaptureState = 'running' | 'waiting';

export interface CaptureStatus {
  interface: string;
  state: CaptureState;
  /** ms since the epoch of the last change of state */
  since: number;
  /** why it is waiting, or why the last child ended */
  lastError?: string;
  /** children started after the first */
  restarts: number;
}

export interface SupervisedCapture {
  readonly ifname: string;
  readonly status: CaptureStatus;
  /** the link type the running child reported, -1 before */
  readonly linktype: number;
  /** the first attempt's outcome: opened, or why not (permanent: no permission, not retried with hope) */
  readonly first: Promise<{ ok: true; linktype: number } | { ok: false; error: string; expected?: string; permanent: boolean }>;
  send(frame: Buffer): boolean;
  close(): Promise<void>;
}

export interface SuperviseOptions {
  ifname: string;
  filter: string;
  bufferBytes?: number;
  onFrame: (frame: Buffer, linktype: number) => void;
  /** each change between running and waiting, once */
  onState?: (status: CaptureStatus) => void;
  /** called when a child opened the capture, before frames arrive; return a reason to refuse it */
  onOpen?: (linktype: number) => string | void;
  /** an extra condition for opening (default: none) */
  ready?: () => string | null;
  /** default 1000 ms */
  pollMs?: number;
}

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
/** a child that ran this long before it died starts again without waiting longer */
const STABLE_MS = 30_000;

const self = fileURLToPath(import.meta.url);
const CHILD = self.replace(/capture\.(ts|js)$/, 'capture-child.$1');

/** Why an interface cannot be captured now, or null: missing, down. */
export function interfaceProblem(ifname: string): string | null {
  const dir = `/sys/class/net/${ifname}`;
  let flags: number;
  try {
    flags = Number(fs.readFileSync(`${dir}/flags`, 'utf8').trim());
  } catch {
    return `no interface ${ifname}`;
  }
  if ((flags & 1) === 0) return `interface ${ifname} is down`;
  return null;
}

function ifindex(ifname: string): string {
  try {
    return fs.readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim();
  } catch {
    return '';
  }
}

export function superviseCapture(o: SuperviseOptions): SupervisedCapture {
  const status: CaptureStatus = { interface: o.ifname, state: 'waiting', since: Date.now(), restarts: 0 };
  let child: ChildProcess | null = null;
  let childIndex = '';
  let childStarted = 0;
  let opened = false;
  let linktype = -1;
  let closed = false;
  let nextAttempt = 0;
  let backoff = BACKOFF_MIN_MS;
  let attempts = 0;
  let childError = '';
  let childExpected: string | undefined;
  let stderrTail = '';
  let firstDone = false;
  /** the first state is reported too (a capture that waits from the start) */
  let reported = false;
  let resolveFirst!: (v: Awaited<SupervisedCapture['first']>) => void;
  const first = new Promise<Awaited<SupervisedCapture['first']>>((r) => (resolveFirst = r));
  const settleFirst = (v: Awaited<SupervisedCapture['first']>) => {
    if (firstDone) return;
    firstDone = true;
    resolveFirst(v);
  };

  const setState = (state: CaptureState, why?: string) => {
    if (why !== undefined) status.lastError = why;
    if (status.state === state && reported) return;
    reported = true;
    status.state = state;
    status.since = Date.now();
    o.onState?.({ ...status });
  };

  const kill = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };

  const startChild = () => {
    attempts++;
    if (attempts > 1) status.restarts++;
    childError = '';
    childExpected = undefined;
    stderrTail = '';
    opened = false;
    childIndex = ifindex(o.ifname);
    childStarted = Date.now();
    const c = spawn(process.execPath, [...process.execArgv, CHILD, o.ifname, o.filter, String(o.bufferBytes ?? 0)], { stdio: ['pipe', 'pipe', 'pipe'] });
    child = c;
    let pending: Buffer = Buffer.alloc(0);
    c.stdout!.on('data', (d: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, d]) : d;
      let at = 0;
      while (pending.length - at >= 5) {
        const n = pending.readUInt32BE(at);
        if (pending.length - at < 5 + n) break;
        const kind = pending[at + 4];
        const body = pending.subarray(at + 5, at + 5 + n);
        at += 5 + n;
        if (kind === 1) {
          if (opened) o.onFrame(Buffer.from(body), linktype);
        } else if (kind === 0) {
          linktype = Number(body.toString());
          const refused = o.onOpen?.(linktype);
          if (refused) {
            childError = refused;
            settleFirst({ ok: false, error: refused, permanent: true });
            kill();
            continue;
          }
          opened = true;
          backoff = BACKOFF_MIN_MS;
          setState('running', '');
          delete status.lastError;
          settleFirst({ ok: true, linktype });
        } else if (kind === 2) {
          try {
            const m = JSON.parse(body.toString()) as { message: string; expected?: string };
            childError = m.message;
            childExpected = m.expected;
          } catch {
            childError = body.toString();
          }
        }
      }
      pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
    });
    c.stderr!.on('data', (d: Buffer) => {
      stderrTail = (stderrTail + d.toString()).slice(-2000);
    });
    c.stdin!.on('error', () => {
      // the child is gone; its exit is handled below
    });
    c.on('error', (e) => {
      childError ||= `cannot start the capture process: ${e.message}`;
    });
    c.on('close', (code, signal) => {
      if (child === c) child = null;
      opened = false;
      linktype = -1;
      if (closed) return;
      const fault = stderrTail.split('\n').map((l) => l.trim()).filter(Boolean).pop();
      const why = childError || interfaceProblem(o.ifname) || (fault ? `capture process ended (${signal ?? `exit ${code}`}): ${fault}` : `capture process ended (${signal ?? `exit ${code}`})`);
      const permanent = /CAP_NET_RAW/.test(childExpected ?? '');
      settleFirst({ ok: false, error: why, expected: childExpected, permanent });
      if (Date.now() - childStarted >= STABLE_MS) backoff = BACKOFF_MIN_MS;
      nextAttempt = Date.now() + backoff;
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
      setState('waiting', why);
    });
  };

  const tick = () => {
    if (closed) return;
    const problem = interfaceProblem(o.ifname) ?? o.ready?.() ?? null;
    if (child) {
      // the interface went away under a child that did not notice (or a new one took its name)
      if (problem || ifindex(o.ifname) !== childIndex) {
        childError = problem ?? `interface ${o.ifname} was replaced`;
        kill();
      }
      return;
    }
    if (problem) {
      settleFirst({ ok: false, error: problem, permanent: false });
      setState('waiting', problem);
      return;
    }
    if (Date.now() >= nextAttempt) startChild();
  };

  const timer = setInterval(tick, o.pollMs ?? 1000);
  timer.unref();
  tick();

  return {
    ifname: o.ifname,
    status,
    get linktype() {
      return linktype;
    },
    first,
    send(frame: Buffer) {
      const c = child;
      if (!c || !opened || !c.stdin!.writable) return false;
      const head = Buffer.allocUnsafe(4);
      head.writeUInt32BE(frame.length, 0);
      c.stdin!.write(Buffer.concat([head, frame]));
      return true;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      settleFirst({ ok: false, error: 'closed', permanent: true });
      const c = child;
      if (!c) return;
      const gone = new Promise<void>((r) => c.once('close', () => r()));
      c.stdin!.end();
      const t = setTimeout(() => kill(), 2000);
      await gone;
      clearTimeout(t);
    },
  };
}
