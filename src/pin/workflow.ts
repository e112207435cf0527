/**
 * PIN registration: a person at an unprovisioned phone keys the provisioning PIN and an
 * extension; the phone becomes that extension. One workflow for the three adapters (FastAGI,
 * apsctl, HTTP), which know nothing of each other; this module knows nothing of them.
 *
 * Checks, in this order, each with its result:
 *   UNKNOWN  no such device (or it is disabled)
 *   LOCKED   the device is locked after [pin] max_attempts wrong PINs, for [pin] lockout
 *   BADPIN   the PIN is wrong (counted; the last allowed attempt locks the device)
 *   NOEXT    no such extension (in the device's tenant, or in exactly one tenant)
 *   TAKEN    another phone holds it (allowed with [pbx] allow_shared within the device's tenant)
 *   OK       assigned to line 1, device moved to the extension's tenant and provisioned, audit
 *            event written, all in one transaction; then the phone is told to resync
 *
 * The PIN is never logged, nor is the extension keyed unless it names a real extension (a
 * person who keys the PIN at the extension prompt must not find it in a log).
 */
import { templateFits } from '../inventory/rules.js';
import { describeError } from '../errors.js';
import type { Config, Settings } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import type { Store } from '../store/index.js';
import { ExtensionTaken, pinStore } from '../store/pin.js';
import { findExtension } from '../config/extensions.js';
import { MAX_PIN_LENGTH, pinVerifier, type PinVerifier } from './pinhash.js';
import { registeredAccount, type ResyncOptions, type ResyncOutcome } from './resync.js';

export const PIN_RESULTS = ['OK', 'BADPIN', 'LOCKED', 'NOEXT', 'TAKEN', 'UNKNOWN'] as const;
export type PinResult = (typeof PIN_RESULTS)[number];

export interface WorkflowDeps {
  store: Store;
  config: () => Config;
  log: Logger;
  /** the PIN check; default: [provisioning] pin_hash, else pin */
  verify?: PinVerifier;
  /** tells the phone to fetch its files again; absent: no resync */
  resync?: (mac: Mac, opts: ResyncOptions) => Promise<ResyncOutcome>;
  /** called after a successful registration (the set of unprovisioned phones changed) */
  onRegistered?: (mac: Mac) => void;
  now?: () => number;
}

export interface RegisterRequest {
  mac?: Mac;
  /** the unprov account(s) the call came from, tried in order (AGI: the channel's endpoint, then the caller ID) */
  account?: string | string[];
  pin: string;
  extension: string;
  /** the adapter, for logs and the audit event: agi, cli, http */
  via: string;
  /** the client's address (HTTP client, Asterisk), for the security log */
  ip?: string;
  /** where the phone is, when the adapter knows it (AGI: CHANNEL(pjsip,remote_addr)) */
  contact?: { host: string; port: number };
}

export interface RegisterOutcome {
  result: PinResult;
  mac?: Mac;
  tenant?: string;
  extension?: string;
  /** LOCKED, or the BADPIN that locked the device: until when (epoch ms) */
  lockedUntil?: number;
  /** OK: the resync under way; resolves (never rejects) with its outcome, null when there is none */
  resync?: Promise<ResyncOutcome | null>;
}

const ACCOUNT_RE = /^[A-Za-z0-9_.+-]{1,80}$/;

export async function register(deps: WorkflowDeps, req: RegisterRequest): Promise<RegisterOutcome> {
  const now = deps.now ?? Date.now;
  const config = deps.config();
  const s = config.settings;
  const pins = pinStore(deps.store);
  const policy = { maxAttempts: s.pinSettings.maxAttempts, lockoutMs: s.pinSettings.lockoutMs };
  const where = { via: req.via, ip: req.ip };

  // UNKNOWN
  let mac: Mac | undefined = req.mac;
  let account: string | undefined;
  if (!mac) {
    for (const a of Array.isArray(req.account) ? req.account : req.account ? [req.account] : []) {
      if (!ACCOUNT_RE.test(a)) continue;
      const row = pins.byAccount(a);
      if (row) {
        mac = row.mac;
        account = a;
        break;
      }
    }
  }
  const dev = mac ? deps.store.device(mac) : undefined;
  if (!mac || !dev || dev.state === 'disabled') {
    deps.log.security('pin-attempt', { result: 'UNKNOWN', mac: req.mac, ...where });
    return { result: 'UNKNOWN' };
  }
  const fields = { mac, account, ...where };

  // LOCKED
  const verify = deps.verify ?? pinVerifier(s.provisioning);
  if (!verify) {
    deps.log.error('PIN registration refused: no PIN is configured', { ...fields, key: '[provisioning] pin_hash', expected: 'the output of apsctl pin hash' });
    deps.log.security('pin-attempt', { result: 'BADPIN', ...fields, reason: 'no PIN configured' });
    return { result: 'BADPIN', mac };
  }
  const r = pins.reserve(mac, now(), policy);
  if (!r.ok) {
    deps.log.security('pin-attempt', { result: 'LOCKED', ...fields, until: r.lockedUntil ? new Date(r.lockedUntil).toISOString() : 'attempts-in-flight' });
    return { result: 'LOCKED', mac, lockedUntil: r.lockedUntil || undefined };
  }

  // BADPIN
  let right = false;
  try {
    right = req.pin.length <= MAX_PIN_LENGTH && /^[0-9*#]+$/.test(req.pin) && (await verify(req.pin));
  } catch (e) {
    pins.release(mac, now());
    throw e;
  }
  if (!right) {
    const until = pins.fail(mac, now(), policy);
    deps.log.security('pin-attempt', { result: 'BADPIN', ...fields, attempt: r.attempt, of: policy.maxAttempts, locked: until ? new Date(until).toISOString() : undefined });
    if (until) deps.log.warn('device locked after wrong PINs', { mac, attempts: r.attempt, until: new Date(until).toISOString() });
    return { result: 'BADPIN', mac, lockedUntil: until || undefined };
  }

  // NOEXT
  const found = findExtension(config, req.extension, dev.tenant);
  if (!found.ext) {
    pins.release(mac, now());
    deps.log.security('pin-attempt', { result: 'NOEXT', ...fields, reason: found.reason === 'ambiguous' ? `in several tenants: ${found.tenants!.join(',')}` : undefined });
    return { result: 'NOEXT', mac };
  }
  const ext = found.ext;

  // TAKEN
  const shared = s.pbx.allowShared && dev.tenant === ext.tenant;
  const holder = deps.store.lineWithExtension(ext.tenant, ext.number);
  if (holder && holder.mac !== mac && !shared) {
    pins.release(mac, now());
    deps.log.security('pin-attempt', { result: 'TAKEN', ...fields, extension: ext.number, tenant: ext.tenant, holder: holder.mac });
    return { result: 'TAKEN', mac, tenant: ext.tenant, extension: ext.number };
  }

  // OK
  const before = account ?? registeredAccount(deps, mac);
  try {
    pins.assign(mac, { tenant: ext.tenant, extension: ext.number, shared, via: req.via }, now());
  } catch (e) {
    pins.release(mac, now());
    if (e instanceof ExtensionTaken) {
      deps.log.security('pin-attempt', { result: 'TAKEN', ...fields, extension: ext.number, tenant: ext.tenant, holder: e.holder.mac });
      return { result: 'TAKEN', mac, tenant: ext.tenant, extension: ext.number };
    }
    throw e;
  }
  deps.log.security('pin-attempt', { result: 'OK', ...fields, extension: ext.number, tenant: ext.tenant });
  deps.log.info('phone registered by PIN', { mac, extension: ext.number, tenant: ext.tenant, via: req.via, shared: shared && holder ? true : undefined });
  const tpl = dev.template ? config.templates.get(dev.template) : undefined;
  if (tpl && !templateFits(tpl, ext.tenant)) {
    deps.log.warn('the device keeps a template of another tenant', { mac, template: tpl.name, template_tenant: tpl.tenant, tenant: ext.tenant });
  }
  try {
    deps.onRegistered?.(mac);
  } catch (e) {
    deps.log.error('after-registration hook failed', { mac, err: describeError(e) });
  }
  const resync = deps.resync
    ? deps.resync(mac, { contact: req.contact, account: before }).catch((e: unknown) => {
        deps.log.error('resync failed', { mac, err: describeError(e) });
        return null;
      })
    : undefined;
  return { result: 'OK', mac, tenant: ext.tenant, extension: ext.number, resync };
}

/** Whether a PIN is configured at all: without one every registration would be refused, so FastAGI and the API stay off. */
export function hasPin(s: Settings): boolean {
  return !!(s.provisioning.pinHash || s.provisioning.pin);
}
