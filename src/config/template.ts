/**
 * templates.d/<name>.ini: a hardware template. `[template]` names the vendor, model, tenant
 * (`*` = global) and firmware; one section per tab of the template editor holds
 * vendor-neutral settings that each vendor maps to its own parameter names.
 */
import path from 'node:path';
import net from 'node:net';
import type { IniFile } from './ini-file.js';
import { SectionReader, isHost, parseHostPort } from './fields.js';
import { parseDigitMap, type DigitMap } from './digitmap.js';

export const KEY_TYPES = ['line', 'blf', 'speeddial', 'transfer', 'park', 'dtmf', 'url', 'none'] as const;
export type KeyType = (typeof KEY_TYPES)[number];
export const LANGUAGES = ['en', 'fr', 'de', 'es', 'it', 'nl', 'pt', 'pl', 'ru', 'tr'] as const;
export const TONE_COUNTRIES = ['us', 'gb', 'ca', 'au', 'fr', 'de', 'at', 'ch', 'be', 'nl', 'es', 'it', 'pt', 'pl', 'ru'] as const;
export const TONE_NAMES = ['dial', 'ring', 'busy', 'congestion', 'callwaiting'] as const;
export const TRANSPORTS = ['udp', 'tcp', 'tls'] as const;
export const DTMF_MODES = ['rfc2833', 'inband', 'info', 'rfc2833+info'] as const;
export type DtmfMode = (typeof DTMF_MODES)[number];
export type Transport = (typeof TRANSPORTS)[number];

/** What a render uses besides the template: the device's lines, whether it has its own credentials. */
export interface OptionalUsage {
  lines: { cid_source: string; local_port: string; srtp: number }[];
  credentials: boolean;
  unprovisioned: boolean;
}

/**
 * Template keys a vendor (or a model family) may declare it has no setting for (vendor.json
 * "unsupported"), each with the test of whether a render uses it: one that does gets a render
 * warning. `keyN` / `groupN` stand for every numbered key; `line.*` are the line settings of
 * `apsctl line set`, `provisioning.credentials` the device's own HTTP credentials.
 */
export const OPTIONAL_KEYS: Record<string, (t: Template, u?: OptionalUsage) => boolean> = {
  'general.check_time': (t) => t.general.checkTime !== null,
  'general.firmware_url': (t) => t.general.firmwareUrl !== '' || t.firmware !== '',
  'general.periodic_check': (t) => t.general.periodicCheck > 0,
  'server.dtmf_mode': (t) => t.server.dtmfMode !== 'rfc2833',
  'server.port': (t) => t.server.port !== 5060,
  'server.transport': (t) => t.server.transport !== 'udp',
  'server.outbound_proxy': (t) => t.server.outboundProxy !== '',
  'server.expires': (t) => t.server.expires !== 3600,
  'network.qos_sip_dscp': (t) => t.network.qosSipDscp !== null,
  'network.qos_rtp_dscp': (t) => t.network.qosRtpDscp !== null,
  'network.nat': (t) => t.network.nat,
  'network.rport': (t) => t.network.rport,
  'network.stun_server': (t) => t.network.stunServer !== '',
  'network.vlan_id': (t) => t.network.vlanId > 0,
  'network.lldp': (t) => t.network.lldp,
  'network.cdp': (t) => t.network.cdp,
  'datetime.ntp_server2': (t) => t.datetime.ntpServer2 !== '',
  'datetime.time_zone_name': (t) => t.datetime.timeZoneName !== '',
  'datetime.dst': (t) => t.datetime.dst !== 'auto',
  'phone.language': (t) => t.phone.language !== 'en',
  'phone.tone_country': (t) => t.phone.toneCountry !== 'us',
  'phone.tones': (t) => t.phone.tones.length > 0,
  'phone.dial_plan': (t) => t.phone.dialPlan !== null,
  'dsskeys.keyN': (t, u) => !u?.unprovisioned && t.dsskeys.keys.length > 0,
  'dsskeys.expansion_module': (t, u) => !u?.unprovisioned && t.dsskeys.expansionModule !== 'none',
  'progkeys.keyN': (t, u) => !u?.unprovisioned && t.progkeys.length > 0,
  'security.admin_password': (t, u) => !u?.unprovisioned && t.security.adminPassword !== '',
  'security.allow_direct_ip_call': (t) => t.security.allowDirectIpCall,
  'security.trusted_server_only': (t) => t.security.trustedServerOnly,
  'paging.groupN': (t, u) => !u?.unprovisioned && t.paging.length > 0,
  'services.directory_url': (t, u) => !u?.unprovisioned && t.services.directoryUrl !== '',
  'ldap.enabled': (t, u) => !u?.unprovisioned && t.ldap.enabled,
  'line.cid_source': (_t, u) => !!u?.lines.some((l) => l.cid_source !== 'from'),
  'line.local_port': (_t, u) => !!u?.lines.some((l) => l.local_port !== ''),
  'line.srtp': (_t, u) => !!u?.lines.some((l) => l.srtp === 1),
  'provisioning.credentials': (_t, u) => !!u?.credentials,
};

export interface KeyDef {
  index: number;
  type: KeyType;
  value: string;
  label: string;
  line: number;
}

export interface Template {
  name: string;
  file: string;
  /** where [template] vendor and model stand, for errors found after loading (an unknown vendor or model) */
  lines?: { vendor: number; model: number };
  /** the template it extends ('' = none), and where each effective key comes from (`[section]key` → file:line) */
  extends: string;
  /** the firmware version the files are written for ('' = the version the phone reports, else the newest) */
  firmwareVersion: string;
  sources?: Map<string, { file: string; line: number }>;
  vendor: string;
  model: string;
  tenant: string; // '*' = global
  firmware: string;
  general: {
    provisioningUrl: string; firmwareUrl: string; periodicCheck: number;
    /** daily check: at `from`, or at a moment between `from` and `to` (minutes after midnight); null = none */
    checkTime: { from: number; to: number } | null;
  };
  server: { registrar: string; port: number; transport: Transport; outboundProxy: string; expires: number; dtmfMode: DtmfMode };
  network: {
    nat: boolean; rport: boolean; stunServer: string; vlanId: number; vlanPriority: number; lldp: boolean; cdp: boolean;
    /** DSCP of SIP and RTP packets, 0-63; null = the phone's own default */
    qosSipDscp: number | null; qosRtpDscp: number | null;
  };
  datetime: { ntpServer1: string; ntpServer2: string; utcOffsetMinutes: number; dst: 'auto' | 'on' | 'off'; timeZoneName: string };
  phone: { language: string; toneCountry: string; tones: { name: string; value: string }[]; dialPlan: DigitMap | null };
  dsskeys: { keys: KeyDef[]; expansionModule: string; expansionCount: number; moduleKeys: (KeyDef & { module: number })[] };
  progkeys: KeyDef[];
  security: { adminPassword: string; allowDirectIpCall: boolean; trustedServerOnly: boolean };
  paging: { index: number; address: string; port: number; label: string }[];
  services: { directoryUrl: string };
  ldap: {
    enabled: boolean; server: string; port: number; base: string; user: string; password: string;
    nameFilter: string; numberFilter: string; nameAttr: string; numberAttr: string;
  };
}

export const TEMPLATE_SECTIONS = ['template', 'general', 'server', 'network', 'datetime', 'phone', 'dsskeys', 'progkeys', 'security', 'paging', 'services', 'ldap'] as const;

export function readTemplate(ini: IniFile): Template {
  const name = path.basename(ini.file, '.ini');
  for (const s of ini.sections.keys()) {
    if (!(TEMPLATE_SECTIONS as readonly string[]).includes(s)) {
      throw ini.error(s, undefined, `unknown section [${s}]`, `one of ${TEMPLATE_SECTIONS.map((x) => `[${x}]`).join(', ')}`);
    }
  }
  if (!ini.sections.has('template')) {
    throw ini.error('template', undefined, 'missing section [template]', '[template] with vendor and model');
  }
  const t = new SectionReader(ini, 'template');
  const vendor = t.str('vendor', '').toLowerCase();
  const model = t.str('model', '');
  if (!vendor) t.fail('vendor', 'missing', 'a vendor id (see apsctl vendor list)');
  if (!model) t.fail('model', 'missing', 'a model id, e.g. T46S (see apsctl vendor list)');
  const tenant = t.str('tenant', '*');
  if (tenant !== '*' && !/^[A-Za-z0-9_-]+$/.test(tenant)) t.fail('tenant', `"${tenant}" is not a tenant id`, '* (global) or a tenant id');
  const firmware = t.str('firmware', '');
  if (firmware && !/^[A-Za-z0-9._+-]+$/.test(firmware)) {
    t.fail('firmware', `"${firmware}" is not a plain file name`, 'a file name inside firmware_dir, e.g. T46S-66.86.0.15.rom');
  }
  const parent = t.str('extends', '');
  const firmwareVersion = t.str('firmware_version', '');
  if (firmwareVersion && !/^\d+(?:\.\d+)*$/.test(firmwareVersion)) t.fail('firmware_version', `"${firmwareVersion}" is not a version`, 'numbers and dots as the phone reports them, e.g. 66.86.0.15');
  t.done();

  const g = new SectionReader(ini, 'general');
  const general = {
    provisioningUrl: g.url('provisioning_url', ''),
    firmwareUrl: g.url('firmware_url', ''),
    periodicCheck: g.int('periodic_check', 1440, 0, 43200),
    checkTime: readCheckTime(g),
  };
  g.done();

  const s = new SectionReader(ini, 'server');
  const outboundProxy = s.str('outbound_proxy', '');
  if (outboundProxy && !isHost(outboundProxy) && !parseHostPort(outboundProxy)) {
    s.fail('outbound_proxy', `"${outboundProxy}" is not host or host:port`, 'host or host:port, e.g. sbc.example.com:5060');
  }
  const server = {
    registrar: s.host('registrar', ''),
    port: s.int('port', 5060, 1, 65535),
    transport: s.oneOf('transport', 'udp', TRANSPORTS),
    outboundProxy,
    expires: s.int('expires', 3600, 30, 86400),
    dtmfMode: s.oneOf('dtmf_mode', 'rfc2833', DTMF_MODES),
  };
  s.done();

  const n = new SectionReader(ini, 'network');
  const stun = n.str('stun_server', '');
  if (stun && !isHost(stun) && !parseHostPort(stun)) n.fail('stun_server', `"${stun}" is not host or host:port`, 'host or host:port');
  const network = {
    nat: n.bool('nat', false),
    rport: n.bool('rport', false),
    stunServer: stun,
    vlanId: n.int('vlan_id', 0, 0, 4094),
    vlanPriority: n.int('vlan_priority', 0, 0, 7),
    lldp: n.bool('lldp', true),
    cdp: n.bool('cdp', false),
    qosSipDscp: n.has('qos_sip_dscp') ? n.int('qos_sip_dscp', 0, 0, 63) : null,
    qosRtpDscp: n.has('qos_rtp_dscp') ? n.int('qos_rtp_dscp', 0, 0, 63) : null,
  };
  n.done();

  const d = new SectionReader(ini, 'datetime');
  const off = d.str('utc_offset', '+0');
  const om = /^([+-])?(\d{1,2})(?::([0-5]\d))?$/.exec(off.trim());
  if (!om || Number(om[2]) > 14) d.fail('utc_offset', `"${off}" is not a UTC offset`, '+H or +H:MM from -12 to +14, e.g. +1, -5, +5:30');
  const offMin = (om![1] === '-' ? -1 : 1) * (Number(om![2]) * 60 + Number(om![3] ?? 0));
  const datetime = {
    ntpServer1: d.host('ntp_server1', 'pool.ntp.org'),
    ntpServer2: d.host('ntp_server2', ''),
    utcOffsetMinutes: offMin,
    dst: d.oneOf('dst', 'auto', ['auto', 'on', 'off'] as const),
    timeZoneName: d.str('time_zone_name', ''),
  };
  d.done();

  const p = new SectionReader(ini, 'phone');
  const tones: { name: string; value: string }[] = [];
  for (const tn of TONE_NAMES) {
    const v = p.str(`tone_${tn}`, '');
    if (v && !/^[0-9+/,.:!* -]+$/.test(v)) p.fail(`tone_${tn}`, `"${v}" is not a tone description`, 'frequencies and cadence, e.g. 350+440/0 or 425/200,0/200');
    if (v) tones.push({ name: tn, value: v });
  }
  const phone = {
    language: p.oneOf('language', 'en', LANGUAGES),
    toneCountry: p.oneOf('tone_country', 'us', TONE_COUNTRIES),
    tones,
    dialPlan: readDialPlan(p),
  };
  p.done();

  const k = new SectionReader(ini, 'dsskeys');
  const keys: KeyDef[] = [];
  const moduleKeys: (KeyDef & { module: number })[] = [];
  const expansionModule = k.str('expansion_module', 'none');
  if (!/^[A-Za-z0-9_-]+$/.test(expansionModule)) k.fail('expansion_module', `"${expansionModule}" is not a module id`, 'none or the vendor module id, e.g. EXP50');
  const expansionCount = k.int('expansion_count', 0, 0, 6);
  for (const key of k.values.keys()) {
    let m = /^key(\d{1,3})$/.exec(key);
    if (m) {
      keys.push(parseKey(k, key, Number(m[1])));
      continue;
    }
    m = /^module(\d)_key(\d{1,3})$/.exec(key);
    if (m) {
      const module = Number(m[1]);
      if (module < 1 || module > expansionCount) k.fail(key, `module ${module} is beyond expansion_count = ${expansionCount}`, `module1 .. module${expansionCount}`);
      moduleKeys.push({ ...parseKey(k, key, Number(m[2])), module });
    }
  }
  k.done((key) => /^key\d{1,3}$|^module\d_key\d{1,3}$/.test(key));
  keys.sort((a, b) => a.index - b.index);
  moduleKeys.sort((a, b) => a.module - b.module || a.index - b.index);

  const pk = new SectionReader(ini, 'progkeys');
  const progkeys: KeyDef[] = [];
  for (const key of pk.values.keys()) {
    const m = /^key(\d{1,3})$/.exec(key);
    if (m) progkeys.push(parseKey(pk, key, Number(m[1])));
  }
  pk.done((key) => /^key\d{1,3}$/.test(key));
  progkeys.sort((a, b) => a.index - b.index);

  const sec = new SectionReader(ini, 'security');
  const security = {
    adminPassword: sec.str('admin_password', ''),
    allowDirectIpCall: sec.bool('allow_direct_ip_call', false),
    trustedServerOnly: sec.bool('trusted_server_only', true),
  };
  sec.done();

  const pg = new SectionReader(ini, 'paging');
  const paging: Template['paging'] = [];
  for (const key of pg.values.keys()) {
    const m = /^group(\d{1,2})$/.exec(key);
    if (!m) continue;
    const v = pg.raw(key)!;
    const gm = /^(\d+\.\d+\.\d+\.\d+):(\d{1,5})(?::(.*))?$/.exec(v);
    const ip = gm?.[1] ?? '';
    const first = Number(ip.split('.')[0]);
    if (!gm || !net.isIPv4(ip) || first < 224 || first > 239 || Number(gm[2]) > 65535 || Number(gm[2]) === 0) {
      pg.fail(key, `"${v}" is not a multicast group`, 'address:port[:label] with a 224.0.0.0/4 address, e.g. 224.0.1.116:10000:All phones');
    }
    paging.push({ index: Number(m[1]), address: gm![1], port: Number(gm![2]), label: gm![3] ?? '' });
  }
  pg.done((key) => /^group\d{1,2}$/.test(key));
  paging.sort((a, b) => a.index - b.index);

  const sv = new SectionReader(ini, 'services');
  const services = { directoryUrl: sv.url('directory_url', '') };
  sv.done();

  const l = new SectionReader(ini, 'ldap');
  const ldap = {
    enabled: l.bool('enabled', false),
    server: l.host('server', ''),
    port: l.int('port', 389, 1, 65535),
    base: l.str('base', ''),
    user: l.str('user', ''),
    password: l.str('password', ''),
    nameFilter: l.str('name_filter', '(|(cn=%)(sn=%))'),
    numberFilter: l.str('number_filter', '(|(telephoneNumber=%)(mobile=%))'),
    nameAttr: l.str('name_attr', 'cn'),
    numberAttr: l.str('number_attr', 'telephoneNumber'),
  };
  if (ldap.enabled && !ldap.server) l.fail('server', 'LDAP is enabled but no server is set', 'a host name or IP address');
  l.done();

  return {
    name, file: ini.file, extends: parent, firmwareVersion, sources: (ini as { sources?: Map<string, { file: string; line: number }> }).sources, lines: { vendor: ini.lineOf('template', 'vendor') || ini.lineOf('template'), model: ini.lineOf('template', 'model') || ini.lineOf('template') }, vendor, model, tenant, firmware, general, server, network, datetime, phone,
    dsskeys: { keys, expansionModule, expansionCount, moduleKeys }, progkeys, security, paging, services, ldap,
  };
}

function readCheckTime(r: SectionReader): { from: number; to: number } | null {
  const v = r.str('check_time', '');
  if (!v) return null;
  const m = /^([01]\d|2[0-3]):([0-5]\d)(?:-([01]\d|2[0-3]):([0-5]\d))?$/.exec(v);
  if (!m) r.fail('check_time', `"${v}" is not a time or a window`, 'HH:MM or HH:MM-HH:MM, e.g. 02:30 or 01:00-05:00');
  const from = Number(m![1]) * 60 + Number(m![2]);
  const to = m![3] ? Number(m![3]) * 60 + Number(m![4]) : from;
  return { from, to };
}

function readDialPlan(r: SectionReader): DigitMap | null {
  const v = r.str('dial_plan', '');
  if (!v) return null;
  try {
    return parseDigitMap(v);
  } catch (e) {
    return r.fail('dial_plan', (e as Error).message, 'an MGCP digit map (RFC 3435 2.1.5), e.g. (x.T|[2-9]xx|*xx|911)');
  }
}

function parseKey(r: SectionReader, key: string, index: number): KeyDef {
  const v = r.raw(key)!;
  const parts = v.split(':');
  const type = parts[0].trim().toLowerCase();
  if (!(KEY_TYPES as readonly string[]).includes(type)) {
    r.fail(key, `"${type}" is not a key type`, `type:value:label[:line] with type one of ${KEY_TYPES.join(', ')}`);
  }
  if (index < 1) r.fail(key, 'key numbers start at 1', 'key1, key2, ...');
  // a url key's value holds ':' itself: type:value:label where value may be a URL
  let value: string;
  let label: string;
  let line = 1;
  if (type === 'url') {
    const rest = parts.slice(1).join(':');
    const m = /^(.*?):([^:/]*)$/.exec(rest);
    value = m ? m[1] : rest;
    label = m ? m[2] : '';
  } else {
    value = (parts[1] ?? '').trim();
    label = (parts[2] ?? '').trim();
    if (parts[3] !== undefined) {
      if (!/^\d{1,2}$/.test(parts[3].trim())) r.fail(key, `"${parts[3]}" is not a line number`, 'type:value:label:line with line 1..99');
      line = Number(parts[3].trim());
    }
  }
  if (type === 'line') {
    if (!/^\d{1,2}$/.test(value || '1')) r.fail(key, `"${value}" is not a line number`, 'line:<line number>:<label>, e.g. line:1:');
    line = Number(value || '1');
    value = String(line);
  } else if (type !== 'none' && value === '') {
    r.fail(key, `a ${type} key needs a value`, `${type}:<value>:<label>`);
  }
  return { index, type: type as KeyType, value, label, line };
}
