/**
 * The provisioning PIN, stored as an scrypt hash: `scrypt$N$r$p$salt$hash`, salt and hash in
 * base64 without padding (the form [provisioning] pin_hash accepts, PIN_HASH_RE). Verification
 * runs scrypt off the event loop (libuv thread pool) and compares in constant time.
 *
 * The parameters of a stored hash are bounded before use: a hash written by hand with a huge
 * N would otherwise make every attempt cost gigabytes of memory.
 */
import crypto from 'node:crypto';
import { ApsError } from '../errors.js';

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** 2^15 · 8 · 128 bytes = 32 MiB per hash, about 50–100 ms on one core: slow enough against offline guessing of a 6-digit PIN, fast enough per call. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 1 };

const SALT_BYTES = 16;
const KEY_BYTES = 32;
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;
/** a keypad PIN is short; anything longer is refused before scrypt runs */
export const MAX_PIN_LENGTH = 64;

export interface ParsedPinHash extends ScryptParams {
  salt: Buffer;
  hash: Buffer;
}

const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');
const B64_RE = /^[A-Za-z0-9+/_-]+={0,2}$/;

function fromB64(s: string): Buffer | null {
  if (!B64_RE.test(s)) return null;
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

function maxmem(p: ScryptParams): number {
  return 128 * p.N * p.r * p.p + 64 * 1024 * 1024;
}

function checkParams(p: ScryptParams): string | null {
  if (!Number.isInteger(p.N) || p.N < 2 || p.N > MAX_N || (p.N & (p.N - 1)) !== 0) return `N must be a power of two from 2 to ${MAX_N}`;
  if (!Number.isInteger(p.r) || p.r < 1 || p.r > MAX_R) return `r must be from 1 to ${MAX_R}`;
  if (!Number.isInteger(p.p) || p.p < 1 || p.p > MAX_P) return `p must be from 1 to ${MAX_P}`;
  return null;
}

/** `scrypt$N$r$p$salt$hash` → its parts, or null when it is not one (or its parameters are out of bounds). */
export function parsePinHash(text: string): ParsedPinHash | null {
  const parts = text.trim().split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [N, r, p] = parts.slice(1, 4).map((x) => (/^\d{1,8}$/.test(x) ? Number(x) : NaN));
  if (checkParams({ N, r, p })) return null;
  const salt = fromB64(parts[4]);
  const hash = fromB64(parts[5]);
  if (!salt || !hash || salt.length < 8 || hash.length < 16 || hash.length > 64) return null;
  return { N, r, p, salt, hash };
}

function derive(pin: string, salt: Buffer, keylen: number, p: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    crypto.scrypt(pin.normalize('NFKC'), salt, keylen, { N: p.N, r: p.r, p: p.p, maxmem: maxmem(p) }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** A new hash line for [provisioning] pin_hash. Does not judge the PIN: callers check weakPin first. */
export async function hashPin(pin: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const bad = checkParams(params);
  if (bad) throw new ApsError('APS_ERR_PIN', `scrypt parameters out of bounds: ${bad}`);
  if (pin.length > MAX_PIN_LENGTH) throw new ApsError('APS_ERR_PIN', `a PIN longer than ${MAX_PIN_LENGTH} characters`);
  const salt = crypto.randomBytes(SALT_BYTES);
  const key = await derive(pin, salt, KEY_BYTES, params);
  return `scrypt$${params.N}$${params.r}$${params.p}$${b64(salt)}$${b64(key)}`;
}

/** Whether `pin` matches the stored hash. False for a malformed hash or an over-long PIN; never throws for a wrong PIN. */
export async function verifyPinHash(pin: string, stored: string): Promise<boolean> {
  const h = parsePinHash(stored);
  if (!h || pin.length > MAX_PIN_LENGTH) return false;
  const key = await derive(pin, h.salt, h.hash.length, h);
  return crypto.timingSafeEqual(key, h.hash);
}

/** Constant-time comparison of a plain PIN ([provisioning] pin) with the one keyed. */
export function verifyPlainPin(pin: string, configured: string): boolean {
  const a = crypto.createHash('sha256').update(pin, 'utf8').digest();
  const b = crypto.createHash('sha256').update(configured, 'utf8').digest();
  return crypto.timingSafeEqual(a, b) && configured !== '';
}

/** How the configured PIN is checked: the hash when there is one, else the plain PIN, else nothing matches. */
export type PinVerifier = (pin: string) => Promise<boolean>;

export function pinVerifier(settings: { pinHash: string; pin: string }): PinVerifier | null {
  if (settings.pinHash) {
    const stored = settings.pinHash;
    return (pin) => verifyPinHash(pin, stored);
  }
  if (settings.pin) {
    const plain = settings.pin;
    return async (pin) => verifyPlainPin(pin, plain);
  }
  return null;
}
