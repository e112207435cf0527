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
import { familyOf, type Vendor, type VendorModel } from '../vendors/registry.js';
import type { ParamList, ParamRange } from '../vendors/types.js';
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
  /**
   * the image the config names (src/firmware/select.ts firmwareForDevice); null: none (the phone
   * runs that version, or no image fits); absent: [template] firmware as a file name
   */
  firmware?: { file: string; version: string | null } | null;
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
  const family = familyOf(vendor, model);
  // a family's map of a name replaces the vendor's map of that name
  const maps = { ...vendor.maps, ...(family?.maps ?? {}) };
  const map = (name: string, value: string): string => maps[name]?.[value] ?? value;
  const bool = (b: boolean) => map('bool', String(b));
  const hex = (n: number | string) => (n === '' || Number.isNaN(Number(n)) ? '' : '0x' + Number(n).toString(16));
  const lineIdWidth = family?.lineIdWidth ?? vendor.lineIdWidth ?? 1;
  // A disabled phone gets nothing of value either, and not even its unprov account: for the
  // templates both are `unprovisioned` (everything of value left out); `disabled` tells them apart.
  const disabled = device?.state === 'disabled';
  const unprovisioned = device?.state === 'unprovisioned' || disabled;
  // what the vendor, the model's family, its parameter table or the model itself has no setting for
  const unsupported = new Set([
    ...(vendor.unsupported ?? []), ...(family?.unsupported ?? []), ...(vendor.params?.[model.params ?? 'default']?.unsupported ?? []), ...(model.unsupported ?? []),
  ]);
  // a model without keys (a DECT base, an entry phone) takes no DSS keys; a vendor without modules, no module keys
  if (model.keys === 0) unsupported.add('dsskeys.keyN');
  if (!vendor.expansionModules?.length) unsupported.add('dsskeys.expansion_module');
  const usage = { lines: unprovisioned ? [] : input.lines ?? [], credentials: !!input.credentials, unprovisioned };
  for (const w of unsupportedSet(vendor, model, template, unsupported, usage)) out.warnings.push(w);
  const dtmf = template.server.dtmfMode;
  const dtmfMapped = !unsupported.has('server.dtmf_mode') && (!maps.dtmfMode || maps.dtmfMode[dtmf] !== undefined);
  if (!unsupported.has('server.dtmf_mode') && !dtmfMapped) out.warnings.push(`server.dtmf_mode: ${vendor.name} has no "${dtmf}" key: left out`);

  const provisioningUrl = template.general.provisioningUrl || s.provisioning.url;
  const purl = new URL(provisioningUrl);
  const fw = input.firmware === undefined ? (template.firmware ? { file: template.firmware, version: null } : null) : input.firmware;
  // [general] firmware_url names the image itself; with a firmware the phone runs already, it is left out too
  const firmwareUrl = fw ? template.general.firmwareUrl || provisioningUrl + fw.file : template.firmware || input.firmware === null ? '' : template.general.firmwareUrl;
  const registrar = template.server.registrar || s.provisioning.sipServer;
  const transport = template.server.transport;
  const proxy = template.server.outboundProxy ? parseHostPort(template.server.outboundProxy) : null;
  const sip = {
    registrar,
    port: template.server.port,
    portHex: hex(template.server.port),
    transport: map('transport', transport),
    transportName: transport,
    transportUpper: transport.toUpperCase(),
    outboundProxy: template.server.outboundProxy,
    outboundProxyHost: proxy ? proxy.host : template.server.outboundProxy,
    outboundProxyPort: proxy ? proxy.port : template.server.outboundProxy ? template.server.port : '',
    outboundProxyPortHex: hex(proxy ? proxy.port : template.server.outboundProxy ? template.server.port : ''),
    hasOutboundProxy: template.server.outboundProxy !== '',
    expires: template.server.expires,
    /** for vendors that count the registration in minutes */
    expiresMinutes: Math.max(1, Math.round(template.server.expires / 60)),
    expiresHex: hex(template.server.expires),
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
  const rangeAt = paramTable(vendor, model);
  const paramsOf = (list: ParamList, index: number, module = 1) => rangeAt(list, index, module)?.p ?? null;
  /** per line: 1-based index, 0-based index0, lineId padded to the vendor's width, first line flag */
  // on a DECT base line N is handset N: comma lists of 1/0 flags with the 1 at N (handsets, lines)
  const flags = (n: number, at: number) => Array.from({ length: n }, (_, i) => (i + 1 === at ? '1' : '0')).join(',');
  const lineIds = (idx: number) => ({
    index: idx, index0: idx - 1, lineId: String(idx).padStart(lineIdWidth, '0'), first: idx === 1,
    handset: model.handsets !== undefined ? idx : 0,
    handsetFlags: model.handsets !== undefined ? flags(model.handsets, idx) : '',
    lineFlags: flags(model.lines, idx),
  });

  const lines: Dict[] = [];
  // Unprovisioned: line 1 is the phone's own unprov account at [provisioning] sip_server (the
  // template's port, transport and proxy), and nothing of value from the template: no other
  // line, no keys, no paging, directory or LDAP, no admin password.
  if (unprovisioned && !disabled && input.unprov) {
    lines.push({
      ...lineIds(1),
      p: paramsOf('lines', 1) ?? {},
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
      localPortHex: '',
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
      const p = paramsOf('lines', l.idx);
      if (p === null) {
        out.warnings.push(`line ${l.idx}: ${vendor.name} ${model.id} has no "${PARAM_KEY.lines}" key: left out`);
        continue;
      }
      lines.push({
        ...lineIds(l.idx),
        p,
        user: ext.number,
        authUser: ext.authUser,
        password: ext.secret,
        displayName: ext.name || ext.number,
        label: l.label || ext.name || ext.number,
        ...sip,
        cidSource: map('cidSource', l.cid_source),
        cidSourceName: l.cid_source,
        localPort,
        localPortHex: hex(localPort),
        hasLocalPort: localPort !== '',
        srtp: bool(l.srtp === 1),
        srtpOn: l.srtp === 1,
      });
    }
  }

  /** the key-type codes of a list, or of the range that holds the key (ParamRange.typeMap) */
  const typeMapOf = (list: ParamList, range?: ParamRange) =>
    (range?.typeMap ? maps[range.typeMap] : undefined) ?? (list === 'progkeys' ? maps.progkeyType : list === 'moduleKeys' ? maps.moduleKeyType : undefined) ?? maps.keyType;
  const mapKey = (k: KeyDef, where: string, list: ParamList = 'keys', module = 1): Dict | null => {
    const at = rangeAt(list, k.index, module);
    const code = typeMapOf(list, at?.range)?.[k.type];
    if (code === undefined) {
      out.warnings.push(`${where} ${k.index}: ${vendor.name} has no "${k.type}" key: left out`);
      return null;
    }
    if (at === null) {
      out.warnings.push(`${where} ${k.index}: ${vendor.name} ${model.id} has no "${PARAM_KEY[list]}" key: left out`);
      return null;
    }
    const p = at.p;
    const per = model.keysPerPage && model.keysPerPage > 0 ? model.keysPerPage : 0;
    return {
      p,
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
      /** the line counted from 0, as some vendors number accounts */
      line0: Math.max(0, k.line - 1),
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
  const noKeys = unsupported.has('dsskeys.keyN');
  const noModule = unsupported.has('dsskeys.expansion_module');
  const noProgkeys = unsupported.has('progkeys.keyN');
  const noAdmin = unsupported.has('security.admin_password');
  const noPaging = unsupported.has('paging.groupN');
  const noDirectory = unsupported.has('services.directory_url');
  const noLdap = unsupported.has('ldap.enabled');

  const keys: Dict[] = [];
  for (const k of unprovisioned || noKeys ? [] : template.dsskeys.keys) {
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
  const moduleDef = noModule ? undefined : vendor.expansionModules?.find((m) => m.id.toLowerCase() === template.dsskeys.expansionModule.toLowerCase());
  const expansionCount = template.dsskeys.expansionModule === 'none' ? 0 : template.dsskeys.expansionCount;
  if (!noModule && template.dsskeys.expansionModule !== 'none' && !moduleDef) {
    out.warnings.push(`expansion module "${template.dsskeys.expansionModule}" is not one of ${vendor.name}'s: keys left out`);
  }
  const moduleKeys: Dict[] = [];
  if (moduleDef) {
    for (const k of unprovisioned ? [] : template.dsskeys.moduleKeys) {
      if (k.module > expansionCount || k.index > moduleDef.keys) {
        out.warnings.push(`module ${k.module} key ${k.index} is beyond ${moduleDef.id} × ${expansionCount}: left out`);
        continue;
      }
      const v = mapKey(k, `module ${k.module} key`, 'moduleKeys', k.module);
      if (v) moduleKeys.push({ ...v, module: k.module });
    }
  }
  const progkeys = (unprovisioned || noProgkeys ? [] : template.progkeys).map((k) => mapKey(k, 'programmable key', 'progkeys')).filter((x): x is Dict => x !== null);
  // ranges with `fill`: the vendor drops every entry after a gap, so the unset ones up to the
  // last set one are written as key type none
  const fill = (list: ParamList, got: Dict[], limit: number, module = 1) => {
    const last = Math.max(0, ...got.map((k) => k.index as number));
    for (const r of rangesOf(vendor, model, list).filter((x) => x.fill && (x.module ?? 1) === module && typeMapOf(list, x)?.none !== undefined)) {
      for (let i = r.from; i <= Math.min(r.to, last, limit); i++) {
        if (got.some((k) => k.index === i)) continue;
        const v = mapKey({ index: i, type: 'none', value: '', label: '', line: 1 }, 'empty key', list, module);
        if (v) got.push(module === 1 && list !== 'moduleKeys' ? v : { ...v, module });
      }
    }
    got.sort((a, b) => (a.index as number) - (b.index as number));
  };
  fill('keys', keys, model.keys);
  fill('progkeys', progkeys, Number.MAX_SAFE_INTEGER);
  const pagingGroups: Dict[] = [];
  for (const g of unprovisioned || noPaging ? [] : template.paging) {
    const p = paramsOf('paging', g.index);
    if (p === null) {
      out.warnings.push(`paging group ${g.index}: ${vendor.name} ${model.id} has no "${PARAM_KEY.paging}" key: left out`);
      continue;
    }
    pagingGroups.push({ ...g, index0: g.index - 1, p });
  }
  const dirUrl = unprovisioned || noDirectory ? '' : template.services.directoryUrl;
  const dir = dirUrl ? new URL(dirUrl) : null;
  const ldapOn = template.ldap.enabled && !noLdap;


  const off = template.datetime.utcOffsetMinutes;
  const sign = off < 0 ? '-' : '+';
  const abs = Math.abs(off);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  const offsetKey = `${sign}${abs / 60 | 0}${abs % 60 ? ':' + mm : ''}`;
  const zone = (template.datetime.dst === 'off' ? undefined : maps.timeZone?.[template.datetime.timeZoneName]) ?? maps.utcOffset?.[offsetKey];
  const net = template.network;
  const stun = net.stunServer ? parseHostPort(net.stunServer) : null;

  // the firmware the files are written for: pinned by the template, else what the phone reported
  const fwVersion = template.firmwareVersion || device?.firmware || '';
  const firmwareVariant: Dict = { version: fwVersion };
  for (const fv of vendor.firmwareVariants ?? []) firmwareVariant[fv.flag] = fwVersion !== '' && compareVersions(fwVersion.split('.').slice(fv.part ?? 0).join('.'), fv.below) < 0;

  return {
    firmwareVariant,
    vendor: { id: vendor.id, name: vendor.name },
    model: {
      id: model.id, code: model.code ?? '', codes: model.codes ?? {}, lines: model.lines, keys: model.keys, family: model.family ?? '',
      /** the model's family (its file format) as model.is_<family>, for templates shared by families */
      ...(model.family ? { [`is_${model.family}`]: true } : {}),
      /** a DECT base: line N is the account of handset N */
      isBase: model.handsets !== undefined, handsets: model.handsets ?? 0,
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
      /** the provisioning URL with this device's own credentials as user:password@ (for firmware that takes them only so) */
      provisioningUrlWithCredentials: input.credentials ? withUserinfo(purl, input.credentials) : provisioningUrl,
      scheme: purl.protocol.replace(':', ''),
      schemeUpper: purl.protocol.replace(':', '').toUpperCase(),
      host: purl.hostname,
      port: purl.port || (purl.protocol === 'https:' ? '443' : purl.protocol === 'tftp:' ? '69' : '80'),
      path: purl.pathname,
      /** host[:port]/path without scheme or trailing slash, for vendors that take the scheme apart */
      hostPath: hostPath(purl),
      /** the vendor's code for the scheme (maps.scheme: tftp, http, https) */
      schemeCode: map('scheme', purl.protocol.replace(':', '')),
      firmwareUrl,
      firmwareHostPath: firmwareUrl ? hostPath(new URL(firmwareUrl)) : '',
      firmwareSchemeCode: firmwareUrl ? map('scheme', new URL(firmwareUrl).protocol.replace(':', '')) : '',
      firmwareFile: fw?.file ?? '',
      /** the catalogue version of the image ('' when the file is not in the catalogue) */
      firmwareVersion: fw?.version ?? '',
      hasFirmware: firmwareUrl !== '',
    },
    general: {
      periodicCheck: bool(template.general.periodicCheck > 0),
      periodicCheckOn: template.general.periodicCheck > 0,
      periodicMinutes: template.general.periodicCheck,
      periodicSeconds: template.general.periodicCheck * 60,
      /** the check interval in whole hours, rounded up (at least 1) */
      periodicHours: Math.max(1, Math.ceil(template.general.periodicCheck / 60)),
      ...checkTimeView(unsupported.has('general.check_time') ? null : template.general.checkTime, device?.mac ?? ''),
    },
    sip,
    lines,
    line1: lines[0] ?? null,
    hasLines: lines.length > 0,
    network: {
      nat: bool(net.nat), natOn: net.nat,
      rport: bool(net.rport), rportOn: net.rport,
      stunServer: net.stunServer, stunHost: stun ? stun.host : net.stunServer, stunPort: stun ? stun.port : 3478, stunPortHex: hex(stun ? stun.port : 3478), hasStun: net.stunServer !== '',
      vlan: bool(net.vlanId > 0), vlanOn: net.vlanId > 0, vlanId: net.vlanId, vlanIdHex: hex(net.vlanId), vlanPriority: net.vlanPriority,
      lldp: bool(net.lldp), lldpOn: net.lldp,
      cdp: bool(net.cdp), cdpOn: net.cdp,
      hasQosSip: net.qosSipDscp !== null && !unsupported.has('network.qos_sip_dscp'), qosSipDscp: net.qosSipDscp ?? '', qosSipTos: net.qosSipDscp === null ? '' : net.qosSipDscp << 2,
      hasQosRtp: net.qosRtpDscp !== null && !unsupported.has('network.qos_rtp_dscp'), qosRtpDscp: net.qosRtpDscp ?? '', qosRtpTos: net.qosRtpDscp === null ? '' : net.qosRtpDscp << 2,
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
      offsetHM: offsetKey,
      offsetSeconds: off * 60,
      /** quarter hours east of UTC (UTC+1 = 4, UTC+5:30 = 22), as some vendors count */
      offsetQuarterHours: Math.round(off / 15),
      offsetHHMM: `${sign}${hh}:${mm}`,
      dst: map('dst', template.datetime.dst),
      dstName: template.datetime.dst,
      timeZoneName: template.datetime.timeZoneName,
      /**
       * the vendor's zone: maps.timeZone by IANA name (its daylight-saving rule), else
       * maps.utcOffset by +H[:MM] (a zone without DST); with dst = off only the latter
       */
      zone: zone ?? '',
      hasZone: zone !== undefined,
      /** the offset as a POSIX TZ string counts it (west positive): UTC+1 = -1, UTC-5 = 5, UTC+5:30 = -5:30 */
      offsetPosix: `${off > 0 ? '-' : ''}${abs / 60 | 0}${abs % 60 ? ':' + mm : ''}`,
      hasTimeZoneName: template.datetime.timeZoneName !== '',
    },
    phone: {
      language: map('language', template.phone.language),
      languageCode: template.phone.language,
      toneCountry: map('toneCountry', template.phone.toneCountry),
      toneCountryCode: template.phone.toneCountry,
      tones: template.phone.tones.map((t) => ({ name: map('toneName', t.name), value: t.value })),
      hasTones: template.phone.tones.length > 0 && !unsupported.has('phone.tones'),
      hasDialPlan: template.phone.dialPlan !== null && !unsupported.has('phone.dial_plan'),
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
      adminPassword: unprovisioned || noAdmin ? '' : template.security.adminPassword,
      hasAdminPassword: !unprovisioned && !noAdmin && template.security.adminPassword !== '',
      allowDirectIpCall: bool(template.security.allowDirectIpCall),
      allowDirectIpCallOn: template.security.allowDirectIpCall,
      /** the same switch for vendors that ask "disable direct IP calls?" */
      disableDirectIpCall: bool(!template.security.allowDirectIpCall),
      trustedServerOnly: bool(template.security.trustedServerOnly),
      trustedServerOnlyOn: template.security.trustedServerOnly,
    },
    paging: {
      groups: pagingGroups,
      hasGroups: pagingGroups.length > 0,
    },
    services: {
      directoryUrl: dirUrl,
      hasDirectory: dirUrl !== '',
      directoryHostPath: dir ? hostPath(dir, true) : '',
      /** maps.directoryScheme where the directory download numbers schemes its own way, else maps.scheme */
      directorySchemeCode: dir ? map(maps.directoryScheme ? 'directoryScheme' : 'scheme', dir.protocol.replace(':', '')) : '',
    },
    ldap: unprovisioned || !ldapOn
      ? { ...template.ldap, user: unprovisioned ? '' : template.ldap.user, password: unprovisioned ? '' : template.ldap.password, enabled: bool(false), enabledOn: false }
      : { ...template.ldap, enabled: bool(true), enabledOn: true },
  };
}

function withUserinfo(url: URL, c: { username: string; password: string }): string {
  const u = new URL(url.href);
  u.username = encodeURIComponent(c.username);
  u.password = encodeURIComponent(c.password);
  return u.href;
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

/** How a warning names an entry that no parameter range of the model holds. */
const PARAM_KEY: Record<ParamList, string> = { lines: 'line', keys: 'dsskey', moduleKeys: 'module_key', progkeys: 'progkey', paging: 'paging' };

/** host[:port]/path of a URL, without the scheme and (unless keepSlash) the trailing slash. */
function hostPath(u: URL, keepSlash = false): string {
  const p = keepSlash ? u.pathname : u.pathname.replace(/\/+$/, '');
  return `${u.host}${p === '/' ? '' : p}`;
}

/**
 * The parameter names of entry `index` of a list, from the model's parameter table (vendor
 * `params`; a list the model's table does not name comes from the "default" table), with the
 * range that holds it: names {} when the vendor (or this list) is not numbered this way, null
 * when it is but no range holds this index (the entry is left out).
 */
function paramTable(vendor: Vendor, model: VendorModel): (list: ParamList, index: number, module?: number) => { p: Record<string, string>; range?: ParamRange } | null {
  const own = vendor.params?.[model.params ?? 'default'];
  const fallback = vendor.params?.default;
  return (list, index, module = 1) => {
    const ranges: ParamRange[] | undefined = own?.[list] ?? fallback?.[list];
    if (!ranges) return { p: {} };
    const r = ranges.find((x) => (x.module ?? 1) === module && index >= x.from && index <= x.to);
    if (!r) return null;
    const p: Record<string, string> = {};
    for (const [f, v] of Object.entries(r.fields)) {
      const [base, step] = Array.isArray(v) ? v : [v, r.step ?? 1];
      p[f] = `${r.prefix ?? ''}${base + step * (index - r.from)}`;
    }
    return { p, range: r };
  };
}

/** Every range of a list of the model's table (or the default table). */
function rangesOf(vendor: Vendor, model: VendorModel, list: ParamList): ParamRange[] {
  return vendor.params?.[model.params ?? 'default']?.[list] ?? vendor.params?.default?.[list] ?? [];
}

/** Compares dotted versions number by number (66.70 < 66.86; 70 < 71.0.1); a missing part counts as 0. */
export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] || 0) - (y[i] || 0);
    if (d) return d < 0 ? -1 : 1;
  }
  return 0;
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
export function unsupportedSet(vendor: Vendor, model: VendorModel, template: Template, names: Iterable<string>, usage?: Parameters<(typeof OPTIONAL_KEYS)[string]>[1]): string[] {
  const def = builtInTemplate() as unknown as Record<string, unknown>;
  const t = template as unknown as Record<string, unknown>;
  const out: string[] = [];
  for (const n of names) {
    const [section, key] = n.split('.', 2) as [string, string | undefined];
    // a key with its own "is set" rule (OPTIONAL_KEYS, lines and credentials included), else a
    // template key that is set when it differs from the built-in default
    if (!OPTIONAL_KEYS[n] && !(TEMPLATE_SECTIONS as readonly string[]).includes(section)) continue;
    const get = (o: Record<string, unknown>) => (key === undefined ? o[section] : (o[section] as Record<string, unknown> | undefined)?.[camel(key)]);
    const set = OPTIONAL_KEYS[n] ? OPTIONAL_KEYS[n](template, usage) : JSON.stringify(get(t)) !== JSON.stringify(get(def));
    if (!set) continue;
    const who = model.unsupported?.includes(n) && !vendor.unsupported?.includes(n) ? `a ${vendor.name} ${model.id}` : vendor.name;
    out.push(`${n}: ${who} has no "${key ?? section}" key: left out`);
  }
  return out;
}
