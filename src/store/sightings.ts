/**
 * What discovery saw, one row per MAC (table `sightings`), and the few other writes a sighting
 * makes: the device's last-seen time, and leases that an address moving or a client letting go
 * ends. The inventory (src/inventory/inventory.ts) decides; this file only reads and writes.
 * Statements are prepared once on the Store's connection; callers wrap related writes in
 * `transaction()` so that a sighting and the device it creates land together or not at all.
 */
import type { Mac } from '../mac.js';
import type { Store } from './index.js';

export type SightingStatus = 'pending' | 'ignored' | 'device';
export const SIGHTING_STATUSES: readonly SightingStatus[] = ['pending', 'ignored', 'device'];

export interface SightingRow {
  mac: Mac;
  first_at: number;
  last_at: number;
  count: number;
  /** how it was first seen: dhcp, pnp, scan, import, http … */
  source: string;
  /** the last DHCP message type seen (DISCOVER, OFFER …) */
  msg_type: string | null;
  vendor_class: string | null;
  /** option 55 as comma-separated codes */
  param_list: string | null;
  hostname: string | null;
  /** option 61 as hex */
  client_id: string | null;
  requested_ip: string | null;
  offered_ip: string | null;
  acked_ip: string | null;
  /** giaddr of the relay that forwarded it, if any */
  relay: string | null;
  /** option 82 (relay agent information) as hex */
  option82: string | null;
  interface: string | null;
  vendor: string | null;
  /** the identified model; null when no evidence named one */
  model: string | null;
  /** of the best identification so far (0 none, 1 OUI, 2 vendor class, 3 User-Agent) */
  confidence: number;
  status: SightingStatus;
  reason: string;
}

export class Sightings {
  private readonly q;

  constructor(private readonly store: Store) {
    // (Store.open sets temp_store = MEMORY: a device made inside a sighting's transaction is a
    // savepoint, whose sub-journal would otherwise be a temporary file)
    const db = store.db;
    this.q = {
      get: db.prepare<[string], SightingRow>('SELECT * FROM sightings WHERE mac = ?'),
      put: db.prepare(
        `INSERT INTO sightings (mac, first_at, last_at, count, source, msg_type, vendor_class, param_list, hostname, client_id,
           requested_ip, offered_ip, acked_ip, relay, option82, interface, vendor, model, confidence, status, reason)
         VALUES (@mac, @first_at, @last_at, @count, @source, @msg_type, @vendor_class, @param_list, @hostname, @client_id,
           @requested_ip, @offered_ip, @acked_ip, @relay, @option82, @interface, @vendor, @model, @confidence, @status, @reason)
         ON CONFLICT (mac) DO UPDATE SET first_at = excluded.first_at, last_at = excluded.last_at, count = excluded.count,
           source = excluded.source, msg_type = excluded.msg_type, vendor_class = excluded.vendor_class,
           param_list = excluded.param_list, hostname = excluded.hostname, client_id = excluded.client_id,
           requested_ip = excluded.requested_ip, offered_ip = excluded.offered_ip, acked_ip = excluded.acked_ip,
           relay = excluded.relay, option82 = excluded.option82, interface = excluded.interface, vendor = excluded.vendor,
           model = excluded.model, confidence = excluded.confidence, status = excluded.status, reason = excluded.reason`,
      ),
      update: db.prepare(
        `UPDATE sightings SET first_at = @first_at, last_at = @last_at, count = @count, source = @source, msg_type = @msg_type,
           vendor_class = @vendor_class, param_list = @param_list, hostname = @hostname, client_id = @client_id,
           requested_ip = @requested_ip, offered_ip = @offered_ip, acked_ip = @acked_ip, relay = @relay, option82 = @option82,
           interface = @interface, vendor = @vendor, model = @model, confidence = @confidence, status = @status, reason = @reason
         WHERE mac = @mac`,
      ),
      setStatus: db.prepare('UPDATE sightings SET status = ?, reason = ? WHERE mac = ?'),
      counts: db.prepare<[], { status: SightingStatus; n: number }>('SELECT status, count(*) AS n FROM sightings GROUP BY status'),
      touchDevice: db.prepare('UPDATE devices SET seen_at = ?, last_ip = coalesce(?, last_ip) WHERE mac = ?'),
      leaseOthersOnIp: db.prepare('UPDATE leases SET expires_at = @now WHERE ip = @ip AND mac != @mac AND expires_at > @now'),
      endLease: db.prepare('UPDATE leases SET expires_at = @now, seen_at = @now WHERE mac = @mac AND (@ip IS NULL OR ip = @ip) AND expires_at > @now'),
      seenLease: db.prepare('UPDATE leases SET seen_at = @now WHERE mac = @mac AND ip = @ip'),
    };
  }

  get(mac: Mac): SightingRow | undefined {
    return this.q.get.get(mac);
  }

  /** Inserts or replaces the whole row of `row.mac`. */
  put(row: SightingRow): void {
    this.q.put.run(row);
  }

  /** Replaces the row of `row.mac`, which exists (cheaper than put). */
  update(row: SightingRow): void {
    this.q.update.run(row);
  }

  /** Newest first. */
  list(filter: { status?: SightingStatus; limit?: number } = {}): SightingRow[] {
    const limit = filter.limit ?? -1;
    if (filter.status) {
      return this.store.db.prepare<[string, number], SightingRow>('SELECT * FROM sightings WHERE status = ? ORDER BY last_at DESC, mac LIMIT ?').all(filter.status, limit);
    }
    return this.store.db.prepare<[number], SightingRow>('SELECT * FROM sightings ORDER BY last_at DESC, mac LIMIT ?').all(limit);
  }

  counts(): Record<SightingStatus, number> {
    const out: Record<SightingStatus, number> = { pending: 0, ignored: 0, device: 0 };
    for (const r of this.q.counts.all()) out[r.status] = r.n;
    return out;
  }

  setStatus(mac: Mac, status: SightingStatus, reason: string): boolean {
    return this.q.setStatus.run(status, reason, mac).changes > 0;
  }

  /** The device was seen now; `ip` (when known) becomes its last address. Not a change of its configuration: no rev bump. */
  touchDevice(mac: Mac, at: number, ip: string | null): void {
    this.q.touchDevice.run(at, ip, mac);
  }

  /** An address was just leased to `mac`: whoever else held it holds it no more. Returns how many leases ended. */
  endLeasesOfOthers(ip: string, mac: Mac, now: number): number {
    return this.q.leaseOthersOnIp.run({ ip, mac, now }).changes;
  }

  /** The client let go of its address (RELEASE, DECLINE) or was refused it (NAK): its lease proves nothing from now on. */
  endLease(mac: Mac, ip: string | null, now: number): boolean {
    return this.q.endLease.run({ mac, ip, now }).changes > 0;
  }

  /** An ACK without a lease time (answer to an INFORM) for the address the lease already names. */
  refreshLease(mac: Mac, ip: string, now: number): boolean {
    return this.q.seenLease.run({ mac, ip, now }).changes > 0;
  }

  /** Runs `fn` in one transaction (a savepoint when already inside one). */
  transaction<T>(fn: () => T): T {
    return this.store.db.transaction(fn).immediate();
  }
}
