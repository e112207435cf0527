/** Addresses: IPv4 ↔ integer, the IPv4-mapped form, wildcard hosts, and an interface's addresses. One owner for each. */
import net from 'node:net';
import os from 'node:os';

/** A dotted quad (already known to be one) as an unsigned 32-bit number; fast, no checks. */
export function ipToInt(ip: string): number {
  let n = 0;
  let part = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      n = n * 256 + part;
      part = 0;
    } else part = part * 10 + (c - 48);
  }
  return n * 256 + part;
}

/** A dotted quad as a number, or null when it is not one. */
export function parseIpv4(ip: string): number | null {
  return net.isIPv4(ip) ? ipToInt(ip) : null;
}

export function intToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** `::ffff:192.0.2.1` (an IPv4 client on a dual-stack socket) → `192.0.2.1`; anything else as it is. */
export function normalizeIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

export interface InterfaceAddress {
  ifname: string;
  address: string;
  netmask: string;
  prefix: number;
  mac: string;
}

/** The interface's IPv4 addresses (non-internal first), or [] when it has none or does not exist. */
export function interfaceAddresses(ifname: string): InterfaceAddress[] {
  const list = (os.networkInterfaces()[ifname] ?? []).filter((a) => a.family === 'IPv4');
  list.sort((a, b) => Number(a.internal) - Number(b.internal));
  return list.map((a) => ({ ifname, address: a.address, netmask: a.netmask, prefix: Number(a.cidr?.split('/')[1] ?? 32), mac: a.mac }));
}

/** Whether an interface of that name exists at all (with or without an address). */
export function interfaceExists(ifname: string): boolean {
  return os.networkInterfaces()[ifname] !== undefined;
}

/** This host's IPv4 address on the subnet of `remote` (what a phone there can reach), else `fallback`, else any. */
export function localAddressFor(remote: string, fallback: string | null): string {
  if (net.isIPv4(remote)) {
    const r = ipToInt(remote);
    for (const list of Object.values(os.networkInterfaces())) {
      for (const a of list ?? []) {
        if (a.family !== 'IPv4' || a.internal) continue;
        const prefix = Number(a.cidr?.split('/')[1] ?? 32);
        const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
        if (((ipToInt(a.address) & mask) >>> 0) === ((r & mask) >>> 0)) return a.address;
      }
    }
  }
  if (fallback) return fallback;
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}
