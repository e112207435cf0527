/**
 * The state database (SQLite, WAL, state_dir/aps.db). The only module with SQL in it.
 * Every multi-row write is one transaction; a kill -9 at any point leaves a consistent file.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import type { Logger } from '../log.js';
import { ApsError, describeError } from '../errors.js';
import type { Mac } from '../mac.js';
import { MIGRATIONS } from './migrations.js';

export type DeviceState = 'unprovisioned' | 'provisioned' | 'disabled';

export interface DeviceRow {
  mac: Mac;
  tenant: string;
  vendor: string;
  model: string;
  template: string | null;
  state: DeviceState;
  label: string;
  source: string;
  created_at: number;
  updated_at: number;
  seen_at: number | null;
  last_ip: string | null;
  /** the firmware version the phone last reported (User-Agent), if any */
  firmware: string | null;
  /** the protocol of its last fetch: http, https, tftp (null: seen by discovery only) */
  seen_proto: string | null;
  /** a base of a multicell DECT system: the MAC of the base whose configuration it is served */
  shares_with: string | null;
  rev: number;
}

export interface LineRow {
  mac: Mac;
  idx: number;
  extension: string;
  label: string;
  cid_source: string;
  local_port: string;
  srtp: number;
}

export interface LeaseRow {
  mac: Mac;
  ip: string;
  interface: string;
  source: string;
  expires_at: number;
  seen_at: number;
}

export interface CredentialsRow {
  mac: Mac;
  username: string;
  password: string;
  created_at: number;
}

export interface BanRow {
  ip: string;
  until: number;
  reason: string;
  count: number;
  created_at: number;
}

/** A fresh per-device credential pair: a user name from the MAC, a 20-character random password. */
export function newCredentials(mac: Mac): { username: string; password: string } {
  return { username: `aps${mac}`, password: crypto.randomBytes(15).toString('base64url') };
}

/** The secret of a device's own SIP account while it is unprovisioned (made with the device). */
export function newUnprovSecret(): string {
  return crypto.randomBytes(18).toString('base64url');
}

/** The name a device's unprov account is first given; the PIN service renames it to [provisioning] unprov_prefix + MAC. */
export const DEFAULT_UNPROV_PREFIX = 'unprov-';

export interface NewDevice {
  mac: Mac;
  tenant: string;
  vendor: string;
  model: string;
  template: string | null;
  state?: DeviceState;
  label?: string;
  source?: string;
}

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * A failed SQLite call as an administrator reads it: why the database cannot be written (disk
 * full, read-only, busy past the busy timeout, I/O error) and that nothing was changed (every
 * write is one transaction). null when `e` is not a database error.
 */
export function storeFailure(e: unknown, file: string): ApsError | null {
  const code = (e as { code?: unknown })?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return null;
  const dir = path.dirname(file);
  const why =
    code === 'SQLITE_FULL' ? `disk full on ${dir}`
    : code.startsWith('SQLITE_READONLY') ? `read-only: ${file}`
    : code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED') ? `busy: another writer held ${file} past the ${BUSY_TIMEOUT_MS / 1000} s busy timeout`
    : code.startsWith('SQLITE_IOERR') || code === 'SQLITE_CANTOPEN' ? `${code} on ${file}`
    : null;
  if (!why) return new ApsError('APS_ERR_STORE', `the state database failed (${code} on ${file}): ${(e as Error).message}`, { db: file });
  return new ApsError('APS_ERR_STORE', `the state database cannot be written (${why}): nothing was changed`, { db: file, sqlite: code });
}

/** How long a writer waits for another one's lock before giving up. */
export const BUSY_TIMEOUT_MS = 5000;

export class Store {
  readonly db: Database.Database;
  private readonly q;
  /** device rows by MAC (null = known absent), when opened with { cache: true } */
  private readonly devCache: Map<string, DeviceRow | null> | null;
  /** the devices' own credentials by MAC (null = none), with the same lifetime as devCache: every request with secrets asks */
  private readonly credCache: Map<string, CredentialsRow | null> | null;
  private lastDataVersion = 0;
  private readonly dataVersionStmt;

  private constructor(db: Database.Database, cache: boolean) {
    this.db = db;
    this.devCache = cache ? new Map() : null;
    this.credCache = cache ? new Map() : null;
    this.dataVersionStmt = db.prepare('PRAGMA data_version').pluck();
    this.lastDataVersion = this.dataVersionStmt.get() as number;
    this.q = {
      device: db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE mac = ?'),
      lines: db.prepare<[string], LineRow>('SELECT * FROM lines WHERE mac = ? ORDER BY idx'),
      insertDevice: db.prepare(
        `INSERT INTO devices (mac, tenant, vendor, model, template, state, label, source, created_at, updated_at)
         VALUES (@mac, @tenant, @vendor, @model, @template, @state, @label, @source, @now, @now)`,
      ),
      deleteDevice: db.prepare('DELETE FROM devices WHERE mac = ?'),
      bump: db.prepare('UPDATE devices SET rev = rev + 1, updated_at = ? WHERE mac = ?'),
      upsertLine: db.prepare(
        `INSERT INTO lines (mac, idx, extension, label, cid_source, local_port, srtp)
         VALUES (@mac, @idx, @extension, @label, @cid_source, @local_port, @srtp)
         ON CONFLICT (mac, idx) DO UPDATE SET extension = excluded.extension, label = excluded.label,
           cid_source = excluded.cid_source, local_port = excluded.local_port, srtp = excluded.srtp`,
      ),
      deleteLine: db.prepare('DELETE FROM lines WHERE mac = ? AND idx = ?'),
      lineByExtension: db.prepare<[string, string], LineRow & { tenant: string }>(
        'SELECT l.*, d.tenant FROM lines l JOIN devices d ON d.mac = l.mac WHERE l.extension = ? AND d.tenant = ?',
      ),
      lease: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE mac = ?'),
      upsertLease: db.prepare(
        `INSERT INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (@mac, @ip, @interface, @source, @expires_at, @seen_at)
         ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, interface = excluded.interface, source = excluded.source,
           expires_at = excluded.expires_at, seen_at = excluded.seen_at`,
      ),
      event: db.prepare('INSERT INTO events (at, kind, mac, detail) VALUES (?, ?, ?, ?)'),
      creds: db.prepare<[string], CredentialsRow>('SELECT * FROM credentials WHERE mac = ?'),
      insertUnprov: db.prepare('INSERT OR IGNORE INTO unprov_accounts (mac, account, secret, created_at) VALUES (?, ?, ?, ?)'),
      putCreds: db.prepare(
        `INSERT INTO credentials (mac, username, password, created_at) VALUES (@mac, @username, @password, @now)
         ON CONFLICT (mac) DO UPDATE SET username = excluded.username, password = excluded.password, created_at = excluded.created_at`,
      ),
      bans: db.prepare<[number], BanRow>('SELECT * FROM bans WHERE until > ? ORDER BY until DESC'),
      putBan: db.prepare(
        `INSERT INTO bans (ip, until, reason, count, created_at) VALUES (@ip, @until, @reason, @count, @now)
         ON CONFLICT (ip) DO UPDATE SET until = excluded.until, reason = excluded.reason, count = excluded.count, created_at = excluded.created_at`,
      ),
      liftBan: db.prepare('DELETE FROM bans WHERE ip = ?'),
      purgeBans: db.prepare('DELETE FROM bans WHERE until <= ?'),
      seen: db.prepare('UPDATE devices SET seen_at = ?, last_ip = ? WHERE mac = ?'),
    };
  }

  /**
   * Opens (creating if needed) state_dir/aps.db and brings its schema up to date.
   * `cache: true` (apsd) keeps device rows in memory; call pollChanges() often so that
   * writes by other processes (apsctl) are seen.
   */
  static open(stateDir: string, opts: { readonly?: boolean; cache?: boolean } = {}): Store {
    const file = path.join(stateDir, 'aps.db');
    let db: Database.Database;
    try {
      fs.mkdirSync(stateDir, { recursive: true, mode: 0o750 });
      db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      if (!opts.readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        // statement journals of nested transactions (savepoints) in memory, not in temp files
        db.pragma('temp_store = MEMORY');
      }
      db.pragma('foreign_keys = ON');
    } catch (e) {
      throw new ApsError('APS_ERR_STORE', `cannot open the state database: ${(e as Error).message}`, { file });
    }
    if (!opts.readonly) migrate(db, file);
    return new Store(db, opts.cache ?? false);
  }

  /** The database file. */
  get file(): string {
    return this.db.name;
  }

  /** `e` as the ApsError an administrator reads, when it is a database error (storeFailure). */
  failure(e: unknown): ApsError | null {
    return e instanceof ApsError ? null : storeFailure(e, this.file);
  }

  private readonly failed = { count: 0, since: 0, lastLog: 0 };
  /** writes apsd could not make since it started (disk full, read-only, busy) */
  get writeFailures(): number {
    return this.failed.count;
  }

  /**
   * Counts a write that could not be made and logs it at most once a minute (with how many
   * since the last line), never per request: serving goes on without it.
   */
  writeFailed(what: string, e: unknown, log: Pick<Logger, 'error'>): void {
    this.failed.count++;
    this.failed.since++;
    const now = Date.now();
    if (now - this.failed.lastLog < 60_000) return;
    this.failed.lastLog = now;
    log.error('state database writes failing: serving goes on without them', { what, failed: this.failed.since, total: this.failed.count, err: describeError(this.failure(e) ?? e) });
    this.failed.since = 0;
  }

  /** Drops cached rows when another connection has committed since the last call. */
  pollChanges(): boolean {
    const v = this.dataVersionStmt.get() as number;
    if (v === this.lastDataVersion) return false;
    this.lastDataVersion = v;
    this.devCache?.clear();
    this.credCache?.clear();
    return true;
  }

  private written(): void {
    this.devCache?.clear();
    this.credCache?.clear();
  }

  /** Drops one device's cached row (a write that kept the cache changed it in a way that matters to rendering: the firmware it reports). */
  forget(mac: Mac): void {
    this.devCache?.delete(mac);
  }

  close(): void {
    this.db.close();
  }

  device(mac: Mac): DeviceRow | undefined {
    const c = this.devCache;
    if (!c) return this.q.device.get(mac);
    const hit = c.get(mac);
    if (hit !== undefined) return hit ?? undefined;
    const row = this.q.device.get(mac);
    if (c.size >= 200_000) c.clear();
    c.set(mac, row ?? null);
    return row;
  }

  lines(mac: Mac): LineRow[] {
    return this.q.lines.all(mac);
  }

  devices(filter: { tenant?: string; state?: DeviceState; vendor?: string } = {}): DeviceRow[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.tenant) { where.push('tenant = ?'); args.push(filter.tenant); }
    if (filter.state) { where.push('state = ?'); args.push(filter.state); }
    if (filter.vendor) { where.push('vendor = ?'); args.push(filter.vendor); }
    const sql = `SELECT * FROM devices ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY tenant, mac`;
    return this.db.prepare<string[], DeviceRow>(sql).all(...args);
  }

  /**
   * Runs `fn` as one write transaction that takes the write lock up front (BEGIN IMMEDIATE):
   * a second writer (another apsctl, apsd) waits its turn within the busy timeout instead of
   * failing half-way; all of `fn` is written, or nothing.
   */
  transaction<T>(fn: () => T, opts: { keepCache?: boolean } = {}): T {
    // a write that changes no device's configuration (observations, last contact) keeps the cached rows
    if (!opts.keepCache) this.written();
    return this.db.transaction(fn).immediate();
  }

  /** Every lease apsd knows: captured ones, and the built-in server's bound and offered ones. */
  leaseList(): { mac: string; ip: string; interface: string; source: string; expires_at: number; state: string }[] {
    return [
      ...(this.db.prepare("SELECT mac, ip, interface, source, expires_at, 'bound' AS state FROM leases WHERE source != 'dhcp-server' ORDER BY ip").all() as never[]),
      ...(this.db.prepare(
        `SELECT d.mac, d.ip, COALESCE(l.interface, '') AS interface, 'dhcp-server' AS source, d.expires_at, d.state
         FROM dhcp_leases d LEFT JOIN leases l ON l.mac = d.mac AND l.ip = d.ip AND l.source = 'dhcp-server'
         WHERE d.state IN ('bound', 'offered') ORDER BY d.ip`,
      ).all() as never[]),
    ];
  }

  countDevices(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM devices').get() as { n: number }).n;
  }

  addDevice(d: NewDevice): DeviceRow {
    this.written();
    const now = Date.now();
    const tx = this.db.transaction(() => {
      if (this.q.device.get(d.mac)) {
        throw new ApsError('APS_ERR_EXISTS', `device ${d.mac} already exists`, { key: d.mac });
      }
      this.q.insertDevice.run({
        mac: d.mac, tenant: d.tenant, vendor: d.vendor, model: d.model, template: d.template,
        state: d.state ?? 'provisioned', label: d.label ?? '', source: d.source ?? 'cli', now,
      });
      this.q.putCreds.run({ mac: d.mac, ...newCredentials(d.mac), now });
      this.q.insertUnprov.run(d.mac, DEFAULT_UNPROV_PREFIX + d.mac, newUnprovSecret(), now);
      this.q.event.run(now, 'device.added', d.mac, `tenant=${d.tenant} vendor=${d.vendor} model=${d.model}`);
    });
    tx.immediate();
    return this.device(d.mac)!;
  }

  /** Adds many devices in one transaction: all or none. */
  addDevices(list: NewDevice[]): void {
    this.written();
    const now = Date.now();
    this.db.transaction(() => {
      for (const d of list) {
        this.q.insertDevice.run({
          mac: d.mac, tenant: d.tenant, vendor: d.vendor, model: d.model, template: d.template,
          state: d.state ?? 'provisioned', label: d.label ?? '', source: d.source ?? 'cli', now,
        });
        this.q.putCreds.run({ mac: d.mac, ...newCredentials(d.mac), now });
        this.q.insertUnprov.run(d.mac, DEFAULT_UNPROV_PREFIX + d.mac, newUnprovSecret(), now);
      }
    }).immediate();
  }

  removeDevice(mac: Mac): boolean {
    this.written();
    const now = Date.now();
    return this.db.transaction(() => {
      const r = this.q.deleteDevice.run(mac);
      if (r.changes) this.q.event.run(now, 'device.removed', mac, '');
      return r.changes > 0;
    }).immediate();
  }

  updateDevice(mac: Mac, patch: Partial<Pick<DeviceRow, 'tenant' | 'template' | 'model' | 'label' | 'state' | 'shares_with'>>): DeviceRow {
    this.written();
    const keys = Object.keys(patch).filter((k) => (patch as Record<string, unknown>)[k] !== undefined);
    const now = Date.now();
    this.db.transaction(() => {
      if (!this.q.device.get(mac)) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${mac}`, { key: mac });
      if (keys.length) {
        const set = keys.map((k) => `${k} = @${k}`).join(', ');
        this.db.prepare(`UPDATE devices SET ${set}, rev = rev + 1, updated_at = @now WHERE mac = @mac`).run({ ...patch, mac, now });
        this.q.event.run(now, 'device.updated', mac, keys.join(','));
      }
    }).immediate();
    return this.device(mac)!;
  }

  setLine(l: Omit<LineRow, 'srtp'> & { srtp: boolean }): void {
    this.written();
    const now = Date.now();
    this.db.transaction(() => {
      if (!this.q.device.get(l.mac)) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${l.mac}`, { key: l.mac });
      this.q.upsertLine.run({ ...l, srtp: l.srtp ? 1 : 0 });
      this.q.bump.run(now, l.mac);
      this.q.event.run(now, 'line.set', l.mac, `line=${l.idx} extension=${l.extension}`);
    }).immediate();
  }

  removeLine(mac: Mac, idx: number): boolean {
    this.written();
    const now = Date.now();
    return this.db.transaction(() => {
      const r = this.q.deleteLine.run(mac, idx);
      if (r.changes) {
        this.q.bump.run(now, mac);
        this.q.event.run(now, 'line.removed', mac, `line=${idx}`);
      }
      return r.changes > 0;
    }).immediate();
  }

  /** The line (if any) of a tenant's device that holds this extension. */
  lineWithExtension(tenant: string, extension: string): (LineRow & { tenant: string }) | undefined {
    return this.q.lineByExtension.get(extension, tenant);
  }

  /** The device's own HTTP credentials (made with the device). */
  credentials(mac: Mac): CredentialsRow | undefined {
    const c = this.credCache;
    if (!c) return this.q.creds.get(mac);
    const hit = c.get(mac);
    if (hit !== undefined) return hit ?? undefined;
    const row = this.q.creds.get(mac);
    if (c.size >= 200_000) c.clear();
    c.set(mac, row ?? null);
    return row;
  }

  /** New credentials for a device; the old ones stop working at once. */
  rotateCredentials(mac: Mac): CredentialsRow {
    const now = Date.now();
    this.written();
    this.db.transaction(() => {
      if (!this.q.device.get(mac)) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${mac}`, { key: mac });
      this.q.putCreds.run({ mac, ...newCredentials(mac), now });
      this.q.bump.run(now, mac);
      this.q.event.run(now, 'credentials.rotated', mac, '');
    }).immediate();
    return this.credentials(mac)!;
  }

  activeBans(now = Date.now()): BanRow[] {
    return this.q.bans.all(now);
  }

  putBan(b: Omit<BanRow, 'created_at'>): void {
    this.q.putBan.run({ ...b, now: Date.now() });
  }

  liftBan(ip: string): boolean {
    return this.q.liftBan.run(ip).changes > 0;
  }

  purgeBans(now = Date.now()): void {
    this.q.purgeBans.run(now);
  }

  lease(mac: Mac): LeaseRow | undefined {
    return this.q.lease.get(mac);
  }

  putLease(l: LeaseRow): void {
    this.q.upsertLease.run(l);
  }

  noteSeen(mac: Mac, ip: string, at = Date.now()): void {
    this.q.seen.run(at, ip, mac);
  }

  event(kind: string, mac: Mac | null, detail = ''): void {
    this.q.event.run(Date.now(), kind, mac, detail);
  }

  events(limit = 50): { id: number; at: number; kind: string; mac: string | null; detail: string }[] {
    return this.db.prepare('SELECT * FROM events ORDER BY id DESC LIMIT ?').all(limit) as never;
  }
}

export function migrate(db: Database.Database, file = ''): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new ApsError('APS_ERR_STORE', `the database is at schema version ${current}, newer than this apsd knows (${MIGRATIONS.length})`, {
      file, expected: 'an apsd at least as new as the one that wrote the database',
    });
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    try {
      db.transaction(() => {
        db.exec(MIGRATIONS[v]);
        db.pragma(`user_version = ${v + 1}`);
      }).immediate();
    } catch (e) {
      throw new ApsError('APS_ERR_STORE', `migration to schema version ${v + 1} failed: ${(e as Error).message}`, { file });
    }
  }
}
