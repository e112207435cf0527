import fs from 'node:fs';
/**
 * Typed readers for ini values. Each reader names file, line and key and what was expected
 * when a value is wrong, and knows the keys a section may hold so that a typo is an error
 * rather than a setting silently ignored.
 */
import net from 'node:net';
import type { IniFile } from './ini-file.js';
import { parseSubnets, type SubnetList } from '../net/subnets.js';

export interface HostPort {
  host: string;
  port: number;
}

export class SectionReader {
  private readonly used = new Set<string>();
  constructor(
    readonly ini: IniFile,
    readonly name: string,
    readonly values: Map<string, string> = ini.sections.get(name) ?? new Map(),
  ) {}

  has(key: string): boolean {
    return this.values.has(key);
  }

  raw(key: string): string | undefined {
    this.used.add(key);
    const v = this.values.get(key);
    return v === undefined ? undefined : unquote(v);
  }

  fail(key: string, message: string, expected?: string): never {
    throw this.ini.error(this.name, key, message, expected);
  }

  str(key: string, def: string): string {
    return this.raw(key) ?? def;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined || v === '') return def;
    const s = v.toLowerCase();
    if (['true', 'yes', 'on', '1'].includes(s)) return true;
    if (['false', 'no', 'off', '0'].includes(s)) return false;
    return this.fail(key, `"${v}" is not a boolean`, 'true or false');
  }

  int(key: string, def: number, min: number, max: number): number {
    const v = this.raw(key);
    if (v === undefined || v === '') return def;
    if (!/^-?\d+$/.test(v)) return this.fail(key, `"${v}" is not a whole number`, `a number from ${min} to ${max}`);
    const n = Number(v);
    if (n < min || n > max) return this.fail(key, `${n} is out of range`, `a number from ${min} to ${max}`);
    return n;
  }

  oneOf<T extends string>(key: string, def: T, allowed: readonly T[]): T {
    const v = this.raw(key);
    if (v === undefined || v === '') return def;
    const s = v.toLowerCase() as T;
    if (!allowed.includes(s)) return this.fail(key, `"${v}" is not allowed`, `one of ${allowed.join(', ')}`);
    return s;
  }

  /** `host:port[, host:port ...]`; `[::1]:8080` for IPv6; an empty value means "none". */
  listen(key: string, def: string): HostPort[] {
    const v = this.raw(key) ?? def;
    if (v.trim() === '') return [];
    return v.split(',').map((part) => {
      const p = parseHostPort(part.trim());
      if (!p) return this.fail(key, `"${part.trim()}" is not host:port`, 'host:port, e.g. 0.0.0.0:8080, [::]:8080 or 127.0.0.1:6969, comma-separated');
      return p;
    });
  }

  /** A host name or IP address, no port, no scheme. */
  host(key: string, def: string): string {
    const v = this.raw(key);
    if (v === undefined || v === '') return def;
    if (!isHost(v)) return this.fail(key, `"${v}" is not a host name or IP address`, 'a host name or an IP address');
    return v;
  }

  url(key: string, def: string): string {
    const v = this.raw(key);
    if (v === undefined || v === '') return def;
    try {
      const u = new URL(v);
      if (!['http:', 'https:', 'tftp:', 'ftp:'].includes(u.protocol)) throw new Error('scheme');
    } catch {
      return this.fail(key, `"${v}" is not a URL`, 'a URL starting with http://, https:// or tftp://');
    }
    return v;
  }

  /** Seconds, or a number with a unit: 90, 60s, 10m, 1h, 1d. Returns milliseconds. */
  duration(key: string, def: string, minMs = 0, maxMs = 365 * 86400_000): number {
    const v = this.raw(key) ?? def;
    const m = /^(\d+)\s*(s|m|h|d)?$/.exec(v.trim());
    const ms = m ? Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 's'] : NaN;
    if (!m || ms < minMs || ms > maxMs) {
      return this.fail(key, `"${v}" is not a duration in range`, `seconds or a number with a unit (60s, 10m, 1h, 1d), from ${minMs / 1000}s to ${maxMs / 86_400_000}d`);
    }
    return ms;
  }

  /** Comma-separated addresses and subnets: 10.0.0.0/8, 192.168.1.10, fd00::/8. */
  subnets(key: string, def: string): SubnetList {
    const v = this.raw(key) ?? def;
    const r = parseSubnets(v);
    if (!r.ok) return this.fail(key, `"${r.bad}" is not an address or subnet`, 'addresses or subnets in CIDR form, comma-separated, e.g. 10.0.0.0/8, 192.168.1.10');
    return r.list;
  }

  /** A path to an existing readable file (relative paths from the config file's folder). */
  file(key: string, base: string): string {
    const v = this.raw(key) ?? '';
    if (v === '') return '';
    const p = v.startsWith('/') ? v : `${base}/${v}`;
    try {
      fs.accessSync(p, fs.constants.R_OK);
    } catch {
      return this.fail(key, `cannot read ${p}`, 'a readable file');
    }
    return p;
  }

  /** Complains about keys the section does not know. Call after reading every key. */
  done(extraAllowed: (key: string) => boolean = () => false): void {
    for (const key of this.values.keys()) {
      if (!this.used.has(key) && !extraAllowed(key)) {
        const known = [...this.used].sort().join(', ');
        this.fail(key, `unknown key in [${this.name}]`, known ? `one of ${known}` : 'no keys in this section');
      }
    }
  }
}

export function unquote(v: string): string {
  if (v.length >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))) return v.slice(1, -1);
  return v;
}

export function parseHostPort(s: string): HostPort | null {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:\s]+):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[2]);
  if (port > 65535) return null;
  if (!isHost(m[1])) return null;
  return { host: m[1], port };
}

export function isHost(s: string): boolean {
  if (net.isIP(s)) return true;
  return /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(s);
}

export function formatHostPort(h: HostPort): string {
  return net.isIPv6(h.host) ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`;
}
