/**
 * aps.ini → typed settings. Every key is optional; the defaults below are the documented
 * ones (etc/aps.ini lists them all, commented out).
 */
import os from 'node:os';
import path from 'node:path';
import type { IniFile } from './ini-file.js';
import { SectionReader, type HostPort } from './fields.js';
import { readIpDnsMap, type IpDnsMap } from './ipmap-section.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type AuthMode = 'digest' | 'basic' | 'none';
export type TftpSecrets = 'never' | 'lease' | 'always';

export interface Settings {
  server: { stateDir: string; firmwareDir: string; logLevel: LogLevel };
  http: { listen: HostPort[]; alias: string };
  tftp: { enabled: boolean; listen: HostPort[]; maxBlksize: number; maxWindowsize: number };
  provisioning: { sipServer: string; url: string };
  security: { auth: AuthMode; username: string; password: string; realm: string; tftpSecrets: TftpSecrets };
  ipDnsMap: IpDnsMap;
}

export const KNOWN_SECTIONS = ['server', 'http', 'tftp', 'provisioning', 'security', 'ip_dns_map'] as const;

/** `base` resolves relative paths (the working directory of apsd). */
export function readSettings(ini: IniFile | null, base = process.cwd()): Settings {
  const file = ini ?? emptyIni();
  for (const name of file.sections.keys()) {
    if (!(KNOWN_SECTIONS as readonly string[]).includes(name)) {
      throw file.error(name, undefined, `unknown section [${name}]`, `one of ${KNOWN_SECTIONS.map((s) => `[${s}]`).join(', ')}`);
    }
  }
  const server = new SectionReader(file, 'server');
  const stateDir = path.resolve(base, server.str('state_dir', './var'));
  const firmwareDir = path.resolve(base, server.str('firmware_dir', path.join(stateDir, 'firmware')));
  const logLevel = server.oneOf('log_level', 'info', ['debug', 'info', 'warn', 'error'] as const);
  server.done();

  const http = new SectionReader(file, 'http');
  const listen = http.listen('listen', '0.0.0.0:8080');
  const alias = http.str('alias', 'provisioning').replace(/^\/+|\/+$/g, '');
  if (!/^[A-Za-z0-9._-]*$/.test(alias) || alias === '.' || alias === '..') {
    http.fail('alias', `"${alias}" is not a path segment`, 'letters, digits, ".", "_" or "-", e.g. provisioning');
  }
  http.done();

  const tftp = new SectionReader(file, 'tftp');
  const tftpS = {
    enabled: tftp.bool('enabled', true),
    listen: tftp.listen('listen', '0.0.0.0:6969'),
    maxBlksize: tftp.int('max_blksize', 8192, 512, 65464),
    maxWindowsize: tftp.int('max_windowsize', 64, 1, 65535),
  };
  tftp.done();

  const prov = new SectionReader(file, 'provisioning');
  const defaultHost = firstHost(listen) ?? os.hostname();
  const sipServer = prov.host('sip_server', defaultHost);
  const port = listen[0]?.port ?? 8080;
  const defaultUrl = `http://${defaultHost.includes(':') ? `[${defaultHost}]` : defaultHost}${port === 80 ? '' : `:${port}`}/${alias ? alias + '/' : ''}`;
  let url = prov.url('url', defaultUrl);
  if (!url.endsWith('/')) url += '/';
  prov.done();

  const sec = new SectionReader(file, 'security');
  const security = {
    auth: sec.oneOf('auth', 'digest', ['digest', 'basic', 'none'] as const),
    username: sec.str('username', ''),
    password: sec.str('password', ''),
    realm: sec.str('realm', 'aps'),
    tftpSecrets: sec.oneOf('tftp_secrets', 'lease', ['never', 'lease', 'always'] as const),
  };
  if (/["\\]/.test(security.realm)) sec.fail('realm', 'the realm may not contain " or \\', 'plain text, e.g. aps');
  if (security.username.includes(':')) sec.fail('username', 'a user name may not contain ":"', 'a user name without ":"');
  if ((security.username === '') !== (security.password === '')) {
    sec.fail(security.username ? 'password' : 'username', 'username and password go together', 'both set, or both empty');
  }
  sec.done();

  return {
    server: { stateDir, firmwareDir, logLevel },
    http: { listen, alias },
    tftp: tftpS,
    provisioning: { sipServer, url },
    security,
    ipDnsMap: readIpDnsMap(file, 'ip_dns_map'),
  };
}

function firstHost(list: HostPort[]): string | undefined {
  const h = list.find((l) => l.host !== '0.0.0.0' && l.host !== '::');
  return h?.host;
}

function emptyIni(): IniFile {
  return {
    file: '(built-in defaults)',
    sections: new Map(),
    lineOf: () => 0,
    error: () => {
      throw new Error('unreachable');
    },
  };
}
