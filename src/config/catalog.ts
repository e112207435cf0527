/** tenants.d/<id>.ini and extensions.d/*.ini. */
import path from 'node:path';
import type { IniFile } from './ini-file.js';
import { SectionReader } from './fields.js';
import { readIpDnsMap, type IpDnsMap } from './ipmap-section.js';

export interface Tenant {
  id: string;
  name: string;
  file: string;
  ipDnsMap: IpDnsMap;
  /** [tenant] provisioning_url: where this tenant's phones are sent (DHCP, class blocks, PnP), over the protocol it names */
  provisioningUrl?: string;
}

export interface Extension {
  number: string;
  tenant: string;
  secret: string;
  authUser: string;
  name: string;
  file: string;
  line: number;
}

export const TENANT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export function readTenant(ini: IniFile): Tenant {
  const id = path.basename(ini.file, '.ini');
  if (!TENANT_ID_RE.test(id)) {
    throw ini.error('tenant', undefined, `the file name "${id}" is not a tenant id`, 'a file named <id>.ini with letters, digits, "_" or "-"');
  }
  for (const s of ini.sections.keys()) {
    if (s !== 'tenant' && s !== 'ip_dns_map') throw ini.error(s, undefined, `unknown section [${s}]`, '[tenant] or [ip_dns_map]');
  }
  const t = new SectionReader(ini, 'tenant');
  const name = t.str('name', id);
  let provisioningUrl: string | undefined = t.url('provisioning_url', '') || undefined;
  if (provisioningUrl && !provisioningUrl.endsWith('/')) provisioningUrl += '/';
  t.done();
  return { id, name, file: ini.file, ipDnsMap: readIpDnsMap(ini, 'ip_dns_map'), ...(provisioningUrl ? { provisioningUrl } : {}) };
}

export function readExtensions(ini: IniFile): Extension[] {
  const out: Extension[] = [];
  for (const [number, values] of ini.sections) {
    if (number === '') {
      const first = [...values.keys()][0];
      throw ini.error('', first, 'a key outside any [extension] section', '[<number>] sections with tenant, secret, auth_user and name');
    }
    if (!/^[0-9A-Za-z*#+._-]{1,32}$/.test(number)) {
      throw ini.error(number, undefined, `"${number}" is not an extension number`, 'digits (and * # + . _ -), e.g. [101]');
    }
    const r = new SectionReader(ini, number, values);
    const tenant = r.str('tenant', 'default');
    if (!TENANT_ID_RE.test(tenant)) r.fail('tenant', `"${tenant}" is not a tenant id`, 'a tenant id from tenants.d');
    const secret = r.str('secret', '');
    if (!secret) r.fail('secret', 'every extension needs a secret', 'secret = <SIP password>');
    const authUser = r.str('auth_user', number);
    const name = r.str('name', '');
    r.done();
    out.push({ number, tenant, secret, authUser, name, file: ini.file, line: ini.lineOf(number) });
  }
  return out;
}
