/**
 * The whole configuration of one config dir: aps.ini, tenants.d, templates.d, extensions.d.
 * Loading is all or nothing: the first invalid value throws an ApsError naming file, line
 * and key, so that a running daemon can keep its last good configuration.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ApsError } from '../errors.js';
import { readIni } from './ini-file.js';
import { readSettings, type Settings } from './settings.js';
import { readTemplate, type Template } from './template.js';
import { inheritTemplates } from './template-inherit.js';
import { readTenant, readExtensions, type Tenant, type Extension } from './catalog.js';
import { readPjsipConf } from './pjsip.js';
import { mergePjsipExtensions } from './extensions.js';

export type { Settings } from './settings.js';
export type { Template } from './template.js';
export type { Tenant, Extension } from './catalog.js';

export const DEFAULT_CONFIG_DIR = '/etc/aps';
export const DEFAULT_TENANT = 'default';

export interface Config {
  /** the directory read, or null for built-in defaults */
  dir: string | null;
  settings: Settings;
  tenants: Map<string, Tenant>;
  templates: Map<string, Template>;
  /** key: `${tenant}/${number}` */
  extensions: Map<string, Extension>;
  warnings: string[];
  /** changes whenever any file's content changes */
  fingerprint: string;
}

/** --config DIR, else APS_CONFIG, else /etc/aps if it exists, else built-in defaults. */
export function configDirFrom(flag: string | undefined, env = process.env): { dir: string | null; explicit: boolean } {
  if (flag) return { dir: path.resolve(flag), explicit: true };
  if (env.APS_CONFIG) return { dir: path.resolve(env.APS_CONFIG), explicit: true };
  if (fs.existsSync(DEFAULT_CONFIG_DIR)) return { dir: DEFAULT_CONFIG_DIR, explicit: false };
  return { dir: null, explicit: false };
}

export function loadConfig(dir: string | null, base = process.cwd()): Config {
  const warnings: string[] = [];
  const fp: string[] = [];
  if (dir !== null) {
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch {
      throw new ApsError('APS_ERR_CONFIG_MISSING', 'the configuration directory does not exist', { file: dir, expected: 'a directory with aps.ini (see --config and APS_CONFIG)' });
    }
    if (!st.isDirectory()) throw new ApsError('APS_ERR_CONFIG_MISSING', 'not a directory', { file: dir });
  }
  const apsIni = dir && fs.existsSync(path.join(dir, 'aps.ini')) ? readIni(path.join(dir, 'aps.ini')) : null;
  if (apsIni) fp.push(fingerprintOf(apsIni.file));
  const settings = readSettings(apsIni, base, dir ?? base);

  const tenants = new Map<string, Tenant>();
  for (const f of iniFiles(dir, 'tenants.d')) {
    fp.push(fingerprintOf(f));
    const t = readTenant(readIni(f));
    tenants.set(t.id, t);
  }
  if (!tenants.has(DEFAULT_TENANT)) {
    tenants.set(DEFAULT_TENANT, { id: DEFAULT_TENANT, name: 'Default', file: '(built-in)', ipDnsMap: [] });
  }

  const templates = new Map<string, Template>();
  const templateFiles = iniFiles(dir, 'templates.d').map((f) => {
    fp.push(fingerprintOf(f));
    return readIni(f);
  });
  const inherited = inheritTemplates(templateFiles);
  for (const own of templateFiles) {
    const ini = inherited.get(path.basename(own.file, '.ini'))!;
    const t = readTemplate(ini);
    if (t.tenant !== '*' && !tenants.has(t.tenant)) {
      throw ini.error('template', 'tenant', `no tenant "${t.tenant}"`, `* or one of ${[...tenants.keys()].join(', ')}`);
    }
    templates.set(t.name, t);
  }

  const extensions = new Map<string, Extension>();
  for (const f of iniFiles(dir, 'extensions.d')) {
    fp.push(fingerprintOf(f));
    const ini = readIni(f);
    for (const e of readExtensions(ini)) {
      if (!tenants.has(e.tenant)) {
        throw ini.error(e.number, 'tenant', `no tenant "${e.tenant}"`, `one of ${[...tenants.keys()].join(', ')}`);
      }
      const key = `${e.tenant}/${e.number}`;
      const prev = extensions.get(key);
      if (prev) {
        throw new ApsError('APS_ERR_CONFIG', `extension ${e.number} of tenant ${e.tenant} is defined twice (also in ${prev.file}:${prev.line})`, {
          file: e.file, line: e.line, key: `[${e.number}]`, expected: 'each extension once per tenant',
        });
      }
      extensions.set(key, e);
    }
  }

  if (settings.pbx.pjsipConf) {
    // the PBX's own extensions ([pbx] pjsip_conf, read only); extensions.d wins on a clash
    const pjsip = readPjsipConf(settings.pbx.pjsipConf);
    for (const f of pjsip.files) fp.push(fingerprintOf(f));
    warnings.push(...mergePjsipExtensions({ extensions, tenants, settings }, pjsip));
  }

  const disc = settings.discovery;
  if (!tenants.has(disc.tenant)) {
    throw apsIni!.error('discovery', 'tenant', `no tenant "${disc.tenant}"`, `one of ${[...tenants.keys()].join(', ')}`);
  }
  if (disc.template && !templates.has(disc.template)) {
    throw apsIni!.error('discovery', 'template', `no template "${disc.template}"`, `one of ${[...templates.keys()].join(', ') || '(none)'}`);
  }
  if (settings.provisioning.pin) warnings.push('[provisioning] pin is written in clear: replace it with pin_hash = (the output of apsctl pin hash)');
  const { security } = settings;
  if (security.auth !== 'none' && !security.username) {
    warnings.push(`[security] auth = ${security.auth} but no username/password is set: files with secrets are not served over HTTP until they are`);
  }
  if (security.auth === 'basic') warnings.push('[security] auth = basic sends the site password in clear over HTTP; prefer digest');
  if (security.tftpSecrets === 'always') warnings.push('[security] tftp_secrets = always: anyone who can guess a MAC can read its SIP passwords over TFTP');
  for (const t of templates.values()) {
    if (!t.security.adminPassword) warnings.push(`${t.file}: [security] admin_password is empty: the phones keep their factory admin password`);
  }
  return { dir, settings, tenants, templates, extensions, warnings, fingerprint: fp.join('|') };
}

function iniFiles(dir: string | null, sub: string): string[] {
  if (!dir) return [];
  const d = path.join(dir, sub);
  let names: string[];
  try {
    names = fs.readdirSync(d);
  } catch {
    return [];
  }
  return names.filter((n) => n.endsWith('.ini') && !n.startsWith('.')).sort().map((n) => path.join(d, n));
}

/** A file's identity for the fingerprint: its real path (the same whichever way the directory was named), size and mtime. */
function fingerprintOf(file: string): string {
  const st = fs.statSync(file);
  return `${fs.realpathSync(file)}:${st.size}:${st.mtimeMs}`;
}
