/**
 * SQL of the PIN registration: attempts per device (pin_state), the per-device accounts of
 * unprovisioned phones (unprov_accounts), and the one transaction that turns an unprovisioned
 * device into an extension's phone.
 *
 * Attempts are reserved before the PIN is checked: a reservation that finds the device locked,
 * or all its attempts taken by earlier failures or by checks still running, is refused. So a
 * burst of concurrent guesses (from one process or several) can never check more than
 * max_attempts PINs per lockout period.
 */
import crypto from 'node:crypto';
import { ApsError } from '../errors.js';
import type { Mac } from '../mac.js';
import { newUnprovSecret, type DeviceRow, type Store } from './index.js';

export interface PinStateRow {
  mac: Mac;
  failures: number;
  locked_until: number;
  last_at: number;
}

export interface UnprovAccountRow {
  mac: Mac;
  account: string;
  secret: string;
  created_at: number;
}

export interface UnprovListRow extends UnprovAccountRow {
  vendor: string;
  model: string;
  tenant: string;
  label: string;
}

export type Reservation = { ok: true; attempt: number } | { ok: false; lockedUntil: number };

export interface AttemptPolicy {
  maxAttempts: number;
  lockoutMs: number;
}

/** A random SIP secret: 18 bytes, 24 characters of base64url (no character pjsip.conf or a phone config treats specially). */

export function unprovAccountName(prefix: string, mac: Mac): string {
  return `${prefix}${mac}`;
}

/** Raised inside the assignment transaction when the extension was taken meanwhile. */
export class ExtensionTaken extends Error {
  constructor(readonly holder: { mac: Mac; idx: number }) {
    super('extension taken');
  }
}

export class PinStore {
  private readonly q;

  constructor(readonly store: Store) {
    const db = store.db;
    this.q = {
      state: db.prepare<[string], PinStateRow>('SELECT * FROM pin_state WHERE mac = ?'),
      putState: db.prepare(
        `INSERT INTO pin_state (mac, failures, locked_until, last_at) VALUES (@mac, @failures, @locked_until, @last_at)
         ON CONFLICT (mac) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until, last_at = excluded.last_at`,
      ),
      clearState: db.prepare('DELETE FROM pin_state WHERE mac = ?'),
      account: db.prepare<[string], UnprovAccountRow>('SELECT * FROM unprov_accounts WHERE mac = ?'),
      byAccount: db.prepare<[string], UnprovAccountRow>('SELECT * FROM unprov_accounts WHERE account = ?'),
      insertAccount: db.prepare('INSERT INTO unprov_accounts (mac, account, secret, created_at) VALUES (?, ?, ?, ?)'),
      renameAccount: db.prepare('UPDATE unprov_accounts SET account = ? WHERE mac = ?'),
      dropAccount: db.prepare('DELETE FROM unprov_accounts WHERE account = ? AND mac <> ?'),
      unprovWithout: db.prepare<[string], { mac: Mac; account: string | null }>(
        `SELECT d.mac, a.account FROM devices d LEFT JOIN unprov_accounts a ON a.mac = d.mac
         WHERE d.state = 'unprovisioned' AND (a.account IS NULL OR a.account <> ? || d.mac)`,
      ),
      list: db.prepare<[], UnprovListRow>(
        `SELECT a.*, d.vendor, d.model, d.tenant, d.label FROM unprov_accounts a JOIN devices d ON d.mac = a.mac
         WHERE d.state = 'unprovisioned' ORDER BY a.account`,
      ),
      signature: db.prepare<[], { n: number; u: number; r: number }>(
        "SELECT count(*) AS n, coalesce(max(updated_at), 0) AS u, coalesce(sum(rev), 0) AS r FROM devices WHERE state = 'unprovisioned'",
      ),
      accountsSignature: db.prepare<[], { n: number; c: number }>('SELECT count(*) AS n, coalesce(max(created_at), 0) + coalesce(sum(length(account)), 0) AS c FROM unprov_accounts'),
      holders: db.prepare<[], { tenant: string; extension: string; mac: Mac; idx: number }>(
        'SELECT d.tenant, l.extension, l.mac, l.idx FROM lines l JOIN devices d ON d.mac = l.mac ORDER BY l.mac, l.idx',
      ),
      event: db.prepare('INSERT INTO events (at, kind, mac, detail) VALUES (?, ?, ?, ?)'),
    };
  }

  // ------------------------------------------------------------------ attempts

  state(mac: Mac): PinStateRow | undefined {
    return this.q.state.get(mac);
  }

  /** The lock in force, if any (0 = none). */
  lockedUntil(mac: Mac, now: number): number {
    const s = this.q.state.get(mac);
    return s && s.locked_until > now ? s.locked_until : 0;
  }

  /**
   * Takes one attempt for a PIN check. Failures older than the lockout period, and an expired
   * lock, are forgotten first. Refused when the device is locked or every attempt is taken.
   */
  reserve(mac: Mac, now: number, policy: AttemptPolicy): Reservation {
    return this.store.db.transaction((): Reservation => {
      const s = this.q.state.get(mac);
      if (s && s.locked_until > now) return { ok: false, lockedUntil: s.locked_until };
      let failures = s?.failures ?? 0;
      if (s && (s.locked_until > 0 || now - s.last_at > policy.lockoutMs)) failures = 0; // a served lock or old failures: a fresh start
      if (failures >= policy.maxAttempts) return { ok: false, lockedUntil: 0 }; // every attempt in flight
      this.q.putState.run({ mac, failures: failures + 1, locked_until: 0, last_at: now });
      return { ok: true, attempt: failures + 1 };
    }).immediate();
  }

  /** A reserved attempt failed: it stays counted; the last allowed one locks the device. Returns the lock end (0 = not locked). */
  fail(mac: Mac, now: number, policy: AttemptPolicy): number {
    return this.store.db.transaction((): number => {
      const s = this.q.state.get(mac);
      const failures = s?.failures ?? 1;
      const until = failures >= policy.maxAttempts ? now + policy.lockoutMs : 0;
      this.q.putState.run({ mac, failures, locked_until: until, last_at: now });
      this.q.event.run(now, until ? 'pin.locked' : 'pin.failed', mac, until ? `failures=${failures} until=${new Date(until).toISOString()}` : `failures=${failures}`);
      return until;
    }).immediate();
  }

  /** A reserved attempt succeeded (the PIN was right) but registration stopped later: give the attempt back. */
  release(mac: Mac, now: number): void {
    this.store.db.transaction(() => {
      const s = this.q.state.get(mac);
      if (!s) return;
      this.q.putState.run({ ...s, failures: Math.max(0, s.failures - 1), last_at: now });
    }).immediate();
  }

  /** Lifts a lock and forgets the failures (apsctl, tests). */
  unlock(mac: Mac): boolean {
    return this.q.clearState.run(mac).changes > 0;
  }

  // ------------------------------------------------------------------ accounts

  account(mac: Mac): UnprovAccountRow | undefined {
    return this.q.account.get(mac);
  }

  byAccount(account: string): UnprovAccountRow | undefined {
    return this.q.byAccount.get(account);
  }

  /**
   * Gives every unprovisioned device its account `<prefix><mac>` with a random secret, in one
   * transaction; an account named with an older prefix is renamed and keeps its secret.
   * Returns how many accounts were made or renamed.
   */
  ensureUnprovAccounts(prefix: string, now = Date.now()): number {
    const todo = this.q.unprovWithout.all(prefix);
    if (!todo.length) return 0;
    this.store.db.transaction(() => {
      for (const d of todo) this.put(d.mac, d.account, prefix, now);
    }).immediate();
    return todo.length;
  }

  /** The device's unprov account as the phone and the PBX know it: <prefix><mac> with the secret made with the device; reads only. */
  unprovAccountOf(mac: Mac, prefix: string): { account: string; secret: string } | undefined {
    const row = this.q.account.get(mac);
    return row ? { account: unprovAccountName(prefix, mac), secret: row.secret } : undefined;
  }

  /** The device's account, made now if it has none (or renamed to the current prefix). */
  unprovAccount(mac: Mac, prefix: string, now = Date.now()): UnprovAccountRow {
    const want = unprovAccountName(prefix, mac);
    const row = this.q.account.get(mac);
    if (row?.account === want) return row;
    this.store.db.transaction(() => this.put(mac, row?.account ?? null, prefix, now)).immediate();
    return this.q.account.get(mac)!;
  }

  private put(mac: Mac, current: string | null, prefix: string, now: number): void {
    const want = unprovAccountName(prefix, mac);
    this.q.dropAccount.run(want, mac); // a stale row of another device cannot hold the name (prefix + mac is unique per mac)
    if (current === null) this.q.insertAccount.run(mac, want, newUnprovSecret(), now);
    else this.q.renameAccount.run(want, mac);
  }

  /** Accounts of the devices that are unprovisioned now, by account name. */
  unprovAccounts(): UnprovListRow[] {
    return this.q.list.all();
  }

  /** Changes whenever the set of unprovisioned devices or of accounts may have changed: cheap enough to ask every few seconds. */
  signature(): string {
    const d = this.q.signature.get()!;
    const a = this.q.accountsSignature.get()!;
    return `${d.n}/${d.u}/${d.r}/${a.n}/${a.c}`;
  }

  /** Every assigned line with its device's tenant (who holds which extension). */
  lineHolders(): { tenant: string; extension: string; mac: Mac; idx: number }[] {
    return this.q.holders.all();
  }

  // ------------------------------------------------------------------ assignment

  /**
   * In one transaction: checks again that the extension is free (throws ExtensionTaken), moves
   * the device to the extension's tenant, makes it provisioned, puts the extension on line 1
   * (keeping the line's caller-ID source, local port and SRTP), writes the audit event and
   * forgets the device's PIN failures.
   */
  assign(mac: Mac, a: { tenant: string; extension: string; shared: boolean; via: string }, now = Date.now()): DeviceRow {
    const store = this.store;
    return store.db.transaction((): DeviceRow => {
      const dev = store.device(mac);
      if (!dev) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${mac}`, { key: mac });
      const holder = store.lineWithExtension(a.tenant, a.extension);
      if (holder && holder.mac !== mac && !a.shared) throw new ExtensionTaken({ mac: holder.mac, idx: holder.idx });
      const line1 = store.lines(mac).find((l) => l.idx === 1);
      store.updateDevice(mac, { tenant: a.tenant, state: 'provisioned' });
      store.setLine({
        mac,
        idx: 1,
        extension: a.extension,
        label: '',
        cid_source: line1?.cid_source ?? 'from',
        local_port: line1?.local_port ?? '',
        srtp: line1?.srtp === 1,
      });
      this.q.event.run(now, 'pin.registered', mac, `extension=${a.extension} tenant=${a.tenant} via=${a.via}${holder && holder.mac !== mac ? ` shared-with=${holder.mac}` : ''}`);
      this.q.clearState.run(mac);
      return store.device(mac)!;
    }).immediate();
  }
}

const stores = new WeakMap<Store, PinStore>();

/** One PinStore per Store (its statements are prepared once). */
export function pinStore(store: Store): PinStore {
  let p = stores.get(store);
  if (!p) {
    p = new PinStore(store);
    stores.set(store, p);
  }
  return p;
}
