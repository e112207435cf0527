/**
 * Passive DHCP discovery: `[dhcp] capture = eth1[,eth2]` opens a libpcap capture on each
 * interface (BPF `udp and (port 67 or port 68)`), beside whatever DHCP server answers there —
 * on this host or elsewhere, directly or through a relay. Each frame goes
 * frame → dhcpFromFrame → decodeDhcp → sightingFromDhcp → Inventory.observe; a frame that is
 * not DHCP, or a broken one, is counted and dropped, never fatal.
 *
 * Each interface is captured by its own child process (src/net/capture.ts), so an interface
 * that goes down, is deleted, renamed or comes back later never ends apsd: the capture waits
 * for it (logged once, shown by `apsctl status`) and resumes by itself. Only a capture this
 * process may not open at all (no CAP_NET_RAW) fails start-up with APS_ERR_CAPTURE.
 */
import { ApsError, describeError } from '../errors.js';
import type { Service, ServiceStatus } from './service.js';
import { decodeDhcp } from '../wire/dhcp.js';
import { dhcpFromFrame } from '../wire/frame.js';
import type { Inventory, Sighting } from '../inventory/inventory.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import { superviseCapture, type SupervisedCapture } from '../net/capture.js';
import { sightingFromDhcp } from '../inventory/dhcp-sighting.js';

export const DHCP_CAPTURE_FILTER = 'udp and (port 67 or port 68)';

export interface CaptureCounters {
  /** frames the filter let through, all interfaces */
  frames: number;
  /** of them, decoded as DHCP */
  dhcp: number;
  /** not IPv4/UDP DHCP, or a DHCP message that does not decode */
  bad: number;
  /** DHCP whose chaddr is not an Ethernet MAC */
  other: number;
  /** written to the inventory */
  sightings: number;
  /** devices the sightings made */
  created: number;
  /** sightings the inventory could not write (database errors) */
  errors: number;
  /** frames dropped because too many were waiting (apsd far behind the network) */
  overflow: number;
}

export interface CaptureService extends Service {
  readonly counters: CaptureCounters;
  readonly inventory: Inventory;
}

/**
 * The capture callback only queues the frame (a copy): libpcap's ring is drained as fast as
 * the kernel fills it, and a pause of the event loop (a commit, garbage collection) costs
 * memory here instead of packets there. The queue is worked off in slices of at most
 * SLICE_FRAMES frames (or what decodes in SLICE_MS), each slice one transaction (one commit
 * for many sightings: at 25,000 packets/s one commit per packet would not keep up), and the
 * event loop runs in between, so that libpcap's ring is drained at least every ~15 ms. Past
 * MAX_QUEUED frames waiting (about 100 MB), frames are dropped and counted.
 */
const SLICE_FRAMES = 200;
const SLICE_MS = 5;
const MAX_QUEUED = 262_144;
/**
 * The kernel's capture ring. `cap` asks libpcap for immediate mode with a 64 KiB snap length,
 * so libpcap uses fixed ring slots as large as the biggest packet the interface may hand up
 * (64 KiB with GRO/TSO, as on veth and most NICs): libpcap's default 8 MiB holds only ~120
 * frames, 5 ms of a 25,000 packets/s storm. 64 MiB holds ~1,000 frames.
 */
const RING_BYTES = 64 * 1024 * 1024;
/** Bad frames logged one by one before only every 1000th is. */
const BAD_LOGGED = 10;

interface Queued {
  ifname: string;
  frame: Buffer;
  linktype: number;
  at: number;
}

export interface CaptureDeps {
  /** [dhcp] capture of the running configuration */
  capture: () => readonly string[];
  /** the one inventory of apsd, which every discovery source feeds */
  inventory: Inventory;
  /** counts and logs (once a minute) the writes that could not be made */
  store: Pick<Store, 'writeFailed'>;
  log: Logger;
}

/** null when `[dhcp] capture` names no interface. */
export function createCaptureService(deps: CaptureDeps): CaptureService | null {
  const ifnames = deps.capture();
  if (!ifnames.length) return null;
  return new DhcpCaptureService(ifnames, deps.inventory, deps.log.child({ service: 'dhcp-capture' }), deps.capture, deps.store);
}

class DhcpCaptureService implements CaptureService {
  readonly name = 'dhcp-capture';
  readonly counters: CaptureCounters = { frames: 0, dhcp: 0, bad: 0, other: 0, sightings: 0, created: 0, errors: 0, overflow: 0 };
  private captures: SupervisedCapture[] = [];
  private queue: Queued[] = [];
  private head = 0;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private lastLogged = '';

  constructor(
    private readonly ifnames: readonly string[],
    readonly inventory: Inventory,
    private readonly log: Logger,
    private readonly configured: () => readonly string[],
    private readonly store: Pick<Store, 'writeFailed'>,
  ) {}

  async start(): Promise<void> {
    for (const ifname of this.ifnames) {
      this.captures.push(superviseCapture({
        ifname,
        filter: DHCP_CAPTURE_FILTER,
        bufferBytes: RING_BYTES,
        onFrame: (frame, linktype) => this.onFrame(ifname, frame, linktype),
        onState: (st) => {
          if (st.state === 'running') this.log.info('dhcp capture running', { interface: ifname, restarts: st.restarts });
          else this.log.warn('dhcp capture waiting for its interface: HTTP and TFTP keep serving; it resumes by itself', { interface: ifname, why: st.lastError });
        },
      }));
    }
    const firsts = await Promise.all(this.captures.map((c) => c.first));
    for (let i = 0; i < firsts.length; i++) {
      const f = firsts[i]!;
      if (!f.ok && f.permanent) {
        await this.closeAll();
        throw new ApsError('APS_ERR_CAPTURE', `cannot capture on ${this.ifnames[i]}: ${f.error}`, { key: '[dhcp] capture', expected: f.expected });
      }
    }
    this.timer = setInterval(() => this.logCounters('debug'), 60_000);
    this.timer.unref();
    this.log.info('dhcp capture started', { capture: this.ifnames.join(','), filter: DHCP_CAPTURE_FILTER });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.closeAll();
    while (this.head < this.queue.length) this.work();
    this.logCounters('info', 'dhcp capture stopped');
  }

  reload(): void {
    const next = this.configured();
    if (next.join(',') !== this.ifnames.join(',')) {
      this.log.warn('[dhcp] capture takes effect at the next restart', { capture: this.ifnames.join(','), configured: next.join(',') || '(none)' });
    }
  }

  describe(): Record<string, string> {
    return { capture: this.ifnames.join(',') };
  }

  status(): ServiceStatus[] {
    return this.captures.map((c) => ({
      service: 'dhcp-capture', interface: c.ifname, state: c.status.state, since: new Date(c.status.since).toISOString(),
      ...(c.status.lastError ? { lastError: c.status.lastError } : {}),
    }));
  }

  private async closeAll(): Promise<void> {
    await Promise.all(this.captures.map((c) => c.close()));
    this.captures = [];
  }

  private onFrame(ifname: string, frame: Buffer, linktype: number): void {
    this.counters.frames++;
    if (this.queue.length - this.head >= MAX_QUEUED) {
      this.counters.overflow++;
      return;
    }
    this.queue.push({ ifname, frame, linktype, at: Date.now() });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.work());
    }
  }

  /** Decodes and records one slice of the queue, in one transaction; schedules the next slice. */
  private work(): void {
    this.scheduled = false;
    const c = this.counters;
    const until = Date.now() + SLICE_MS;
    const batch: Sighting[] = [];
    const end = Math.min(this.queue.length, this.head + SLICE_FRAMES);
    while (this.head < end) {
      const q = this.queue[this.head++]!;
      const f = dhcpFromFrame(q.frame, q.linktype);
      if (!f.ok) {
        this.bad(q.ifname, f.reason);
      } else {
        const d = decodeDhcp(f.payload);
        if (!d.ok) this.bad(q.ifname, d.reason, f.src.ip);
        else {
          c.dhcp++;
          const s = sightingFromDhcp(d.msg, { interface: q.ifname, at: q.at });
          if (s) batch.push(s);
          else c.other++;
        }
      }
      if ((this.head & 31) === 0 && Date.now() >= until) break;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 65_536) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (batch.length) this.record(batch);
    if (this.head < this.queue.length && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.work());
    }
  }

  private bad(ifname: string, reason: string, src?: string): void {
    const n = ++this.counters.bad;
    if (n <= BAD_LOGGED || n % 1000 === 0) this.log.debug('frame dropped: not a DHCP message', { interface: ifname, src, reason, bad: n });
  }

  private record(batch: Sighting[]): void {
    let results;
    try {
      results = this.inventory.observeMany(batch);
    } catch (e) {
      // the transaction itself failed (disk full, database locked past the busy timeout)
      this.counters.errors += batch.length;
      this.store.writeFailed('sightings', e, this.log);
      return;
    }
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      if (r instanceof Error) {
        const n = ++this.counters.errors;
        if (n <= BAD_LOGGED || n % 1000 === 0) this.log.error('sighting not written', { mac: batch[i]!.mac, err: r.message, errors: n });
        continue;
      }
      this.counters.sightings++;
      if (r.created) this.counters.created++;
    }
  }

  private logCounters(level: 'debug' | 'info', msg = 'dhcp capture counters'): void {
    const now = JSON.stringify(this.counters);
    if (level === 'debug' && now === this.lastLogged) return;
    this.lastLogged = now;
    this.log[level](msg, { capture: this.ifnames.join(','), ...this.counters });
  }
}
