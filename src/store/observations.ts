/**
 * Observations: every HTTP, HTTPS and TFTP request that names a MAC, as apsd answered it. Written
 * in batches (one transaction per batch), kept bounded: the last `keep` per device and nothing
 * older than the retention time. They hold no secret: the proof is its kind (lease,
 * credentials …), never a credential, and the file is the name the phone asked for.
 */
import type { Mac } from '../mac.js';
import type { Store } from './index.js';

export interface ObservationRow {
  id: number;
  at: number;
  mac: Mac;
  ip: string;
  /** http | https | tftp */
  proto: string;
  file: string;
  /** 200, 304, 401, 403, 404 … over HTTP; ok or error N over TFTP */
  answer: string;
  /** how the requester proved itself for a file with secrets: certificate, credentials, device-credentials, lease, policy; '' = none needed or none given */
  proof: string;
  user_agent: string;
  ua_vendor: string | null;
  ua_model: string | null;
  ua_firmware: string | null;
  ua_mac: string | null;
}

export type NewObservation = Omit<ObservationRow, 'id'>;

export class Observations {
  private readonly q;

  constructor(private readonly store: Store) {
    const db = store.db;
    this.q = {
      insert: db.prepare(
        `INSERT INTO observations (at, mac, ip, proto, file, answer, proof, user_agent, ua_vendor, ua_model, ua_firmware, ua_mac)
         VALUES (@at, @mac, @ip, @proto, @file, @answer, @proof, @user_agent, @ua_vendor, @ua_model, @ua_firmware, @ua_mac)`,
      ),
      // a device row's contact facts: not a change of its configuration (no rev bump)
      seen: db.prepare(
        `UPDATE devices SET seen_at = max(coalesce(seen_at, 0), @at), last_ip = @ip, seen_proto = @proto,
           firmware = coalesce(@firmware, firmware) WHERE mac = @mac`,
      ),
      // a newly reported firmware changes what the config says (the firmware setting is left out
      // for a phone that runs the version it is pointed at): a new revision, the cached row dropped
      firmwareChanged: db.prepare<{ mac: string; firmware: string | null }>(
        'UPDATE devices SET rev = rev + 1 WHERE mac = @mac AND @firmware IS NOT NULL AND firmware IS NOT @firmware',
      ),
      recent: db.prepare<[string, number], ObservationRow>('SELECT * FROM observations WHERE mac = ? ORDER BY id DESC LIMIT ?'),
      trim: db.prepare<[string, string, number]>(
        'DELETE FROM observations WHERE mac = ? AND id <= (SELECT id FROM observations WHERE mac = ? ORDER BY id DESC LIMIT 1 OFFSET ?)',
      ),
      expire: db.prepare<[number]>('DELETE FROM observations WHERE at < ?'),
    };
  }

  /**
   * Writes a batch in one transaction: the rows, and per device its last contact (time, address,
   * protocol, the firmware its User-Agent named); then keeps only the last `keep` rows of each
   * MAC of the batch.
   */
  write(rows: readonly NewObservation[], keep: number): void {
    if (!rows.length) return;
    this.store.transaction(() => {
      const last = new Map<string, NewObservation>();
      for (const r of rows) {
        this.q.insert.run(r);
        const p = last.get(r.mac);
        if (!p || p.at <= r.at) last.set(r.mac, { ...r, ua_firmware: r.ua_firmware ?? p?.ua_firmware ?? null });
      }
      for (const r of last.values()) {
        // a new firmware may select other parameter names (vendor firmwareVariants) and drops the firmware setting of a phone that runs its image: a new revision, and the next render must see it
        if (r.ua_firmware && this.q.firmwareChanged.run({ mac: r.mac, firmware: r.ua_firmware }).changes) this.store.forget(r.mac);
        this.q.seen.run({ mac: r.mac, at: r.at, ip: r.ip, proto: r.proto, firmware: r.ua_firmware });
        this.q.trim.run(r.mac, r.mac, keep);
      }
    }, { keepCache: true });
  }

  /** Drops observations older than `before` (epoch ms); returns how many. */
  expire(before: number): number {
    return this.store.transaction(() => this.q.expire.run(before).changes, { keepCache: true });
  }

  /** The last `limit` fetches of a device, newest first. */
  recent(mac: Mac, limit = 20): ObservationRow[] {
    return this.q.recent.all(mac, limit);
  }
}
