/**
 * The address pool of the built-in DHCP server: which address a client gets (sticky per MAC,
 * then the requested one, then one never used, then the one that expired longest ago), which
 * are held for an offer, bound, declined or released. In memory; src/store/dhcp-leases.ts
 * keeps it across restarts.
 */
import net from 'node:net';
import { intToIp, ipToInt } from '../net/address.js';
import type { DhcpLeaseRow, DhcpLeaseState } from '../store/dhcp-leases.js';

export interface PoolConfig {
  start: string;
  end: string;
  netmask: string;
  /** never handed out */
  reserved: string[];
}

/**
 * The addresses of the range and what each one is doing, plus each MAC's latest address.
 * Pure bookkeeping: no I/O; the service persists the rows it changes.
 */
export class LeasePool {
  private start = 0;
  private end = -1;
  private mask = 0;
  private reserved = new Set<number>();
  private readonly byIp = new Map<number, DhcpLeaseRow>();
  private readonly byMac = new Map<string, number>();
  private cursor = 0;

  configure(c: PoolConfig): void {
    this.start = ipToInt(c.start);
    this.end = ipToInt(c.end);
    this.mask = ipToInt(c.netmask);
    const net0 = (this.start & this.mask) >>> 0;
    const bcast = (net0 | ~this.mask) >>> 0;
    this.reserved = new Set([net0, bcast, ...c.reserved.filter((x) => net.isIPv4(x)).map(ipToInt)]);
    if (this.cursor < this.start || this.cursor > this.end) this.cursor = this.start;
  }

  get size(): number {
    return Math.max(0, this.end - this.start + 1);
  }

  /** On the range's subnet (a client there may be answered). */
  onSubnet(ip: string): boolean {
    return net.isIPv4(ip) && ((ipToInt(ip) & this.mask) >>> 0) === ((this.start & this.mask) >>> 0);
  }

  inPool(n: number): boolean {
    return n >= this.start && n <= this.end && !this.reserved.has(n);
  }

  /** Loads rows oldest first: each MAC ends at its latest address. */
  load(rows: DhcpLeaseRow[]): void {
    this.byIp.clear();
    this.byMac.clear();
    for (const r of rows) this.put(r);
  }

  get(ip: string): DhcpLeaseRow | undefined {
    return this.byIp.get(ipToInt(ip));
  }

  /** The MAC's latest address (bound, offered or released), if any. */
  addressOf(mac: string): string | undefined {
    const n = this.byMac.get(mac);
    return n === undefined ? undefined : intToIp(n);
  }

  put(r: DhcpLeaseRow): void {
    const n = ipToInt(r.ip);
    this.byIp.set(n, r);
    if (r.state === 'declined') {
      if (this.byMac.get(r.mac) === n) this.byMac.delete(r.mac);
    } else {
      this.byMac.set(r.mac, n);
    }
  }

  /** May `mac` have address `n` now? */
  freeFor(n: number, mac: string, now: number): boolean {
    if (!this.inPool(n)) return false;
    const e = this.byIp.get(n);
    if (!e) return true;
    if (e.state === 'declined') return e.expires_at <= now;
    if (e.mac === mac) return true;
    return e.state === 'released' || e.expires_at <= now;
  }

  /** RFC 2131 §4.3.1: current address, previous address, requested address, a new one. */
  choose(mac: string, requested: string | undefined, now: number): string | null {
    const prev = this.byMac.get(mac);
    if (prev !== undefined && this.freeFor(prev, mac, now)) return intToIp(prev);
    if (requested && net.isIPv4(requested)) {
      const r = ipToInt(requested);
      if (this.freeFor(r, mac, now)) return requested;
    }
    // an address nobody has had: keeps every returning MAC's previous address free for it
    const size = this.size;
    if (size > 0) {
      let n = this.cursor < this.start || this.cursor > this.end ? this.start : this.cursor;
      for (let i = 0; i < size; i++) {
        if (!this.byIp.has(n) && !this.reserved.has(n)) {
          this.cursor = n === this.end ? this.start : n + 1;
          return intToIp(n);
        }
        n = n === this.end ? this.start : n + 1;
      }
    }
    // the address free the longest
    let best: DhcpLeaseRow | undefined;
    for (const [n, e] of this.byIp) {
      if (!this.freeFor(n, mac, now)) continue;
      if (!best || e.expires_at < best.expires_at) best = e;
    }
    return best ? best.ip : null;
  }

  /** Rows in this pool's range, for `describe` and tests. */
  count(state: DhcpLeaseState, now: number): number {
    let c = 0;
    for (const e of this.byIp.values()) if (e.state === state && e.expires_at > now) c++;
    return c;
  }
}
