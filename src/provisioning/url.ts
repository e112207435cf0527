/**
 * The provisioning URL phones are given (DHCP option 66/160/43, the SIP PnP NOTIFY, the class
 * blocks, and the configs that point phones back at apsd): one rule, here.
 *
 * The template's [general] provisioning_url wins for the files rendered from it; else the
 * tenant's [tenant] provisioning_url; else [provisioning] url when the ini sets it; else http://<host>:<port>/<alias>/ with host the
 * first non-wildcard HTTP listen address, or the address the phone reaches this host at (the
 * DHCP interface's, the one facing the phone), or this host's name; port the HTTP listener's
 * bound port. For a tenant, its IP/DNS map (then the global one) is applied.
 */
import type { HostPort } from '../config/fields.js';
import type { Settings, Template, Tenant } from '../config/index.js';
import { isWildcardHost } from '../net/address.js';
import { applyIpMap, compileIpMap } from '../render/ipmap.js';

export interface UrlContext {
  settings: Settings;
  /** apply this tenant's IP/DNS map (and the global one) */
  tenant?: Pick<Tenant, 'ipDnsMap'> & Partial<Pick<Tenant, 'provisioningUrl'>>;
  template?: Pick<Template, 'general'>;
  /** the address of this host the phone talks to */
  localIp?: string;
  /** the HTTP listen addresses in effect (default [http] listen) */
  listen?: readonly HostPort[];
  /** the port the HTTP listener is bound to (when listen asked for port 0) */
  httpPort?: number;
}

export function provisioningUrl(c: UrlContext): string {
  const s = c.settings;
  let url: string;
  if (c.template?.general.provisioningUrl) url = c.template.general.provisioningUrl;
  else if (c.tenant?.provisioningUrl) url = c.tenant.provisioningUrl;
  else if (s.provisioning.urlSet) url = s.provisioning.url;
  else {
    const listen = c.listen ?? s.http.listen;
    const specific = listen.find((l) => !isWildcardHost(l.host))?.host;
    const host = specific ?? c.localIp ?? new URL(s.provisioning.url).hostname.replace(/^\[|\]$/g, '');
    const port = c.httpPort ?? listen[0]?.port ?? 8080;
    const h = host.includes(':') ? `[${host}]` : host;
    url = `http://${h}${port === 80 ? '' : `:${port}`}/${s.http.alias ? s.http.alias + '/' : ''}`;
  }
  return c.tenant ? applyIpMap(url, compileIpMap(c.tenant.ipDnsMap ?? [], s.ipDnsMap)) : url;
}
