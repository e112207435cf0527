/**
 * The built-in DHCP server's address book (table `dhcp_leases`): one row per address it has
 * ever handed out, with the state of that address now: offered, bound, declined (a client
 * found it in use) or released. The server keeps the rows in memory while it runs and writes
 * every change here, so a restart keeps every lease. A bound lease is also written to the
 * `leases` table (source dhcp-server), the MAC ↔ IP proof that captured leases feed too.
 */
import type { Mac } from '../mac.js';
import type { LeaseRow, Store } from './index.js';

export type DhcpLeaseState = 'offered' | 'bound' | 'declined' | 'released';

export interface DhcpLeaseRow {
  ip: string;
  mac: Mac;
  state: DhcpLeaseState;
  /** epoch ms; for declined: until when the address stays out of the pool */
  expires_at: number;
  /** option 61 as hex, or null */
  client_id: string | null;
  hostname: string | null;
  vendor_class: string | null;
  updated_at: number;
}

/** One batch of changes, written in one transaction. */
export interface DhcpLeaseChanges {
  rows: DhcpLeaseRow[];
  /** rows for the `leases` table (bound, or ended by RELEASE/DECLINE: expires_at = now) */
  leases: LeaseRow[];
  /** known devices seen at an address: devices.seen_at / last_ip */
  seen: { mac: Mac; ip: string; at: number }[];
}

export class DhcpLeases {
  private readonly q;

  constructor(private readonly store: Store) {
    const db = store.db;
    this.q = {
      all: db.prepare<[], DhcpLeaseRow>('SELECT * FROM dhcp_leases ORDER BY updated_at, ip'),
      byIp: db.prepare<[string], DhcpLeaseRow>('SELECT * FROM dhcp_leases WHERE ip = ?'),
      byMac: db.prepare<[string], DhcpLeaseRow>('SELECT * FROM dhcp_leases WHERE mac = ? ORDER BY updated_at DESC'),
      upsert: db.prepare(
        `INSERT INTO dhcp_leases (ip, mac, state, expires_at, client_id, hostname, vendor_class, updated_at)
         VALUES (@ip, @mac, @state, @expires_at, @client_id, @hostname, @vendor_class, @updated_at)
         ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, expires_at = excluded.expires_at,
           client_id = excluded.client_id, hostname = excluded.hostname, vendor_class = excluded.vendor_class,
           updated_at = excluded.updated_at`,
      ),
      purgeOffers: db.prepare("DELETE FROM dhcp_leases WHERE state = 'offered' AND expires_at <= ?"),
    };
  }

  /** Every row, oldest change first (so that replaying them leaves each MAC at its latest address). */
  all(): DhcpLeaseRow[] {
    return this.q.all.all();
  }

  byIp(ip: string): DhcpLeaseRow | undefined {
    return this.q.byIp.get(ip);
  }

  /** The rows of one MAC, newest first. */
  byMac(mac: Mac): DhcpLeaseRow[] {
    return this.q.byMac.all(mac);
  }

  /** Writes a batch in one transaction: all or nothing. */
  write(c: DhcpLeaseChanges): void {
    if (!c.rows.length && !c.leases.length && !c.seen.length) return;
    this.store.db.transaction(() => {
      for (const r of c.rows) this.q.upsert.run(r);
      for (const l of c.leases) this.store.putLease(l);
      for (const s of c.seen) if (this.store.device(s.mac)) this.store.noteSeen(s.mac, s.ip, s.at);
    }).immediate();
  }

  /** Drops offers that ran out (an offer is not a lease); returns how many. */
  purgeExpiredOffers(now = Date.now()): number {
    return this.q.purgeOffers.run(now).changes;
  }
}
