/**
 * The extension catalogue: the extensions a PIN registration (or `apsctl line set`) may
 * assign. They come from extensions.d/*.ini (already in config.extensions, key tenant/number)
 * and, when [pbx] pjsip_conf is set, from the PBX's own pjsip.conf (read, never written).
 *
 * A pjsip.conf endpoint becomes an extension when a phone could register with it:
 * - number = the endpoint's name; auth user and password from its `auth =` section (type auth,
 *   auth_type userpass); caller-ID name from `callerid`.
 * - tenant = the tenant whose id equals the endpoint's `context` (a multi-tenant PBX keeps one
 *   context per tenant), otherwise [discovery] tenant — where discovered phones are put, so a
 *   single-tenant site needs no setting at all.
 * Endpoints left out, each with its reason (apsctl extension list shows them):
 * - auth_type md5: the auth section keeps only md5_cred, a hash of user:realm:password; a phone
 *   needs the password itself, which cannot be recovered from the hash.
 * - no `auth =` (trunks authenticate by IP or send outbound_auth only): nothing to register with.
 * - the unprovisioned accounts apsd itself writes ([pbx] unprov_context, unprov_prefix),
 *   should the accounts file be included from pjsip.conf.
 * - a name that is not an extension number, or one extensions.d already defines (extensions.d wins).
 */
import type { Extension, Tenant } from './catalog.js';
import type { Settings } from './settings.js';
import type { PjsipConf, PjsipEndpoint } from './pjsip.js';

export const EXTENSION_NUMBER_RE = /^[0-9A-Za-z*#+._-]{1,32}$/;

export interface SkippedEndpoint {
  name: string;
  file: string;
  line: number;
  reason: string;
}

export interface PjsipExtensions {
  extensions: Extension[];
  skipped: SkippedEndpoint[];
}

interface Catalogue {
  extensions: Map<string, Extension>;
  tenants: Map<string, Tenant>;
  settings: Settings;
}

/** The endpoints of pjsip.conf that can be extensions, and the others with the reason. */
export function pjsipExtensions(pjsip: PjsipConf, c: Omit<Catalogue, 'extensions'>): PjsipExtensions {
  const out: PjsipExtensions = { extensions: [], skipped: [] };
  const { unprovContext } = c.settings.pbx;
  const prefix = c.settings.provisioning.unprovPrefix;
  for (const ep of pjsip.endpoints()) {
    const skip = (reason: string) => out.skipped.push({ name: ep.name, file: ep.file, line: ep.line, reason });
    if (ep.context === unprovContext || ep.name.startsWith(prefix)) {
      skip(`an unprovisioned phone's account (context ${ep.context ?? '-'}), written by apsd`);
      continue;
    }
    if (!EXTENSION_NUMBER_RE.test(ep.name)) {
      skip('the endpoint name is not an extension number (digits and * # + . _ -, at most 32)');
      continue;
    }
    if (ep.credential === 'md5') {
      skip('auth_type md5: pjsip.conf keeps only md5_cred, a hash; a phone needs the password itself');
      continue;
    }
    if (ep.credential === 'none' || ep.password === undefined) {
      skip(ep.auth ? `auth section [${ep.auth}] has no password` : 'no inbound auth (auth =): nothing a phone could register with');
      continue;
    }
    out.extensions.push(toExtension(ep, tenantOf(ep, c.tenants, c.settings)));
  }
  return out;
}

function tenantOf(ep: PjsipEndpoint, tenants: Map<string, Tenant>, settings: Settings): string {
  if (ep.context && tenants.has(ep.context)) return ep.context;
  return settings.discovery.tenant;
}

function toExtension(ep: PjsipEndpoint, tenant: string): Extension {
  return {
    number: ep.name,
    tenant,
    secret: ep.password!,
    authUser: ep.authUser ?? ep.name,
    name: ep.callerIdName ?? '',
    file: ep.file,
    line: ep.line,
  };
}

/**
 * Adds the extensions of pjsip.conf to config.extensions (where the renderer and the workflow
 * find them). An extension that extensions.d defines too is kept from extensions.d.
 * Returns warnings for the configuration's warning list; mutates `config.extensions`.
 */
export function mergePjsipExtensions(config: Catalogue, pjsip: PjsipConf): string[] {
  const warnings: string[] = [];
  const { extensions } = pjsipExtensions(pjsip, config);
  for (const e of extensions) {
    const key = `${e.tenant}/${e.number}`;
    const prev = config.extensions.get(key);
    if (prev) {
      if (prev.file !== e.file || prev.line !== e.line) {
        warnings.push(`${e.file}:${e.line}: endpoint ${e.number} ignored: extensions.d defines extension ${e.number} of tenant ${e.tenant} (${prev.file}:${prev.line})`);
      }
      continue;
    }
    config.extensions.set(key, e);
  }
  for (const w of pjsip.warnings) warnings.push(`${w.file}:${w.line}: ${w.message}`);
  return warnings;
}

/**
 * The extension a number keyed at a phone names: the one of `preferTenant` if it has that
 * number, else the only tenant's that has it. Several tenants and none preferred: ambiguous.
 */
export function findExtension(config: { extensions: Map<string, Extension> }, number: string, preferTenant: string): { ext: Extension } | { ext: null; reason: 'none' | 'ambiguous'; tenants?: string[] } {
  if (!EXTENSION_NUMBER_RE.test(number)) return { ext: null, reason: 'none' };
  const own = config.extensions.get(`${preferTenant}/${number}`);
  if (own) return { ext: own };
  const all: Extension[] = [];
  for (const e of config.extensions.values()) if (e.number === number) all.push(e);
  if (all.length === 1) return { ext: all[0] };
  if (all.length === 0) return { ext: null, reason: 'none' };
  return { ext: null, reason: 'ambiguous', tenants: all.map((e) => e.tenant).sort() };
}
