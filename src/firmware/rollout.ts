/**
 * Firmware rollouts in waves, as a state machine persisted in SQLite (src/store/firmware.ts),
 * driven by apsd's timer (`tick`) and changed by apsctl (start, pause, resume, abort, rollback).
 *
 * start: the phones (vendor, models, tenant; not disabled) are put in waves by MAC order, the
 *   waves' cumulative shares (5%,25%,100%) rounded up; each phone keeps the version it reported.
 * tick, for each running rollout, its current wave:
 *   - not started: inside the window, one transaction points every phone of the wave at the
 *     version (a per-device override) and marks it sent; then each gets a resync.
 *   - under way: a phone that reports the version is upgraded; one not back within the upgrade
 *     limit (--upgrade-limit, else the vendor's firmware.upgradeLimit, else [firmware]
 *     upgrade_limit) is failed; an upgraded phone that reports another version again is failed.
 *     More failed phones than --max-failed allows of the wave: the rollout halts, saying why.
 *   - finished (none sent): watched for --soak, then the next wave; after the last, done.
 * Every step is one transaction, so a restart or a kill -9 neither loses nor repeats a wave;
 * a phone whose resync was not sent before a crash gets it at the next tick (notified_at).
 */
import type { Config } from '../config/index.js';
import { ApsError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import { FirmwareStore, rolloutCandidates, type RolloutDeviceView, type RolloutRow } from '../store/firmware.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import { imageFits, wantedVersion } from './select.js';

export interface RolloutDeps {
  store: Store;
  registry: VendorRegistry;
  config: () => Config;
  log: Logger;
  /** tells a phone to fetch its files again (src/pin/resync.ts) */
  resync?: (mac: Mac) => Promise<{ ok: boolean; reason?: string }>;
  now?: () => number;
}

/** 30s, 30m, 1h, 1d, 500ms, 0; a bare number is seconds. */
export function parseDuration(s: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(s.trim());
  if (!m) throw new ApsError('APS_ERR_USAGE', `${what} "${s}" is not a duration`, { key: what, expected: 'seconds or a number with a unit: 0, 500ms, 30s, 30m, 1h, 1d' });
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 's']);
}

/** "5%,25%,100%" → [5, 25, 100]: cumulative shares, rising, the last 100. */
export function parseWaves(s: string): number[] {
  const w = s.split(',').map((x) => x.trim().replace(/%$/, '')).map(Number);
  const ok = w.length > 0 && w.every((x, i) => Number.isFinite(x) && x > 0 && x <= 100 && (i === 0 || x > w[i - 1])) && w[w.length - 1] === 100;
  if (!ok) throw new ApsError('APS_ERR_USAGE', `--waves "${s}" is not a list of rising shares ending at 100%`, { key: '--waves', expected: 'e.g. 5%,25%,100% (each wave takes the phones up to its share)' });
  return w;
}

/** "01:00-05:00" → minutes of the day; '' = any time. A window may span midnight (22:00-04:00). */
export function parseWindow(s: string): { from: number; to: number } | null {
  if (!s) return null;
  const m = /^([01]?\d|2[0-3]):([0-5]\d)-([01]?\d|2[0-4]):([0-5]\d)$/.exec(s.trim());
  if (!m) throw new ApsError('APS_ERR_USAGE', `--window "${s}" is not a time window`, { key: '--window', expected: 'HH:MM-HH:MM in apsd\'s local time, e.g. 01:00-05:00' });
  return { from: Number(m[1]) * 60 + Number(m[2]), to: Number(m[3]) * 60 + Number(m[4]) };
}

export function inWindow(window: string, at: number): boolean {
  const w = parseWindow(window);
  if (!w) return true;
  const d = new Date(at);
  const min = d.getHours() * 60 + d.getMinutes();
  return w.from <= w.to ? min >= w.from && min < w.to : min >= w.from || min < w.to;
}

/** Phones allowed to fail in a wave of `size` phones at `maxFailed` percent. */
export function allowedFailures(size: number, maxFailed: number): number {
  return Math.floor((size * maxFailed) / 100 + 1e-9);
}

export interface StartOptions {
  version: string;
  vendor?: string;
  models: string[];
  tenant?: string;
  waves: string;
  window?: string;
  maxFailed: string;
  soak: string;
  upgradeLimit?: string;
}

export function startRollout(deps: Pick<RolloutDeps, 'store' | 'registry' | 'config'>, o: StartOptions): { id: number; phones: number; waves: number[] } {
  const fw = new FirmwareStore(deps.store);
  const images = fw.images().filter((i) => i.version === o.version && (!o.vendor || i.vendor === o.vendor));
  if (!images.length) throw new ApsError('APS_ERR_NOT_FOUND', `no image of version ${o.version} in the firmware catalogue${o.vendor ? ` for ${o.vendor}` : ''}`, { expected: 'a VERSION from apsctl firmware list (apsctl firmware add first)' });
  const vendors = [...new Set(images.map((i) => i.vendor))];
  if (vendors.length > 1) throw new ApsError('APS_ERR_USAGE', `version ${o.version} is an image of ${vendors.join(' and ')}`, { key: '--vendor', expected: 'name the vendor with --vendor' });
  const vendor = vendors[0];
  if (!o.models.length) throw new ApsError('APS_ERR_USAGE', 'rollout start needs --models M[,M…]', { key: '--models' });
  const models = o.models.map((m) => {
    const vm = deps.registry.model(vendor, m);
    if (!vm) throw new ApsError('APS_ERR_NOT_FOUND', `${vendor} has no model "${m}"`, { key: '--models' });
    if (!images.some((i) => imageFits(i, vendor, vm.id))) throw new ApsError('APS_ERR_FIRMWARE', `version ${o.version} has no image for model ${vm.id}`, { key: '--models', expected: images.map((i) => `${i.file}: ${i.models}`).join('; ') });
    return vm.id;
  });
  if (o.tenant && !deps.config().tenants.has(o.tenant)) throw new ApsError('APS_ERR_NOT_FOUND', `no tenant "${o.tenant}"`, { key: '--tenant' });
  const waves = parseWaves(o.waves);
  parseWindow(o.window ?? '');
  const maxFailed = Number(o.maxFailed.replace(/%$/, ''));
  if (!Number.isFinite(maxFailed) || maxFailed < 0 || maxFailed > 100) throw new ApsError('APS_ERR_USAGE', `--max-failed "${o.maxFailed}" is not a share`, { key: '--max-failed', expected: 'a percentage from 0% to 100%, e.g. 2%' });
  const soakMs = parseDuration(o.soak, '--soak');
  const upgradeLimitMs = o.upgradeLimit ? parseDuration(o.upgradeLimit, '--upgrade-limit') : null;
  if (upgradeLimitMs !== null && upgradeLimitMs < 1000) throw new ApsError('APS_ERR_USAGE', '--upgrade-limit must be at least 1s', { key: '--upgrade-limit' });
  const devs = rolloutCandidates(deps.store, vendor, models, o.tenant).sort((a, b) => (a.mac < b.mac ? -1 : 1));
  if (!devs.length) throw new ApsError('APS_ERR_NOT_FOUND', `no phone of ${vendor} ${models.join(',')}${o.tenant ? ` in tenant ${o.tenant}` : ''}`, { expected: 'phones in apsctl device list' });
  const n = devs.length;
  const bounds = waves.map((p) => Math.min(n, Math.ceil((p * n) / 100 - 1e-9)));
  const list = devs.map((d, i) => ({ mac: d.mac, wave: bounds.findIndex((b) => i < b), from: d.firmware }));
  const id = fw.createRollout(
    { version: o.version, vendor, models: models.join(','), tenant: o.tenant ?? null, waves: JSON.stringify(waves), window: o.window ?? '', max_failed: maxFailed, soak_ms: soakMs, upgrade_limit_ms: upgradeLimitMs },
    list,
  );
  return { id, phones: n, waves: waves.map((_, w) => list.filter((d) => d.wave === w).length) };
}

function need(fw: FirmwareStore, id: number): RolloutRow {
  const r = fw.rollout(id);
  if (!r) throw new ApsError('APS_ERR_NOT_FOUND', `no rollout ${id}`, { expected: 'an ID from apsctl firmware rollout status' });
  return r;
}

export function pauseRollout(store: Store, id: number): RolloutRow {
  const fw = new FirmwareStore(store);
  const r = need(fw, id);
  if (r.state !== 'running') throw new ApsError('APS_ERR_FIRMWARE', `rollout ${id} is ${r.state}, not running`, { expected: 'a running rollout' });
  fw.step({ rollout: { ...r, state: 'paused', reason: 'paused by apsctl' }, event: 'rollout.paused' });
  return fw.rollout(id)!;
}

/** Paused: runs on. Halted: the failed phones of its wave are sent the image again, with a fresh limit. */
export function resumeRollout(store: Store, id: number, now = Date.now()): RolloutRow {
  const fw = new FirmwareStore(store);
  const r = need(fw, id);
  if (r.state !== 'paused' && r.state !== 'halted') throw new ApsError('APS_ERR_FIRMWARE', `rollout ${id} is ${r.state}`, { expected: 'a paused or halted rollout' });
  const retry = r.state === 'halted' ? fw.rolloutDevices(id).filter((d) => d.wave === r.wave && d.state === 'failed') : [];
  fw.step({
    rollout: { ...r, state: 'running', reason: '', wave_done_at: null },
    devices: retry.map((d) => ({ mac: d.mac, state: 'sent' as const, started_at: now, done_at: null })),
    overrides: retry.map((d) => ({ mac: d.mac, version: r.version })),
    event: 'rollout.resumed',
  });
  if (retry.length) fw.clearNotified(id, retry.map((d) => d.mac));
  return fw.rollout(id)!;
}

/** Stops for good: phones not yet upgraded are pointed back at their template's image. */
export function abortRollout(store: Store, id: number): RolloutRow {
  const fw = new FirmwareStore(store);
  const r = need(fw, id);
  if (!['running', 'paused', 'halted'].includes(r.state)) throw new ApsError('APS_ERR_FIRMWARE', `rollout ${id} is ${r.state} already`, { expected: 'a running, paused or halted rollout' });
  const open = fw.rolloutDevices(id).filter((d) => d.state === 'sent' || d.state === 'failed');
  fw.step({ rollout: { ...r, state: 'aborted', reason: 'aborted by apsctl' }, overrides: open.map((d) => ({ mac: d.mac, version: null })), event: 'rollout.aborted' });
  return fw.rollout(id)!;
}

/**
 * Points every phone the rollout reached back at the version it reported before (its
 * template's image when that is the one, or when it reported none); apsd resyncs them.
 */
export function rollbackRollout(deps: Pick<RolloutDeps, 'store' | 'config'>, id: number, now = Date.now()): { rollout: RolloutRow; phones: number } {
  const fw = new FirmwareStore(deps.store);
  const r = need(fw, id);
  if (r.state === 'rolledback') throw new ApsError('APS_ERR_FIRMWARE', `rollout ${id} is rolled back already`);
  const images = fw.images();
  const reached = fw.rolloutDevices(id).filter((d) => d.state !== 'pending' && d.state !== 'rolledback');
  const overrides = reached.map((d) => {
    const dev = deps.store.device(d.mac);
    const template = dev?.template ? deps.config().templates.get(dev.template) : undefined;
    const tplVersion = dev ? wantedVersion(images, { vendor: dev.vendor, model: dev.model, template }) : null;
    const back = d.from_version && d.from_version !== tplVersion && images.some((i) => i.version === d.from_version && dev && imageFits(i, dev.vendor, dev.model)) ? d.from_version : null;
    return { mac: d.mac, version: back };
  });
  fw.step({
    rollout: { ...r, state: 'rolledback', reason: 'rolled back by apsctl' },
    devices: reached.map((d) => ({ mac: d.mac, state: 'rolledback' as const, started_at: now, done_at: null })),
    overrides,
    event: 'rollout.rolledback',
  });
  fw.clearNotified(id, reached.map((d) => d.mac));
  return { rollout: fw.rollout(id)!, phones: reached.length };
}

/** The upgrade limit of a phone of this vendor in this rollout. */
export function upgradeLimitMs(deps: Pick<RolloutDeps, 'registry' | 'config'>, r: Pick<RolloutRow, 'upgrade_limit_ms'>, vendor: string): number {
  if (r.upgrade_limit_ms) return r.upgrade_limit_ms;
  const v = deps.registry.get(vendor)?.firmware?.upgradeLimit;
  if (v) return parseDuration(v, 'firmware.upgradeLimit');
  return deps.config().settings.firmware.upgradeLimitMs;
}

/** One pass over the unfinished rollouts; what apsd's timer calls. Returns the resyncs it started. */
export function tick(deps: RolloutDeps): Promise<unknown>[] {
  const now = (deps.now ?? Date.now)();
  const fw = new FirmwareStore(deps.store);
  for (const r of fw.activeRollouts()) {
    if (r.state !== 'running') continue;
    try {
      stepRollout(deps, fw, r, now);
    } catch (e) {
      deps.log.error('rollout step failed', { rollout: r.id, err: describeError(e) });
    }
  }
  // resyncs not yet sent: a wave just started, a rollback, a retry, or a crash before they went out
  const sends: Promise<unknown>[] = [];
  if (deps.resync) {
    for (const d of fw.unnotified()) {
      fw.noteNotified(d.rollout, d.mac, now);
      sends.push(deps.resync(d.mac).catch((e: unknown) => deps.log.warn('rollout resync failed', { rollout: d.rollout, mac: d.mac, err: describeError(e) })));
    }
  }
  return sends;
}

function stepRollout(deps: RolloutDeps, fw: FirmwareStore, r: RolloutRow, now: number): void {
  const log = deps.log.child({ rollout: r.id });
  const waves = JSON.parse(r.waves) as number[];
  const inWave = fw.rolloutDevices(r.id).filter((d) => d.wave === r.wave);
  const label = `wave ${r.wave + 1} of ${waves.length} (${waves[r.wave]}%)`;
  if (r.wave_started_at === null) {
    if (!inWindow(r.window, now)) return;
    const pending = inWave.filter((d) => d.state === 'pending');
    fw.step({
      rollout: { ...r, wave_started_at: now, wave_done_at: null },
      devices: pending.map((d) => ({ mac: d.mac, state: 'sent' as const, started_at: now })),
      overrides: pending.map((d) => ({ mac: d.mac, version: r.version })),
      event: 'rollout.wave',
    });
    log.info('rollout wave started', { wave: r.wave + 1, waves: waves.length, phones: pending.length, version: r.version });
    return;
  }
  const changes: { mac: Mac; state: 'upgraded' | 'failed'; done_at: number }[] = [];
  const reasons: string[] = [];
  for (const d of inWave) {
    if (d.state === 'sent') {
      if (d.firmware === r.version) changes.push({ mac: d.mac, state: 'upgraded', done_at: now });
      else if (now - (d.started_at ?? now) > upgradeLimitMs(deps, r, d.vendor)) {
        changes.push({ mac: d.mac, state: 'failed', done_at: now });
        reasons.push(`${d.mac} ${notBack(d, now)}`);
      }
    } else if (d.state === 'upgraded' && d.firmware !== r.version) {
      changes.push({ mac: d.mac, state: 'failed', done_at: now });
      reasons.push(`${d.mac} reports ${d.firmware ?? 'no version'} again`);
    }
  }
  const stateOf = new Map<string, string>(inWave.map((d) => [d.mac, d.state]));
  for (const c of changes) {
    stateOf.set(c.mac, c.state);
    log.info(c.state === 'upgraded' ? 'rollout phone upgraded' : 'rollout phone failed', { mac: c.mac, version: r.version });
  }
  const failed = [...stateOf.values()].filter((s) => s === 'failed').length;
  const open = [...stateOf.values()].filter((s) => s === 'sent' || s === 'pending').length;
  const allowed = allowedFailures(inWave.length, r.max_failed);
  let next: Pick<RolloutRow, 'id' | 'state' | 'reason' | 'wave' | 'wave_started_at' | 'wave_done_at'> = r;
  let event: string | undefined;
  if (failed > allowed) {
    const reason = `${label}: ${failed} of ${inWave.length} phones failed, more than --max-failed ${r.max_failed}% allows (${allowed})${reasons.length ? `: ${reasons.slice(0, 5).join('; ')}` : ''}`;
    next = { ...r, state: 'halted', reason };
    event = 'rollout.halted';
    log.warn('rollout halted', { reason });
  } else if (open === 0) {
    const doneAt = r.wave_done_at ?? now;
    if (now - doneAt >= r.soak_ms || inWave.length === 0) {
      if (r.wave + 1 >= waves.length) {
        next = { ...r, state: 'done', reason: '', wave_done_at: doneAt };
        event = 'rollout.done';
        log.info('rollout done', { version: r.version });
      } else {
        next = { ...r, wave: r.wave + 1, wave_started_at: null, wave_done_at: null };
        log.info('rollout wave finished', { wave: r.wave + 1, failed, phones: inWave.length });
      }
    } else if (r.wave_done_at === null) {
      next = { ...r, wave_done_at: doneAt };
    }
  }
  if (changes.length || next !== r) fw.step({ rollout: next, devices: changes, event });
}

function notBack(d: RolloutDeviceView, now: number): string {
  const s = Math.round((now - (d.started_at ?? now)) / 1000);
  return d.seen_at && d.started_at && d.seen_at > d.started_at ? `came back with ${d.firmware ?? 'no version'} (not upgraded after ${s}s)` : `not back after ${s}s`;
}
