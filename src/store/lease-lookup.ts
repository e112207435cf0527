/**
 * Which MAC holds an address right now, by the leases apsd sniffed (table `leases`) or gave
 * out itself (table `dhcp_leases`). For discovery sources that see an address but no MAC
 * (a PnP SUBSCRIBE whose From user is not a MAC).
 */
import type { Mac } from '../mac.js';
import type { Store } from './index.js';

export class LeaseLookup {
  private readonly q;

  constructor(store: Store) {
    const db = store.db;
    this.q = {
      captured: db.prepare<[string, number], string>('SELECT mac FROM leases WHERE ip = ? AND expires_at > ? ORDER BY seen_at DESC LIMIT 1').pluck(),
      served: db.prepare<[string, number], string>("SELECT mac FROM dhcp_leases WHERE ip = ? AND state = 'bound' AND expires_at > ? LIMIT 1").pluck(),
    };
  }

  /** The MAC with a live lease on `ip`, or null. */
  holderOf(ip: string, now = Date.now()): Mac | null {
    return ((this.q.captured.get(ip, now) ?? this.q.served.get(ip, now)) as Mac | undefined) ?? null;
  }
}
