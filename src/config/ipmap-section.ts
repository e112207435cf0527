/** `[ip_dns_map]`: `dummy_ip = fqdn`, in aps.ini (global) and in each tenant's file. */
import net from 'node:net';
import type { IniFile } from './ini-file.js';
import { SectionReader, isHost } from './fields.js';

export type IpDnsMap = ReadonlyArray<{ ip: string; fqdn: string }>;

export function readIpDnsMap(ini: IniFile, section: string): IpDnsMap {
  const r = new SectionReader(ini, section);
  const out: { ip: string; fqdn: string }[] = [];
  for (const key of r.values.keys()) {
    const fqdn = r.raw(key)!;
    if (!net.isIPv4(key)) r.fail(key, `"${key}" is not an IPv4 address`, 'dummy_ip = fqdn, e.g. 1.1.1.1 = pbx.example.com');
    if (!isHost(fqdn)) r.fail(key, `"${fqdn}" is not a host name`, 'a fully qualified domain name, e.g. pbx.example.com');
    out.push({ ip: key, fqdn });
  }
  return out;
}
