/**
 * Firmware in the state database: the catalogue of images (file in firmware_dir, vendor, models,
 * version, size, sha256), per-device overrides (the image a rollout's wave or a rollback points a
 * phone at, beside its template's), and rollouts with each phone's wave and state. Every change
 * that alters what a phone's config says bumps that device's revision (the render cache follows).
 */
import { ApsError } from '../errors.js';
import type { Mac } from '../mac.js';
import type { DeviceRow, Store } from './index.js';

export interface FirmwareImageRow {
  file: string;
  vendor: string;
  /** model ids, comma-separated */
  models: string;
  version: string;
  size: number;
  sha256: string;
  added_at: number;
}

export interface FirmwareOverrideRow {
  mac: Mac;
  version: string;
  rollout: number | null;
  set_at: number;
}

export type RolloutState = 'running' | 'paused' | 'halted' | 'done' | 'aborted' | 'rolledback';
export type RolloutDeviceState = 'pending' | 'sent' | 'upgraded' | 'failed' | 'rolledback';

export interface RolloutRow {
  id: number;
  version: string;
  vendor: string;
  /** model ids, comma-separated */
  models: string;
  tenant: string | null;
  /** JSON array of cumulative percentages, e.g. [5,25,100] */
  waves: string;
  window: string;
  max_failed: number;
  soak_ms: number;
  upgrade_limit_ms: number | null;
  state: RolloutState;
  reason: string;
  /** the wave under way (0-based) */
  wave: number;
  wave_started_at: number | null;
  wave_done_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface RolloutDeviceRow {
  rollout: number;
  mac: Mac;
  wave: number;
  state: RolloutDeviceState;
  from_version: string | null;
  started_at: number | null;
  notified_at: number | null;
  done_at: number | null;
}

export interface RolloutDeviceView extends RolloutDeviceRow {
  vendor: string;
  model: string;
  firmware: string | null;
  seen_at: number | null;
}

export type NewRollout = Omit<RolloutRow, 'id' | 'state' | 'reason' | 'wave' | 'wave_started_at' | 'wave_done_at' | 'created_at' | 'updated_at'>;

export class FirmwareStore {
  private readonly q;

  constructor(private readonly store: Store) {
    const db = store.db;
    this.q = {
      images: db.prepare<[], FirmwareImageRow>('SELECT * FROM firmware_images ORDER BY vendor, version, file'),
      image: db.prepare<[string], FirmwareImageRow>('SELECT * FROM firmware_images WHERE file = ?'),
      insertImage: db.prepare('INSERT INTO firmware_images (file, vendor, models, version, size, sha256, added_at) VALUES (@file, @vendor, @models, @version, @size, @sha256, @added_at)'),
      deleteImage: db.prepare('DELETE FROM firmware_images WHERE file = ?'),
      bumpVendor: db.prepare('UPDATE devices SET rev = rev + 1, updated_at = ? WHERE vendor = ?'),
      bump: db.prepare('UPDATE devices SET rev = rev + 1, updated_at = ? WHERE mac = ?'),
      override: db.prepare<[string], FirmwareOverrideRow>('SELECT * FROM firmware_overrides WHERE mac = ?'),
      overrides: db.prepare<[], FirmwareOverrideRow>('SELECT * FROM firmware_overrides'),
      putOverride: db.prepare(
        `INSERT INTO firmware_overrides (mac, version, rollout, set_at) VALUES (@mac, @version, @rollout, @now)
         ON CONFLICT (mac) DO UPDATE SET version = excluded.version, rollout = excluded.rollout, set_at = excluded.set_at`,
      ),
      dropOverride: db.prepare('DELETE FROM firmware_overrides WHERE mac = ?'),
      versions: db.prepare<[], { vendor: string; model: string; firmware: string | null; n: number }>(
        'SELECT vendor, model, firmware, count(*) AS n FROM devices GROUP BY vendor, model, firmware ORDER BY vendor, model, firmware',
      ),
      insertRollout: db.prepare(
        `INSERT INTO rollouts (version, vendor, models, tenant, waves, window, max_failed, soak_ms, upgrade_limit_ms, state, created_at, updated_at)
         VALUES (@version, @vendor, @models, @tenant, @waves, @window, @max_failed, @soak_ms, @upgrade_limit_ms, 'running', @now, @now)`,
      ),
      insertRolloutDevice: db.prepare('INSERT INTO rollout_devices (rollout, mac, wave, state, from_version) VALUES (?, ?, ?, \'pending\', ?)'),
      rollout: db.prepare<[number], RolloutRow>('SELECT * FROM rollouts WHERE id = ?'),
      rollouts: db.prepare<[], RolloutRow>('SELECT * FROM rollouts ORDER BY id'),
      active: db.prepare<[], RolloutRow>("SELECT * FROM rollouts WHERE state IN ('running', 'paused', 'halted') ORDER BY id"),
      rolloutDevices: db.prepare<[number], RolloutDeviceView>(
        `SELECT r.*, d.vendor, d.model, d.firmware, d.seen_at FROM rollout_devices r JOIN devices d ON d.mac = r.mac
         WHERE r.rollout = ? ORDER BY r.wave, r.mac`,
      ),
      activeOfMac: db.prepare<[string], { id: number }>(
        "SELECT r.id FROM rollouts r JOIN rollout_devices x ON x.rollout = r.id WHERE x.mac = ? AND r.state IN ('running', 'paused', 'halted')",
      ),
      setDevice: db.prepare('UPDATE rollout_devices SET state = @state, started_at = coalesce(@started_at, started_at), done_at = @done_at WHERE rollout = @rollout AND mac = @mac'),
      notified: db.prepare('UPDATE rollout_devices SET notified_at = ? WHERE rollout = ? AND mac = ?'),
      unnotified: db.prepare<[], { rollout: number; mac: Mac }>(
        "SELECT rollout, mac FROM rollout_devices WHERE notified_at IS NULL AND state IN ('sent', 'rolledback')",
      ),
      clearNotified: db.prepare('UPDATE rollout_devices SET notified_at = NULL WHERE rollout = ? AND mac = ?'),
      setRollout: db.prepare(
        `UPDATE rollouts SET state = @state, reason = @reason, wave = @wave, wave_started_at = @wave_started_at, wave_done_at = @wave_done_at, updated_at = @now WHERE id = @id`,
      ),
    };
  }

  images(): FirmwareImageRow[] {
    return this.q.images.all();
  }

  image(file: string): FirmwareImageRow | undefined {
    return this.q.image.get(file);
  }

  /** Records an image (its file already in firmware_dir); the vendor's phones get a new revision. */
  addImage(row: FirmwareImageRow): void {
    this.store.transaction(() => {
      if (this.q.image.get(row.file)) throw new ApsError('APS_ERR_EXISTS', `firmware ${row.file} is already in the catalogue`, { key: row.file });
      this.q.insertImage.run(row);
      this.q.bumpVendor.run(Date.now(), row.vendor);
      this.store.event('firmware.added', null, `file=${row.file} vendor=${row.vendor} version=${row.version} models=${row.models}`);
    });
  }

  removeImage(file: string): boolean {
    return this.store.transaction(() => {
      const row = this.q.image.get(file);
      if (!row) return false;
      this.q.deleteImage.run(file);
      this.q.bumpVendor.run(Date.now(), row.vendor);
      this.store.event('firmware.removed', null, `file=${file}`);
      return true;
    });
  }

  override(mac: Mac): FirmwareOverrideRow | undefined {
    return this.q.override.get(mac);
  }

  overrides(): FirmwareOverrideRow[] {
    return this.q.overrides.all();
  }

  /** Phones per vendor, model and reported firmware version. */
  versionCounts(): { vendor: string; model: string; firmware: string | null; n: number }[] {
    return this.q.versions.all();
  }

  rollout(id: number): RolloutRow | undefined {
    return this.q.rollout.get(id);
  }

  rollouts(): RolloutRow[] {
    return this.q.rollouts.all();
  }

  /** Rollouts not finished: running, paused, halted. */
  activeRollouts(): RolloutRow[] {
    return this.q.active.all();
  }

  rolloutDevices(id: number): RolloutDeviceView[] {
    return this.q.rolloutDevices.all(id);
  }

  /** The unfinished rollout a device is part of, if any. */
  activeRolloutOf(mac: Mac): number | undefined {
    return this.q.activeOfMac.get(mac)?.id;
  }

  /** A rollout and its phones, each with its wave and the version it reported before, in one transaction. */
  createRollout(r: NewRollout, devices: { mac: Mac; wave: number; from: string | null }[]): number {
    return this.store.transaction(() => {
      const now = Date.now();
      for (const d of devices) {
        const other = this.q.activeOfMac.get(d.mac);
        if (other) throw new ApsError('APS_ERR_EXISTS', `device ${d.mac} is already in rollout ${other.id}`, { expected: 'finish, abort or roll back that rollout first' });
      }
      const id = Number(this.q.insertRollout.run({ ...r, now }).lastInsertRowid);
      for (const d of devices) this.q.insertRolloutDevice.run(id, d.mac, d.wave, d.from);
      this.store.event('rollout.started', null, `rollout=${id} version=${r.version} vendor=${r.vendor} models=${r.models} phones=${devices.length}`);
      return id;
    });
  }

  /**
   * One step of a rollout, written whole or not at all: its new state, phone states, and the
   * overrides to set (a version) or drop (null), each bumping that device's revision.
   */
  step(s: {
    rollout: Pick<RolloutRow, 'id' | 'state' | 'reason' | 'wave' | 'wave_started_at' | 'wave_done_at'>;
    devices?: { mac: Mac; state: RolloutDeviceState; started_at?: number | null; done_at?: number | null }[];
    overrides?: { mac: Mac; version: string | null }[];
    event?: string;
  }): void {
    this.store.transaction(() => {
      const now = Date.now();
      this.q.setRollout.run({ ...s.rollout, now });
      for (const d of s.devices ?? []) this.q.setDevice.run({ rollout: s.rollout.id, mac: d.mac, state: d.state, started_at: d.started_at ?? null, done_at: d.done_at ?? null });
      for (const o of s.overrides ?? []) {
        if (o.version === null) this.q.dropOverride.run(o.mac);
        else this.q.putOverride.run({ mac: o.mac, version: o.version, rollout: s.rollout.id, now });
        this.q.bump.run(now, o.mac);
      }
      if (s.event) this.store.event(s.event, null, `rollout=${s.rollout.id} wave=${s.rollout.wave + 1} state=${s.rollout.state}${s.rollout.reason ? ` reason=${s.rollout.reason}` : ''}`);
    });
  }

  /** Phones of a started wave, a retry or a rollback that have not been told to resync yet. */
  unnotified(): { rollout: number; mac: Mac }[] {
    return this.q.unnotified.all();
  }

  clearNotified(rollout: number, macs: Mac[]): void {
    this.store.transaction(() => {
      for (const m of macs) this.q.clearNotified.run(rollout, m);
    }, { keepCache: true });
  }

  /** The phone has been told to resync (after the wave's step was committed). */
  noteNotified(rollout: number, mac: Mac, at = Date.now()): void {
    this.store.transaction(() => this.q.notified.run(at, rollout, mac), { keepCache: true });
  }
}

/** The devices a rollout may take: of the vendor and models (and tenant), not disabled. */
export function rolloutCandidates(store: Store, vendor: string, models: string[], tenant?: string): DeviceRow[] {
  const want = new Set(models.map((m) => m.toLowerCase()));
  return store.devices({ vendor, tenant }).filter((d) => d.state !== 'disabled' && want.has(d.model.toLowerCase()));
}
