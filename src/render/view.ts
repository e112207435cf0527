/**
 * The one place where the view handed to mustache is built: from settings, tenant, template,
 * device and lines, through the vendor's value maps. Templates stay logic-less; every value
 * they print is derived here. Booleans come twice: `x` is the vendor's own spelling (1/0,
 * on/off) and `xOn` a true boolean for mustache sections.
 */
import crypto from 'node:crypto';
import { macColon, type Mac } from '../mac.js';
import type { Config, Extension, Template, Tenant } from '../config/index.js';
import { parseHostPort } from '../config/fields.js';
import type { DeviceRow, LineRow } from '../store/index.js';
import type { Vendor, VendorModel } from '../vendors/registry.js';
import { OPTIONAL_KEYS, readTemplate, TEMPLATE_SECTIONS, type KeyDef } from '../config/template.js';
import { parseIni } from '../config/ini-file.js';

export interface ViewInput {
  /** the device's own HTTP credentials, written into its config so that it proves itself on later fetches */
  credentials?: { username: string; password: string };
  config: Config;
  vendor: Vendor;
  model: VendorModel;
  tenant: Tenant;
  template: Template;
  device?: DeviceRow;
  lines?: LineRow[];
  /** the device's own SIP account while it is unprovisioned (src/store/pin.ts unprovAccount) */
  unprov?: { account: string; password: string };
}

/** What an unprovisioned phone shows on its display and as its line label. */
export const UNPROV_LABEL = 'UNPROV';

export interface ViewWarnings {
  warnings: string[];
}

type Dict = Record<string, unknown>;

export function buildView(input: ViewInput, out: ViewWarnings = { warnings: [] }): Dict {
  const { config, vendor, model, tenant, template, device } = input;
  const s = config.settings;
  const maps = vendor.maps;
  const vmaps = model.variant ? vendor.variantMaps?.[model.variant] : undefined;
  const map = (name: string, value: string): string => vmaps?.[name]?.[value] ?? maps[name]?.[value] ?? value;
  const bool = (b: boolean) => map('bool', String(b));
  const unsupported = new Set([...(vendor.unsupported ?? []), ...(model.unsupported ?? [])]);
  for (const w of unsupportedSet(vendor, model, template)) out.warnings.push(w);
  const dtmf = template.server.dtmfMode;
  const dtmfMapped = !unsupported.has('server.dtmf_mode') && (!maps.dtmfMode || maps.dtmfMode[dtmf] !== undefined);
  if (!unsupported.has('server.dtmf_mode') && !dtmfMapped) out.warnings.push(`server.dtmf_mode: ${vendor.name} has no "${dtmf}" key: left out`);

  const provisioningUrl = template.general.provisioningUrl || s.provisioning.url;
  const purl = new URL(provisioningUrl);
  const firmwareUrl = template.general.firmwareUrl || (template.firmware ? provisioningUrl + template.firmware : '');
  const registrar = template.server.registrar || s.provisioning.sipServer;
  const transport = template.server.transport;
  const proxy = template.server.outboundProxy ? parseHostPort(template.server.outboundProxy) : null;
  const sip = {
    registrar,
    port: template.server.port,
    transport: map('transport', transport),
    transportName: transport,
    transportUpper: transport.toUpperCase(),
    outboundProxy: template.server.outboundProxy,
    outboundProxyHost: proxy ? proxy.host : template.server.outboundProxy,
    outboundProxyPort: proxy ? proxy.port : template.server.outboundProxy ? template.server.port : '',
    hasOutboundProxy: template.server.outboundProxy !== '',
    expires: template.server.expires,
    dtmfMode: dtmfMapped ? map('dtmfMode', dtmf) : '',
    dtmfModeName: dtmf,
    hasDtmfMode: dtmfMapped,
    /** the DTMF paths the mode uses: RTP events (RFC 2833), audio in the media stream, SIP INFO */
    dtmfRfc2833: bool(dtmf === 'rfc2833' || dtmf === 'rfc2833+info'), dtmfRfc2833On: dtmf === 'rfc2833' || dtmf === 'rfc2833+info',
    dtmfInband: bool(dtmf === 'inband'), dtmfInbandOn: dtmf === 'inband',
    dtmfInfo: bool(dtmf === 'info' || dtmf === 'rfc2833+info'), dtmfInfoOn: dtmf === 'info' || dtmf === 'rfc2833+info',
    /** DTMF goes in the media path (RFC 2833 or in-band), not only in SIP INFO */
    dtmfRtp: bool(dtmf !== 'info'), dtmfRtpOn: dtmf !== 'info',
  };

  const lines: Dict[] = [];
  // Unprovisioned: line 1 is the phone's own unprov account at [provisioning] sip_server (the
  // template's port, transport and proxy), and nothing of value from the template: no other
  // line, no keys, no paging, directory or LDAP, no admin password.
  // A disabled phone gets nothing of value either, and not even its unprov account: for the
  // templates both are `unprovisioned` (everything of value left out); `disabled` tells them apart.
  const disabled = device?.state === 'disabled';
  const unprovisioned = device?.state === 'unprovisioned' || disabled;
  if (unprovisioned && !disabled && input.unprov) {
    lines.push({
      index: 1,
      user: input.unprov.account,
      authUser: input.unprov.account,
      password: input.unprov.password,
      displayName: UNPROV_LABEL,
      label: UNPROV_LABEL,
      ...sip,
      registrar: s.provisioning.sipServer,
      cidSource: map('cidSource', 'from'),
      cidSourceName: 'from',
      localPort: '',
      hasLocalPort: false,
      srtp: bool(false),
      srtpOn: false,
    });
  }
  if (device && !unprovisioned) {
    for (const l of input.lines ?? []) {
      if (l.idx > model.lines) {
        out.warnings.push(`line ${l.idx} is beyond the ${model.lines} lines of a ${vendor.name} ${model.id}: left out`);
        continue;
      }
      const ext: Extension | undefined = config.extensions.get(`${device.tenant}/${l.extension}`);
      if (!ext) {
        out.warnings.push(`line ${l.idx}: extension ${l.extension} of tenant ${device.tenant} is no longer defined: left out`);
        continue;
      }
      const localPort = pickPort(l.local_port, device.mac, l.idx);
      lines.push({
        index: l.idx,
        user: ext.number,
        authUser: ext.authUser,
        password: ext.secret,
        displayName: ext.name || ext.number,
        label: l.label || ext.name || ext.number,
        ...sip,
        cidSource: map('cidSource', l.cid_source),
        cidSourceName: l.cid_source,
        localPort,
        hasLocalPort: localPort !== '',
        srtp: bool(l.srtp === 1),
        srtpOn: l.srtp === 1,
      });
    }
  }

  const mapKey = (k: KeyDef, where: string): Dict | null => {
    const code = vmaps?.keyType?.[k.type] ?? maps.keyType?.[k.type];
    if (code === undefined) {
      out.warnings.push(`${where} ${k.index}: ${vendor.name} has no "${k.type}" key: left out`);
      return null;
    }
    const per = model.keysPerPage && model.keysPerPage > 0 ? model.keysPerPage : 0;
    return {
      index: k.index,
      index0: k.index - 1,
      /** page (1-based) and place on the page (1- and 0-based), for models with keysPerPage */
      page: per ? Math.ceil(k.index / per) : 1,
      pageIndex: per ? ((k.index - 1) % per) + 1 : k.index,
      pageIndex0: per ? (k.index - 1) % per : k.index - 1,
      type: code,
      typeName: k.type,
      value: k.value,
      label: k.label || (k.type === 'line' ? '' : keyLabel(k)),
      line: k.line,
      [`is_${k.type}`]: true,
    };
  };
  // a BLF or speed-dial key without a label shows the name of the extension it watches or dials
  const keyLabel = (k: KeyDef): string => {
    if ((k.type === 'blf' || k.type === 'speeddial') && device) {
      const ext = config.extensions.get(`${device.tenant}/${k.value}`);
      if (ext?.name) return ext.name;
    }
    return k.value;
  };
  const keys: Dict[] = [];
  for (const k of unprovisioned ? [] : template.dsskeys.keys) {
    if (k.index > model.keys) {
      out.warnings.push(`DSS key ${k.index} is beyond the ${model.keys} keys of a ${vendor.name} ${model.id}: left out`);
      continue;
    }
    const v = mapKey(k, 'DSS key');
    if (v) keys.push(v);
  }
  // the keys grouped by page, in page order, for formats that nest keys in a page element
  const keyPages: { page: number; keys: Dict[] }[] = [];
  for (const k of keys) {
    const last = keyPages[keyPages.length - 1];
    if (last && last.page === k.page) last.keys.push(k);
    else keyPages.push({ page: k.page as number, keys: [k] });
  }
  const moduleDef = vendor.expansionModules?.find((m) => m.id.toLowerCase() === template.dsskeys.expansionModule.toLowerCase());
  const expansionCount = template.dsskeys.expansionModule === 'none' ? 0 : template.dsskeys.expansionCount;
  if (template.dsskeys.expansionModule !== 'none' && !moduleDef) {
    out.warnings.push(`expansion module "${template.dsskeys.expansionModule}" is not one of ${vendor.name}'s: keys left out`);
  }
  const moduleKeys: Dict[] = [];
  if (moduleDef) {
    for (const k of unprovisioned ? [] : template.dsskeys.moduleKeys) {
      if (k.module > expansionCount || k.index > moduleDef.keys) {
        out.warnings.push(`module ${k.module} key ${k.index} is beyond ${moduleDef.id} × ${expansionCount}: left out`);
        continue;
      }
      const v = mapKey(k, `module ${k.module} key`);
      if (v) moduleKeys.push({ ...v, module: k.module });
    }
  }
  const progkeys = (unprovisioned ? [] : template.progkeys).map((k) => mapKey(k, 'programmable key')).filter((x): x is Dict => x !== null);


  const off = template.datetime.utcOffsetMinutes;
  const sign = off < 0 ? '-' : '+';
  const abs = Math.abs(off);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  const net = template.network;
  const stun = net.stunServer ? parseHostPort(net.stunServer) : null;

  return {
    vendor: { id: vendor.id, name: vendor.name },
    model: {
      id: model.id, code: model.code ?? '', codes: model.codes ?? {}, lines: model.lines, keys: model.keys,
      variant: model.variant ?? '', ...(model.variant ? { [`is_${model.variant}`]: true } : {}),
    },
    device: device
      ? {
          mac: device.mac,
          MAC: device.mac.toUpperCase(),
          macColon: macColon(device.mac as Mac),
          label: device.label,
          tenant: device.tenant,
          state: device.state,
        }
      : null,
    tenant: { id: tenant.id, name: tenant.name },
    unprovisioned,
    disabled,
    unprov: unprovisioned && !disabled && input.unprov ? { account: input.unprov.account, password: input.unprov.password, displayName: UNPROV_LABEL } : null,
    provisioning: {
      username: input.credentials?.username ?? '',
      password: input.credentials?.password ?? '',
      hasCredentials: !!input.credentials,
    },
    server: {
      provisioningUrl,
      scheme: purl.protocol.replace(':', ''),
      /** the vendor's code for the URL scheme (maps.scheme), e.g. a provisioning-protocol number */
      schemeCode: map('scheme', purl.protocol.replace(':', '')),
      schemeUpper: purl.protocol.replace(':', '').toUpperCase(),
      host: purl.hostname,
      port: purl.port || (purl.protocol === 'https:' ? '443' : purl.protocol === 'tftp:' ? '69' : '80'),
      path: purl.pathname,
      firmwareUrl,
      firmwareFile: template.firmware,
      hasFirmware: firmwareUrl !== '',
    },
    general: {
      periodicCheck: bool(template.general.periodicCheck > 0),
      periodicCheckOn: template.general.periodicCheck > 0,
      periodicMinutes: template.general.periodicCheck,
      periodicSeconds: template.general.periodicCheck * 60,
      /** the check interval in whole hours, rounded up (at least 1) */
      periodicHours: Math.max(1, Math.ceil(template.general.periodicCheck / 60)),
      ...checkTimeView(template.general.checkTime, device?.mac ?? ''),
    },
    sip,
    lines,
    line1: lines[0] ?? null,
    hasLines: lines.length > 0,
    network: {
      nat: bool(net.nat), natOn: net.nat,
      rport: bool(net.rport), rportOn: net.rport,
      stunServer: net.stunServer, stunHost: stun ? stun.host : net.stunServer, stunPort: stun ? stun.port : 3478, hasStun: net.stunServer !== '',
      vlan: bool(net.vlanId > 0), vlanOn: net.vlanId > 0, vlanId: net.vlanId, vlanPriority: net.vlanPriority,
      lldp: bool(net.lldp), lldpOn: net.lldp,
      cdp: bool(net.cdp), cdpOn: net.cdp,
      hasQosSip: net.qosSipDscp !== null, qosSipDscp: net.qosSipDscp ?? '', qosSipTos: net.qosSipDscp === null ? '' : net.qosSipDscp << 2,
      hasQosRtp: net.qosRtpDscp !== null, qosRtpDscp: net.qosRtpDscp ?? '', qosRtpTos: net.qosRtpDscp === null ? '' : net.qosRtpDscp << 2,
      /** the ToS byte in hex (DSCP 26 = 0x68), as some vendors write it */
      qosSipTosHex: net.qosSipDscp === null ? '' : `0x${(net.qosSipDscp << 2).toString(16).padStart(2, '0')}`,
      qosRtpTosHex: net.qosRtpDscp === null ? '' : `0x${(net.qosRtpDscp << 2).toString(16).padStart(2, '0')}`,
    },
    datetime: {
      ntpServer1: template.datetime.ntpServer1,
      ntpServer2: template.datetime.ntpServer2,
      hasNtpServer2: template.datetime.ntpServer2 !== '',
      offsetHours: `${sign}${abs % 60 === 0 ? abs / 60 : (abs / 60).toFixed(2).replace(/0+$/, '')}`,
      offsetMinutes: off,
      /** minutes west of UTC (UTC+1 = -60), as some vendors count */
      offsetMinutesWest: -off,
      /** +5:30, +1 */
      offsetHM: `${sign}${abs / 60 | 0}${abs % 60 ? ':' + mm : ''}`,
      offsetSeconds: off * 60,
      /** quarter hours east of UTC (UTC+1 = 4, UTC+5:30 = 22), as some vendors count */
      offsetQuarterHours: Math.round(off / 15),
      offsetHHMM: `${sign}${hh}:${mm}`,
      dst: map('dst', template.datetime.dst),
      dstName: template.datetime.dst,
      timeZoneName: template.datetime.timeZoneName,
      hasTimeZoneName: template.datetime.timeZoneName !== '',
    },
    phone: {
      language: map('language', template.phone.language),
      languageCode: template.phone.language,
      toneCountry: map('toneCountry', template.phone.toneCountry),
      toneCountryCode: template.phone.toneCountry,
      tones: template.phone.tones.map((t) => ({ name: map('toneName', t.name), value: t.value })),
      hasTones: template.phone.tones.length > 0,
      hasDialPlan: template.phone.dialPlan !== null,
      /** the digit map as written: (x.T|[2-9]xx) */
      dialPlan: template.phone.dialPlan?.text ?? '',
      /** each alternative with its regular-expression form, for vendors whose dial plans are regular expressions */
      dialPlanPatterns: (template.phone.dialPlan?.patterns ?? []).map((p, i) => ({ index: i + 1, source: p.source, regex: p.regex, timer: p.timer, last: i === template.phone.dialPlan!.patterns.length - 1 })),
      /** the alternatives as one regular expression: ^(?:a|b)$ body without anchors: a|b */
      dialPlanRegex: (template.phone.dialPlan?.patterns ?? []).map((p) => p.regex).join('|'),
    },
    keys,
    keyPages,
    hasKeys: keys.length > 0,
    expansion: {
      module: moduleDef?.id ?? '',
      type: moduleDef ? map('expansionModule', moduleDef.id) : '',
      count: moduleDef ? expansionCount : 0,
      keys: moduleKeys,
      hasKeys: moduleKeys.length > 0,
    },
    progkeys,
    hasProgkeys: progkeys.length > 0,
    security: {
      adminPassword: unprovisioned ? '' : template.security.adminPassword,
      hasAdminPassword: !unprovisioned && template.security.adminPassword !== '',
      allowDirectIpCall: bool(template.security.allowDirectIpCall),
      allowDirectIpCallOn: template.security.allowDirectIpCall,
      trustedServerOnly: bool(template.security.trustedServerOnly),
      trustedServerOnlyOn: template.security.trustedServerOnly,
    },
    paging: {
      groups: unprovisioned ? [] : template.paging.map((g) => ({ ...g, index0: g.index - 1 })),
      hasGroups: !unprovisioned && template.paging.length > 0,
    },
    services: unprovisioned ? { directoryUrl: '', hasDirectory: false } : { directoryUrl: template.services.directoryUrl, hasDirectory: template.services.directoryUrl !== '' },
    ldap: unprovisioned
      ? { ...template.ldap, user: '', password: '', enabled: bool(false), enabledOn: false }
      : { ...template.ldap, enabled: bool(template.ldap.enabled), enabledOn: template.ldap.enabled },
  };
}

/**
 * The daily check time of one device: the template's time, or a moment in the template's
 * window picked from the MAC, so that a site's phones spread over the window and each phone
 * keeps its moment from one render to the next.
 */
export function checkTimeView(window: { from: number; to: number } | null, mac: string): Dict {
  if (!window) return { hasCheckTime: false, checkTime: '', checkTimeHHmm: '', checkHour: '', checkMinute: '', checkTimeFrom: '', checkTimeTo: '', checkWindowMinutes: 0 };
  const span = (window.to - window.from + 1440) % 1440;
  const h = crypto.createHash('sha256').update(`check/${mac}`).digest().readUInt32BE(0);
  const at = (window.from + (span === 0 ? 0 : h % (span + 1))) % 1440;
  const hm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return {
    hasCheckTime: true,
    checkTime: hm(at),
    /** 0130: the time without a colon */
    checkTimeHHmm: hm(at).replace(':', ''),
    /** the length of the window in minutes (0 for a single time) */
    checkWindowMinutes: span,
    checkHour: Math.floor(at / 60),
    checkMinute: at % 60,
    checkTimeFrom: hm(window.from),
    checkTimeTo: hm(window.to),
  };
}

/** A single port, or a deterministic port from a `low-high` range for this device and line. */
export function pickPort(spec: string, mac: string, idx: number): string {
  if (!spec) return '';
  const m = /^(\d+)-(\d+)$/.exec(spec);
  if (!m) return spec;
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  const h = crypto.createHash('sha256').update(`${mac}/${idx}`).digest().readUInt32BE(0);
  return String(lo + (h % (hi - lo + 1)));
}

let builtIn: Template | undefined;
/** Every template setting at its documented default (what a template that does not name it has). */
function builtInTemplate(): Template {
  builtIn ??= readTemplate(parseIni('[template]\nvendor = x\nmodel = x\n', '(built-in defaults).ini'));
  return builtIn;
}

const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * Warnings for the settings this template sets (differently from the built-in default) that the
 * vendor or model has no parameter for: the template leaves them out.
 */
export function unsupportedSet(vendor: Vendor, model: VendorModel, template: Template): string[] {
  const names = [...new Set([...(vendor.unsupported ?? []), ...(model.unsupported ?? [])])];
  const def = builtInTemplate() as unknown as Record<string, unknown>;
  const t = template as unknown as Record<string, unknown>;
  const out: string[] = [];
  for (const n of names) {
    const [section, key] = n.split('.', 2) as [string, string | undefined];
    if (!(TEMPLATE_SECTIONS as readonly string[]).includes(section)) continue;
    const get = (o: Record<string, unknown>) => (key === undefined ? o[section] : (o[section] as Record<string, unknown> | undefined)?.[camel(key)]);
    // a key with its own "is set" rule (OPTIONAL_KEYS), else: set when it differs from the built-in default
    const set = OPTIONAL_KEYS[n] ? OPTIONAL_KEYS[n](template) : JSON.stringify(get(t)) !== JSON.stringify(get(def));
    if (!set) continue;
    const who = model.unsupported?.includes(n) && !vendor.unsupported?.includes(n) ? `a ${vendor.name} ${model.id}` : vendor.name;
    out.push(`${n}: ${who} has no "${key ?? section}" key: left out`);
  }
  return out;
}
