/**
 * IP/DNS mapping: every occurrence of a dummy IP in a served file becomes the FQDN. The
 * tenant's mapping wins over the global one. A match must be the whole address:
 * 1.1.1.1 → pbx.example leaves 11.1.1.10 and 1.1.1.100 alone.
 */
import type { IpDnsMap } from '../config/ipmap-section.js';

export interface CompiledMap {
  re: RegExp | null;
  to: Map<string, string>;
}

export function compileIpMap(tenantMap: IpDnsMap, globalMap: IpDnsMap): CompiledMap {
  const to = new Map<string, string>();
  for (const { ip, fqdn } of globalMap) to.set(ip, fqdn);
  for (const { ip, fqdn } of tenantMap) to.set(ip, fqdn);
  if (to.size === 0) return { re: null, to };
  const alts = [...to.keys()].sort((a, b) => b.length - a.length).map((ip) => ip.replace(/\./g, '\\.'));
  // not preceded by a digit or a dot-digit, not followed by a digit or by .digit
  return { re: new RegExp(`(?<![0-9.])(?:${alts.join('|')})(?![0-9]|\\.[0-9])`, 'g'), to };
}

export function applyIpMap(text: string, m: CompiledMap): string {
  if (!m.re) return text;
  return text.replace(m.re, (ip) => m.to.get(ip) ?? ip);
}
