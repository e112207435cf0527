/**
 * Network scan (apsctl scan): an ARP ping sweep of an address range with nmap, read from
 * nmap's XML output as it streams. ARP reaches only the local link, so the range must lie on
 * the interface's subnet; what comes back is each live address with the MAC that answered.
 *
 * nmap does the packets (it needs root or CAP_NET_RAW); this file checks the input, builds
 * the command, reads the XML with a small streaming parser of its own (no XML package) and
 * reports progress from nmap's <taskprogress> elements (--stats-every).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ApsError } from '../errors.js';
import { parseMac, type Mac } from '../mac.js';
import { interfaceAddresses, intToIp, parseIpv4 } from '../net/address.js';

/** A /16: more than that is not one voice subnet, and an ARP sweep of it takes minutes. */
export const MAX_SCAN_ADDRESSES = 65_536;

export interface ScanRange {
  first: string;
  last: string;
  count: number;
  /** nmap target specifications covering exactly first..last (a.b.c.x-y, one per /24) */
  targets: string[];
}


/**
 * `10.0.0.10-10.0.0.50`, `10.0.0.10-50` (last octet) or one address. Throws ApsError
 * APS_ERR_USAGE with what was expected.
 */
export function parseScanRange(spec: string): ScanRange {
  const expected = 'FIRST-LAST, e.g. 10.20.0.100-10.20.0.199 or 10.20.0.100-199';
  const s = spec.trim();
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\s*-\s*(\d{1,3}(?:\.\d{1,3}){3}|\d{1,3}))?$/.exec(s);
  if (!m) throw new ApsError('APS_ERR_USAGE', `"${spec}" is not an address range`, { expected });
  const first = m[1];
  const lastText = m[2] === undefined ? first : m[2].includes('.') ? m[2] : first.replace(/\d+$/, m[2]);
  const a = parseIpv4(first);
  const b = parseIpv4(lastText);
  if (a === null) throw new ApsError('APS_ERR_USAGE', `"${first}" is not an IPv4 address`, { expected });
  if (b === null) throw new ApsError('APS_ERR_USAGE', `"${m[2]}" is not an IPv4 address or a last octet`, { expected });
  if (b < a) throw new ApsError('APS_ERR_USAGE', `the range ${first}-${lastText} ends before it starts`, { expected: 'the first address, then the last' });
  const count = b - a + 1;
  if (count > MAX_SCAN_ADDRESSES) {
    throw new ApsError('APS_ERR_USAGE', `the range ${first}-${lastText} has ${count} addresses, more than ${MAX_SCAN_ADDRESSES} (a /16)`, { expected: 'the range of one voice subnet, e.g. its DHCP pool' });
  }
  const targets: string[] = [];
  for (let lo = a; lo <= b; ) {
    const blockEnd = (lo | 255) >>> 0;
    const hi = Math.min(b, blockEnd);
    const base = intToIp(lo).replace(/\.\d+$/, '');
    targets.push(lo === hi ? intToIp(lo) : `${base}.${lo & 255}-${hi & 255}`);
    lo = hi + 1;
  }
  return { first, last: lastText, count, targets };
}

/** The IPv4 subnets of an interface (from the kernel's view in this network namespace). */
export function interfaceSubnets(ifname: string): { address: string; prefix: number }[] {
  return interfaceAddresses(ifname).map((a) => ({ address: a.address, prefix: a.prefix }));
}

/**
 * Checks that the interface exists and that the range touches its subnet (ARP does not
 * cross a router). Throws ApsError with what to do.
 */
export function checkInterface(ifname: string, range: ScanRange): void {
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(ifname)) {
    throw new ApsError('APS_ERR_USAGE', `"${ifname}" is not an interface name`, { key: '--interface', expected: 'e.g. eth1 or vlan20' });
  }
  if (!fs.existsSync(path.join('/sys/class/net', ifname))) {
    const names = Object.keys(os.networkInterfaces()).filter((n) => n !== 'lo');
    throw new ApsError('APS_ERR_NOT_FOUND', `no network interface ${ifname}`, { key: '--interface', expected: names.length ? `one of ${names.join(', ')}` : 'an interface of this machine' });
  }
  const subnets = interfaceSubnets(ifname);
  if (!subnets.length) {
    throw new ApsError('APS_ERR_USAGE', `${ifname} has no IPv4 address: an ARP scan sends from the interface's own address`, { key: '--interface', expected: 'the interface that serves the voice subnet' });
  }
  const a = parseIpv4(range.first)!;
  const b = parseIpv4(range.last)!;
  const touches = subnets.some((s) => {
    const mask = s.prefix === 0 ? 0 : (~0 << (32 - s.prefix)) >>> 0;
    const lo = (parseIpv4(s.address)! & mask) >>> 0;
    const hi = (lo | (~mask >>> 0)) >>> 0;
    return a <= hi && b >= lo;
  });
  if (!touches) {
    throw new ApsError('APS_ERR_USAGE', `the range ${range.first}-${range.last} is not on the subnet of ${ifname} (${subnets.map((s) => `${s.address}/${s.prefix}`).join(', ')}): ARP reaches only the local link`, {
      key: '--interface', expected: 'a range of the subnet this interface is on',
    });
  }
}

// ------------------------------------------------------------------------------ nmap XML

export interface XmlEvent {
  kind: 'open' | 'close';
  name: string;
  attrs: Record<string, string>;
  /** an element written as <x/> */
  selfClosing: boolean;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function decodeXmlText(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|[a-zA-Z]+);/g, (all, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(code) && code >= 0 && code <= 0x10ffff ? String.fromCodePoint(code) : all;
    }
    return ENTITIES[e] ?? all;
  });
}

/**
 * A streaming reader of the XML nmap writes: element start and end tags with their attributes,
 * in order. Text, comments, processing instructions and the DOCTYPE are skipped. Enough for
 * nmap's output, not a general XML parser (no CDATA, no namespaces). Input is bounded: a tag
 * longer than 64 KiB is an error.
 */
export class XmlTagStream {
  private buf = '';
  constructor(private readonly onEvent: (e: XmlEvent) => void) {}

  feed(chunk: string): void {
    this.buf += chunk;
    for (;;) {
      const lt = this.buf.indexOf('<');
      if (lt < 0) {
        this.buf = '';
        return;
      }
      if (lt > 0) this.buf = this.buf.slice(lt);
      const end = this.tagEnd();
      if (end < 0) {
        if (this.buf.length > 65_536) throw new ApsError('APS_ERR_PROTOCOL', 'nmap XML: a tag longer than 64 KiB');
        return;
      }
      const tag = this.buf.slice(0, end + 1);
      this.buf = this.buf.slice(end + 1);
      this.emit(tag);
    }
  }

  /** Index of the '>' closing the tag at buf[0], or -1 when it has not arrived yet. */
  private tagEnd(): number {
    const b = this.buf;
    if (b.startsWith('<!--')) {
      const i = b.indexOf('-->', 4);
      return i < 0 ? -1 : i + 2;
    }
    if (b.startsWith('<?')) {
      const i = b.indexOf('?>', 2);
      return i < 0 ? -1 : i + 1;
    }
    let quote = '';
    for (let i = 1; i < b.length; i++) {
      const c = b[i];
      if (quote) {
        if (c === quote) quote = '';
      } else if (c === '"' || c === "'") quote = c;
      else if (c === '>') return i;
    }
    return -1;
  }

  private emit(tag: string): void {
    if (tag.startsWith('<!') || tag.startsWith('<?')) return;
    if (tag.startsWith('</')) {
      this.onEvent({ kind: 'close', name: tag.slice(2, -1).trim(), attrs: {}, selfClosing: false });
      return;
    }
    const selfClosing = tag.endsWith('/>');
    const inner = tag.slice(1, selfClosing ? -2 : -1);
    const nm = /^([A-Za-z_][\w.:-]*)/.exec(inner);
    if (!nm) return;
    const attrs: Record<string, string> = {};
    const re = /([A-Za-z_][\w.:-]*)\s*=\s*("([^"]*)"|'([^']*)')/g;
    let m: RegExpExecArray | null;
    const rest = inner.slice(nm[1].length);
    while ((m = re.exec(rest))) attrs[m[1]] = decodeXmlText(m[3] ?? m[4] ?? '');
    this.onEvent({ kind: 'open', name: nm[1], attrs, selfClosing });
    if (selfClosing) this.onEvent({ kind: 'close', name: nm[1], attrs: {}, selfClosing: true });
  }
}

export interface ScanHost {
  ip: string;
  /** null for the scanning machine's own address (nmap reports no MAC for it) */
  mac: Mac | null;
  /** the vendor nmap's own OUI list names, if any */
  macVendor: string;
  state: string;
}

export interface ScanProgress {
  task: string;
  percent: number;
  /** seconds nmap estimates are left */
  remaining?: number;
}

export interface NmapReader {
  feed(chunk: string): void;
  /** hosts so far, in the order nmap reported them */
  hosts: ScanHost[];
  /** nmap's <finished exit="…" errormsg="…"> */
  finished: { exit: string; errormsg: string; elapsed: number } | null;
}

/** Reads nmap -oX output as it arrives: hosts (up, with their MAC) and progress. */
export function nmapReader(on: { host?(h: ScanHost): void; progress?(p: ScanProgress): void } = {}): NmapReader {
  const hosts: ScanHost[] = [];
  let cur: { ip: string; mac: Mac | null; macVendor: string; state: string } | null = null;
  const reader: NmapReader = {
    hosts,
    finished: null,
    feed: (chunk) => xml.feed(chunk),
  };
  const xml = new XmlTagStream((e) => {
    if (e.kind === 'open') {
      switch (e.name) {
        case 'host':
          cur = { ip: '', mac: null, macVendor: '', state: '' };
          break;
        case 'status':
          if (cur) cur.state = e.attrs.state ?? '';
          break;
        case 'address':
          if (!cur) break;
          if (e.attrs.addrtype === 'ipv4') cur.ip = e.attrs.addr ?? '';
          else if (e.attrs.addrtype === 'mac') {
            cur.mac = parseMac(e.attrs.addr ?? '');
            cur.macVendor = e.attrs.vendor ?? '';
          }
          break;
        case 'taskprogress':
          on.progress?.({
            task: e.attrs.task ?? '',
            percent: Number(e.attrs.percent ?? 0),
            remaining: e.attrs.remaining !== undefined ? Number(e.attrs.remaining) : undefined,
          });
          break;
        case 'taskend':
          on.progress?.({ task: e.attrs.task ?? '', percent: 100, remaining: 0 });
          break;
        case 'finished':
          reader.finished = { exit: e.attrs.exit ?? '', errormsg: e.attrs.errormsg ?? '', elapsed: Number(e.attrs.elapsed ?? 0) };
          break;
      }
    } else if (e.name === 'host' && cur) {
      const h: ScanHost = cur;
      cur = null;
      if (h.ip && h.state === 'up') {
        hosts.push(h);
        on.host?.(h);
      }
    }
  });
  return reader;
}

/** Parses a whole nmap XML document (tests, saved scans). */
export function parseNmapXml(text: string): ScanHost[] {
  const r = nmapReader();
  r.feed(text);
  return r.hosts;
}

// ------------------------------------------------------------------------------ running nmap

/** The nmap on PATH, or null. */
export function findNmap(env: NodeJS.ProcessEnv = process.env): string | null {
  for (const d of (env.PATH ?? '').split(':')) {
    if (!d) continue;
    const p = path.join(d, 'nmap');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

export const NMAP_MISSING = 'nmap is not installed: apt-get install nmap';

/** The nmap arguments of an ARP ping sweep of `range` out of `ifname`, XML on stdout. */
export function nmapArgs(range: ScanRange, ifname: string): string[] {
  return ['-sn', '-PR', '-n', '--send-eth', '-e', ifname, '-T4', '--stats-every', '1s', '-oX', '-', ...range.targets];
}

export interface RunScanOptions {
  range: ScanRange;
  ifname: string;
  /** nmap to run; default the one on PATH */
  nmap?: string;
  onHost?(h: ScanHost): void;
  onProgress?(p: ScanProgress): void;
  /** default: 60 s plus 20 ms per address */
  timeoutMs?: number;
}

export interface ScanResult {
  hosts: ScanHost[];
  ms: number;
  command: string[];
}

/**
 * Runs nmap and resolves with the live hosts. Throws ApsError: APS_ERR_USAGE when nmap is
 * missing, APS_ERR_CAPTURE when it cannot send (no privileges) or fails.
 */
export function runScan(opts: RunScanOptions): Promise<ScanResult> {
  const nmap = opts.nmap ?? findNmap();
  if (!nmap) return Promise.reject(new ApsError('APS_ERR_USAGE', NMAP_MISSING, { expected: 'nmap on PATH' }));
  const args = nmapArgs(opts.range, opts.ifname);
  const timeoutMs = opts.timeoutMs ?? 60_000 + 20 * opts.range.count;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(nmap, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const reader = nmapReader({ host: opts.onHost, progress: opts.onProgress });
    let stderr = '';
    let parseError: Error | null = null;
    let timedOut = false;
    let spawnError: Error | null = null;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (parseError) return;
      try {
        reader.feed(d);
      } catch (e) {
        parseError = e as Error;
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += d.toString('utf8');
    });
    child.on('error', (e) => (spawnError = e));
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, timeoutMs);
    // apsctl interrupted: nmap goes with it
    const onSignal = () => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGTERM');
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      const said = stderr.trim().split('\n').filter(Boolean).slice(-3).join(' / ');
      if (spawnError) {
        const c = (spawnError as NodeJS.ErrnoException).code;
        return reject(c === 'ENOENT' ? new ApsError('APS_ERR_USAGE', NMAP_MISSING) : new ApsError('APS_ERR_CAPTURE', `cannot run ${nmap}: ${c ?? spawnError.message}`));
      }
      if (timedOut) return reject(new ApsError('APS_ERR_CAPTURE', `nmap did not finish within ${Math.round(timeoutMs / 1000)} s`, { expected: 'a smaller range' }));
      if (code !== 0 || signal) {
        const root = process.getuid?.() === 0 ? '' : ' (an ARP scan needs root, or CAP_NET_RAW and CAP_NET_ADMIN for nmap)';
        return reject(new ApsError('APS_ERR_CAPTURE', `nmap failed${signal ? ` (${signal})` : ` with exit status ${code}`}: ${said || 'no message'}${root}`));
      }
      if (parseError) return reject(new ApsError('APS_ERR_CAPTURE', `cannot read nmap's output: ${(parseError as Error).message}`));
      if (reader.finished && reader.finished.exit !== 'success') {
        return reject(new ApsError('APS_ERR_CAPTURE', `nmap: ${reader.finished.errormsg || said || 'the scan failed'}`));
      }
      resolve({ hosts: reader.hosts, ms: Math.round(performance.now() - started), command: [nmap, ...args] });
    });
  });
}
