/**
 * Request name → what to serve. Shared by HTTP and TFTP so both refuse the same hostile
 * names the same way: NUL bytes, backslashes, `.` and `..` segments, over-long names,
 * absolute paths (one leading "/" is tolerated in front of a plain vendor file name, as some
 * phones ask for "/spa504G.cfg"), and symlinks that lead out of firmware_dir.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileFits, modelKey, type FileMatch, type VendorRegistry } from '../vendors/registry.js';
import type { DeviceRow, Store } from '../store/index.js';

export type Resolution =
  | { kind: 'refused'; reason: string }
  | { kind: 'notfound'; reason: string }
  | { kind: 'vendor'; matches: FileMatch[]; name: string }
  | { kind: 'firmware'; path: string; size: number; name: string };

export const MAX_NAME = 255;

export function checkName(raw: string): { ok: true; name: string } | { ok: false; reason: string } {
  if (raw.length === 0) return { ok: false, reason: 'empty file name' };
  if (raw.length > MAX_NAME) return { ok: false, reason: `file name longer than ${MAX_NAME} bytes` };
  if (raw.includes('\0')) return { ok: false, reason: 'NUL byte in file name' };
  if (raw.includes('\\')) return { ok: false, reason: 'backslash in file name' };
  if (/[\x00-\x1f\x7f]/.test(raw)) return { ok: false, reason: 'control character in file name' };
  let name = raw;
  if (name.startsWith('/')) {
    const rest = name.slice(1);
    if (rest.includes('/') || rest === '') return { ok: false, reason: 'absolute path' };
    name = rest;
  }
  const segs = name.split('/');
  if (segs.some((s) => s === '..' || s === '.')) return { ok: false, reason: 'path traversal (. or .. segment)' };
  if (segs.some((s) => s === '')) return { ok: false, reason: 'empty path segment' };
  return { ok: true, name };
}

export function resolveName(raw: string, registry: VendorRegistry, firmwareDir: string): Resolution {
  const c = checkName(raw);
  if (!c.ok) return { kind: 'refused', reason: c.reason };
  const name = c.name;
  if (!name.includes('/')) {
    const matches = registry.matchFile(name);
    if (matches.length) return { kind: 'vendor', matches, name };
  }
  return resolveFirmware(name, firmwareDir);
}

function resolveFirmware(name: string, firmwareDir: string): Resolution {
  let root: string;
  try {
    root = fs.realpathSync(firmwareDir);
  } catch {
    return { kind: 'notfound', reason: 'no such file' };
  }
  const candidate = path.join(root, name);
  let real: string;
  try {
    real = fs.realpathSync(candidate);
  } catch {
    return { kind: 'notfound', reason: 'no such file' };
  }
  if (real !== root && !real.startsWith(root + path.sep)) {
    return { kind: 'refused', reason: 'symlink leads out of firmware_dir' };
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(real);
  } catch {
    return { kind: 'notfound', reason: 'no such file' };
  }
  if (!st.isFile()) return { kind: 'notfound', reason: 'not a regular file' };
  return { kind: 'firmware', path: real, size: st.size, name };
}

/**
 * Among the vendor files a name can be, the one that applies: for a MAC-bearing name, the
 * match of the device's own vendor (an unknown MAC has none); for a common name, the first.
 */
export function pickMatch(matches: FileMatch[], store: Store): { match: FileMatch; device?: DeviceRow } | { unknownMac: string } | null {
  const common = matches.find((m) => m.file.scope !== 'device');
  if (common) return { match: common };
  const mac = matches[0]?.mac;
  if (!mac) return null;
  const device = store.device(mac);
  if (!device) return { unknownMac: mac };
  const mine = matches.find((m) => m.file.vendor.id === device.vendor);
  if (!mine) return { unknownMac: mac };
  // a file only some model families ask for is no file of the others
  if (!fileFits(mine.file.vendor, mine.file.spec, mine.file.vendor.modelByKey.get(modelKey(device.model)))) return null;
  return { match: mine, device };
}
