/**
 * Packet capture on one interface through libpcap (npm `cap`): frames in, and frames out for
 * the built-in DHCP server, which must answer on its interface only and to clients that have
 * no address yet. `cap` is used rather than node_pcap because node_pcap keeps the event loop
 * alive after its session is closed (a daemon could not stop cleanly, a test process could not
 * exit) and cannot send; `cap` closes cleanly and sends raw frames.
 *
 * `cap` reuses one buffer for every packet: onFrame gets a copy it may keep.
 */
import { createRequire } from 'node:module';
import { ApsError } from '../errors.js';

interface CapInstance {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  setMinBytes?(n: number): void;
  on(ev: 'packet', fn: (nbytes: number, truncated: boolean) => void): void;
  send(buf: Buffer, len?: number): void;
  close(): void;
}
interface CapModule {
  Cap: { new (): CapInstance; deviceList(): { name: string; addresses: { addr: string }[] }[] };
}

/** libpcap link-layer types by the names `cap` reports. */
const LINKTYPES: Record<string, number> = { ETHERNET: 1, NULL: 0, RAW: 101, LINUX_SLL: 113, LINUX_SLL2: 276, IEEE802_11: 105 };

export interface Capture {
  readonly ifname: string;
  readonly linktype: number;
  /** frames seen on the interface that passed the filter */
  readonly counters: { frames: number; truncated: number; sent: number; sendErrors: number };
  send(frame: Buffer): boolean;
  close(): void;
}

let cap: CapModule | null = null;
function load(): CapModule {
  if (!cap) {
    try {
      cap = createRequire(import.meta.url)('cap') as CapModule;
    } catch (e) {
      throw new ApsError('APS_ERR_CAPTURE', `libpcap support is not available: ${(e as Error).message}`, {
        expected: 'the npm package cap built against libpcap-dev (scripts/setup.sh installs both)',
      });
    }
  }
  return cap;
}

export function interfaceNames(): string[] {
  return load().Cap.deviceList().map((d) => d.name);
}

/**
 * Opens a capture on `ifname` with a BPF `filter`. Fails fast, naming the interface and what
 * is missing: no such interface, or no permission (CAP_NET_RAW).
 */
export function openCapture(ifname: string, filter: string, onFrame: (frame: Buffer, linktype: number) => void, opts: { bufferBytes?: number } = {}): Capture {
  const { Cap } = load();
  if (!interfaceNames().includes(ifname)) {
    throw new ApsError('APS_ERR_CAPTURE', `no interface "${ifname}" to capture on`, { key: '[dhcp] capture', expected: `one of ${interfaceNames().filter((n) => !/^(any|nflog|nfqueue|dbus|bluetooth)/.test(n)).join(', ')}` });
  }
  const c = new Cap();
  const buf = Buffer.alloc(65535);
  let linkName: string;
  try {
    linkName = c.open(ifname, filter, opts.bufferBytes ?? 8 * 1024 * 1024, buf);
  } catch (e) {
    const msg = (e as Error).message;
    const perm = /permission|not permitted|EPERM|socket: Operation/i.test(msg);
    throw new ApsError('APS_ERR_CAPTURE', `cannot capture on ${ifname}: ${msg}`, {
      key: '[dhcp] capture',
      expected: perm ? 'the capability CAP_NET_RAW (the systemd unit grants it; or run as root)' : 'an interface that is up',
    });
  }
  c.setMinBytes?.(0);
  // cap names link types with or without the LINKTYPE_ prefix depending on the type
  const linktype = LINKTYPES[linkName.replace(/^LINKTYPE_/, '')] ?? -1;
  const counters = { frames: 0, truncated: 0, sent: 0, sendErrors: 0 };
  let open = true;
  c.on('packet', (nbytes, truncated) => {
    counters.frames++;
    if (truncated) counters.truncated++;
    onFrame(Buffer.from(buf.subarray(0, nbytes)), linktype);
  });
  return {
    ifname,
    linktype,
    counters,
    send(frame: Buffer) {
      if (!open) return false;
      try {
        c.send(frame, frame.length);
        counters.sent++;
        return true;
      } catch {
        counters.sendErrors++;
        return false;
      }
    },
    close() {
      if (!open) return;
      open = false;
      c.close();
    },
  };
}
