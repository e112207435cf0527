/**
 * aps.ini → typed settings. Every key is optional; the defaults below are the documented
 * ones (etc/aps.ini lists them all, commented out).
 */
import os from 'node:os';
import path from 'node:path';
import type { IniFile } from './ini-file.js';
import { SectionReader, type HostPort } from './fields.js';
import type { SubnetList } from '../net/subnets.js';
import { readIpDnsMap, type IpDnsMap } from './ipmap-section.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type AuthMode = 'digest' | 'basic' | 'none';
export type TftpSecrets = 'never' | 'lease' | 'always';

export const DEFAULT_TRUSTED = '127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, ::1/128, fc00::/7, fe80::/10';

export interface Settings {
  server: { stateDir: string; firmwareDir: string; logLevel: LogLevel; securityLog: string };
  http: { listen: HostPort[]; alias: string };
  https: { listen: HostPort[]; cert: string; key: string; clientCa: string };
  tftp: { enabled: boolean; listen: HostPort[]; maxBlksize: number; maxWindowsize: number };
  provisioning: { sipServer: string; url: string };
  security: {
    auth: AuthMode; username: string; password: string; realm: string; tftpSecrets: TftpSecrets;
    /** lease binding proves a MAC only from these; also never banned */
    trustedSubnets: SubnetList;
    /** never banned (still need proof for secrets) */
    allow: SubnetList;
    banAfter: number; banWindowMs: number; banTimeMs: number;
    /** unknown-MAC lookups per minute, all sources together; 0 = no budget */
    unknownBudget: number;
  };
  ipDnsMap: IpDnsMap;
}

export const KNOWN_SECTIONS = ['server', 'http', 'https', 'tftp', 'provisioning', 'security', 'ip_dns_map'] as const;

/** `base` resolves relative paths (the working directory of apsd). */
export function readSettings(ini: IniFile | null, base = process.cwd(), configDir = base): Settings {
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
  const securityLog = server.str('security_log', '');
  server.done();

  const http = new SectionReader(file, 'http');
  const listen = http.listen('listen', '0.0.0.0:8080');
  const alias = http.str('alias', 'provisioning').replace(/^\/+|\/+$/g, '');
  if (!/^[A-Za-z0-9._-]*$/.test(alias) || alias === '.' || alias === '..') {
    http.fail('alias', `"${alias}" is not a path segment`, 'letters, digits, ".", "_" or "-", e.g. provisioning');
  }
  http.done();

  const hs = new SectionReader(file, 'https');
  const https = {
    listen: hs.listen('listen', ''),
    cert: hs.file('cert', configDir),
    key: hs.file('key', configDir),
    clientCa: hs.file('client_ca', configDir),
  };
  if (https.listen.length && (!https.cert || !https.key)) hs.fail(https.cert ? 'key' : 'cert', 'HTTPS needs a certificate and its key', 'cert = <PEM file> and key = <PEM file>');
  hs.done();

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
    trustedSubnets: sec.subnets('trusted_subnets', DEFAULT_TRUSTED),
    allow: sec.subnets('allow', ''),
    banAfter: sec.int('ban_after', 10, 1, 100000),
    banWindowMs: sec.duration('ban_window', '60s', 1000),
    banTimeMs: sec.duration('ban_time', '1h', 0),
    unknownBudget: sec.int('unknown_budget', 300, 0, 10_000_000),
  };
  if (/["\\]/.test(security.realm)) sec.fail('realm', 'the realm may not contain " or \\', 'plain text, e.g. aps');
  if (security.username.includes(':')) sec.fail('username', 'a user name may not contain ":"', 'a user name without ":"');
  if ((security.username === '') !== (security.password === '')) {
    sec.fail(security.username ? 'password' : 'username', 'username and password go together', 'both set, or both empty');
  }
  sec.done();

  return {
    server: { stateDir, firmwareDir, logLevel, securityLog: securityLog ? path.resolve(base, securityLog) : '' },
    http: { listen, alias },
    https,
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
