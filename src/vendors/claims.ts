/**
 * What a phone says it is, in its own words (a SIP PnP Event's vendor="…" and model="…", a
 * product name in a User-Agent): matched to the catalogue.
 */
import { modelKey, type VendorRegistry } from './registry.js';

/**
 * The model a phone's own name for it names: an exact id or alias, else the longest model id the
 * value ends with (phones put a product prefix in front: "SIP-T46S" is a T46S).
 */
export function modelNamed(registry: VendorRegistry, vendorId: string, name: string): string | null {
  const exact = registry.model(vendorId, name);
  if (exact) return exact.id;
  const key = modelKey(name);
  let best: { id: string; len: number } | null = null;
  for (const m of registry.get(vendorId)?.models ?? []) {
    for (const k of [m.id, ...(m.aliases ?? [])].map(modelKey)) {
      if (k.length >= 3 && key.endsWith(k) && (!best || k.length > best.len)) best = { id: m.id, len: k.length };
    }
  }
  return best?.id ?? null;
}

/** The vendor a phone's own name for it names (by id or name, any case), if any. */
export function vendorNamed(registry: VendorRegistry, name: string | null): string | null {
  if (!name) return null;
  const n = name.trim().toLowerCase();
  for (const v of registry.list()) if (v.id === n || v.name.toLowerCase() === n) return v.id;
  return null;
}
