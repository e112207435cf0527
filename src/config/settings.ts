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
  server: {
    stateDir: string; firmwareDir: string; logLevel: LogLevel; securityLog: string;
    /** observations of fetches kept per device, and how long (ms) */
    observationsPerDevice: number; observationsMs: number;
  };
  http: {
    listen: HostPort[]; alias: string;
    /** open connections at most (HTTP and HTTPS each); past it new ones get 503; 0 = from the descriptor limit */
    maxConnections: number;
    /** open connections from one address at most; past it 503 */
    perSource: number;
    /** a keep-alive connection idle this long is closed */
    idleTimeoutMs: number;
  };
  https: { listen: HostPort[]; cert: string; key: string; clientCa: string };
  tftp: {
    enabled: boolean; listen: HostPort[]; maxBlksize: number; maxWindowsize: number;
    /** largest `timeout` option (seconds) acknowledged; a larger one is not (the server keeps this as its retransmit interval) */
    maxTimeoutS: number;
    /** a transfer whose OACK or first block is not acknowledged within this is dropped */
    firstAckMs: number;
    /** concurrent transfers, all sources / from one address */
    maxTransfers: number; perSource: number;
  };
  provisioning: {
    sipServer: string; url: string;
    /** whether [provisioning] url was written (else derived from the HTTP listener) */
    urlSet: boolean;
    /** scrypt hash of the provisioning PIN (apsctl pin hash), or '' */
    pinHash: string;
    /** a plain PIN (accepted with a warning), or '' */
    pin: string;
    /** unprovisioned phones register as <unprov_prefix><mac12> */
    unprovPrefix: string;
  };
  discovery: {
    autoCreate: boolean;
    /** vendor ids; empty = every vendor */
    allowVendors: string[];
    /** of the relay or of the offered address; empty = any */
    allowSubnets: SubnetList;
    tenant: string;
    template: string;
    /** epoch ms; 0 = no end */
    autoCreateUntil: number;
  };
  dhcp: { capture: string[] };
  pnp: { enabled: boolean; interface: string; port: number };
  dhcpServer: {
    enabled: boolean; mode: 'full' | 'inform'; interface: string;
    rangeStart: string; rangeEnd: string; netmask: string; router: string;
    dns: string[]; ntp: string[]; leaseTimeMs: number; domain: string;
  };
  pinSettings: {
    agiListen: HostPort[]; maxAttempts: number; lockoutMs: number;
    /** FastAGI: the AGI environment must arrive within this of the connection */
    agiEnvTimeoutMs: number;
    /** FastAGI sessions at most, all sources / from one address */
    agiMaxSessions: number; agiPerSource: number;
  };
  pbx: { accountsFile: string; unprovContext: string; pjsipConf: string; allowShared: boolean };
  api: { token: string };
  /** firmware rollouts: how often apsd steps them, and how long a phone may take to come back upgraded (unless its vendor says) */
  firmware: { checkEveryMs: number; upgradeLimitMs: number };
  resync: { method: 'notify' | 'ami' | 'none'; port: number; amiHost: string; amiPort: number; amiUser: string; amiSecret: string };
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

export const KNOWN_SECTIONS = ['server', 'http', 'https', 'tftp', 'provisioning', 'security', 'ip_dns_map', 'discovery', 'dhcp', 'pnp', 'dhcp_server', 'pin', 'pbx', 'api', 'resync', 'firmware'] as const;

/** A PIN that is short or trivially guessable is refused at start-up. */
export function weakPin(pin: string): string | null {
  if (!/^\d+$/.test(pin)) return 'a PIN is digits only (the phone keypad sends digits)';
  if (pin.length < 6) return `a PIN of ${pin.length} digits is too short`;
  if (/^(\d)\1+$/.test(pin)) return 'a PIN of one repeated digit is trivially guessable';
  const asc = '01234567890123456789';
  const desc = '98765432109876543210';
  if (asc.includes(pin) || desc.includes(pin)) return 'a PIN of consecutive digits is trivially guessable';
  if (/^(\d{1,3})\1+$/.test(pin)) return 'a PIN made of one short group repeated is trivially guessable';
  return null;
}

export const PIN_HASH_RE = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=_-]+\$[A-Za-z0-9+/=_-]+$/;

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
  const observationsPerDevice = server.int('observations_per_device', 50, 1, 10_000);
  const observationsMs = server.duration('observations_keep', '30d', 60_000, 3650 * 86400_000);
  server.done();

  const http = new SectionReader(file, 'http');
  const listen = http.listen('listen', '0.0.0.0:8080');
  const alias = http.str('alias', 'provisioning').replace(/^\/+|\/+$/g, '');
  if (!/^[A-Za-z0-9._-]*$/.test(alias) || alias === '.' || alias === '..') {
    http.fail('alias', `"${alias}" is not a path segment`, 'letters, digits, ".", "_" or "-", e.g. provisioning');
  }
  const httpLimits = {
    maxConnections: http.int('max_connections', 0, 0, 1_000_000),
    perSource: http.int('per_source', 256, 1, 1_000_000),
    idleTimeoutMs: http.duration('idle_timeout', '5s', 100, 3600_000),
  };
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
    maxTimeoutS: tftp.int('max_timeout', 5, 1, 255),
    firstAckMs: tftp.duration('first_ack_timeout', '5s', 500, 300_000),
    maxTransfers: tftp.int('max_transfers', 5000, 1, 1_000_000),
    perSource: tftp.int('per_source', 32, 1, 1_000_000),
  };
  tftp.done();

  const prov = new SectionReader(file, 'provisioning');
  const defaultHost = firstHost(listen) ?? os.hostname();
  const sipServer = prov.host('sip_server', defaultHost);
  const port = listen[0]?.port ?? 8080;
  const defaultUrl = `http://${defaultHost.includes(':') ? `[${defaultHost}]` : defaultHost}${port === 80 ? '' : `:${port}`}/${alias ? alias + '/' : ''}`;
  const urlSet = prov.has('url');
  let url = prov.url('url', defaultUrl);
  if (!url.endsWith('/')) url += '/';
  const pinHash = prov.str('pin_hash', '');
  if (pinHash && !PIN_HASH_RE.test(pinHash)) prov.fail('pin_hash', 'not a PIN hash', 'the output of apsctl pin hash (scrypt$…)');
  const pin = prov.str('pin', '');
  if (pin) {
    const weak = weakPin(pin);
    if (weak) prov.fail('pin', weak, 'at least 6 digits, not a repetition or a sequence; better: pin_hash from apsctl pin hash');
  }
  const unprovPrefix = prov.str('unprov_prefix', 'unprov-');
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(unprovPrefix)) prov.fail('unprov_prefix', `"${unprovPrefix}" cannot start a SIP user name`, 'letters, digits, "_", "-" or "."');
  prov.done();

  const disc = new SectionReader(file, 'discovery');
  const untilRaw = disc.str('auto_create_until', '');
  const until = untilRaw ? Date.parse(untilRaw) : 0;
  if (untilRaw && !Number.isFinite(until)) disc.fail('auto_create_until', `"${untilRaw}" is not a time`, 'an ISO 8601 time, e.g. 2026-11-26T18:00:00Z');
  const allowVendors = disc.str('allow_vendors', '').split(',').map((x) => x.trim().toLowerCase()).filter(Boolean);
  const discovery = {
    autoCreate: disc.bool('auto_create', true),
    allowVendors,
    allowSubnets: disc.subnets('allow_subnets', ''),
    tenant: disc.str('tenant', 'default'),
    template: disc.str('template', ''),
    autoCreateUntil: until,
  };
  disc.done();

  const dh = new SectionReader(file, 'dhcp');
  const capture = dh.str('capture', '').split(',').map((x) => x.trim()).filter(Boolean);
  for (const ifname of capture) if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(ifname)) dh.fail('capture', `"${ifname}" is not an interface name`, 'interface names, comma-separated, e.g. eth1, vlan20');
  dh.done();

  const pn = new SectionReader(file, 'pnp');
  const pnp = { enabled: pn.bool('enabled', false), interface: pn.str('interface', ''), port: pn.int('port', 5060, 1, 65535) };
  pn.done();

  const ds = new SectionReader(file, 'dhcp_server');
  const ipList = (key: string) => ds.str(key, '').split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(x) || x.split('.').some((o) => Number(o) > 255)) ds.fail(key, `"${x}" is not an IPv4 address`, 'IPv4 addresses, comma-separated');
    return x;
  });
  const dsEnabled = ds.bool('enabled', false);
  const dsMode = ds.oneOf('mode', 'full', ['full', 'inform'] as const);
  const range = ds.str('range', '');
  const rm = /^(\d+\.\d+\.\d+\.\d+)\s*-\s*(\d+\.\d+\.\d+\.\d+)$/.exec(range);
  if (((dsEnabled && dsMode !== 'inform') || range) && !rm) ds.fail('range', range ? `"${range}" is not an address range` : 'the DHCP server needs an address range', 'first-last, e.g. 10.20.0.100-10.20.0.199');
  const dhcpServer = {
    enabled: dsEnabled,
    mode: dsMode,
    interface: ds.str('interface', ''),
    rangeStart: rm?.[1] ?? '',
    rangeEnd: rm?.[2] ?? '',
    netmask: ipList('netmask')[0] ?? '255.255.255.0',
    router: ipList('router')[0] ?? '',
    dns: ipList('dns'),
    ntp: ipList('ntp'),
    leaseTimeMs: ds.duration('lease_time', '1h', 60_000),
    domain: ds.str('domain', ''),
  };
  if (dsEnabled && !dhcpServer.interface) ds.fail('interface', 'the DHCP server answers on one interface only', 'an interface name, e.g. eth1');
  ds.done();

  const pi = new SectionReader(file, 'pin');
  const pinSettings = {
    agiListen: pi.listen('agi_listen', '127.0.0.1:4573'),
    maxAttempts: pi.int('max_attempts', 3, 1, 100),
    lockoutMs: pi.duration('lockout', '15m', 1000),
    agiEnvTimeoutMs: pi.duration('agi_env_timeout', '5s', 100, 600_000),
    agiMaxSessions: pi.int('agi_max_sessions', 64, 1, 100_000),
    agiPerSource: pi.int('agi_per_source', 16, 1, 100_000),
  };
  pi.done();

  const pb = new SectionReader(file, 'pbx');
  const pbx = {
    accountsFile: pb.str('accounts_file', ''),
    unprovContext: pb.str('unprov_context', 'aps-unprov'),
    pjsipConf: pb.str('pjsip_conf', ''),
    allowShared: pb.bool('allow_shared', false),
  };
  if (!/^[A-Za-z0-9_-]{1,79}$/.test(pbx.unprovContext)) pb.fail('unprov_context', `"${pbx.unprovContext}" is not a dialplan context name`, 'letters, digits, "_" or "-"');
  pb.done();

  const ap = new SectionReader(file, 'api');
  const api = { token: ap.str('token', '') };
  if (api.token && api.token.length < 20) ap.fail('token', 'the API token is too short to be secret', 'at least 20 random characters, e.g. from: openssl rand -hex 20');
  ap.done();

  const rs = new SectionReader(file, 'resync');
  const resync = {
    method: rs.oneOf('method', 'notify', ['notify', 'ami', 'none'] as const),
    port: rs.int('port', 5060, 1, 65535),
    amiHost: rs.host('ami_host', '127.0.0.1'),
    amiPort: rs.int('ami_port', 5038, 1, 65535),
    amiUser: rs.str('ami_user', ''),
    amiSecret: rs.str('ami_secret', ''),
  };
  if (resync.method === 'ami' && (!resync.amiUser || !resync.amiSecret)) rs.fail(resync.amiUser ? 'ami_secret' : 'ami_user', 'method = ami needs a manager user and secret', 'ami_user and ami_secret from manager.conf');
  rs.done();

  const fwr = new SectionReader(file, 'firmware');
  const firmware = {
    checkEveryMs: fwr.duration('check_every', '10s', 1000, 3_600_000),
    upgradeLimitMs: fwr.duration('upgrade_limit', '20m', 1000, 86_400_000),
  };
  fwr.done();

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
    server: { stateDir, firmwareDir, logLevel, securityLog: securityLog ? path.resolve(base, securityLog) : '', observationsPerDevice, observationsMs },
    http: { listen, alias, ...httpLimits },
    https,
    tftp: tftpS,
    provisioning: { sipServer, url, urlSet, pinHash, pin, unprovPrefix },
    discovery,
    dhcp: { capture },
    pnp,
    dhcpServer,
    pinSettings,
    pbx: { ...pbx, accountsFile: pbx.accountsFile ? path.resolve(base, pbx.accountsFile) : '', pjsipConf: pbx.pjsipConf ? path.resolve(configDir, pbx.pjsipConf) : '' },
    api,
    resync,
    firmware,
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
