/**
 * Class blocks for the DHCP server a site already runs (`apsctl dhcp classes`): one class per
 * vendor, matching the vendor's MAC OUIs and its DHCP option-60 patterns, giving the options
 * the vendor's data asks for (dhcp.answers). Pure: vendors and addresses in, text out, sorted
 * so the same input always prints the same bytes.
 *
 *   isc      a file to `include` at the top level of dhcpd.conf: option definitions, option
 *            spaces for option-43 sub-options, then one `class` per vendor
 *   kea      a JSON object with `option-def` and `client-classes`, to merge into "Dhcp4"
 *   dnsmasq  conf-file lines: dhcp-mac / dhcp-vendorclass set a tag per vendor,
 *            dhcp-option-force gives the options to that tag
 *
 * No vendor is named here: everything vendor-specific comes from vendors/<id>/vendor.json.
 */
import { optionType, type OptionType } from '../wire/dhcp-options.js';
import { ApsError } from '../errors.js';
import type { Vendor } from '../vendors/registry.js';
import type { DhcpAnswer } from '../vendors/types.js';

export type DhcpClassFormat = 'isc' | 'kea' | 'dnsmasq';

export interface DhcpClassOptions {
  format: DhcpClassFormat;
  /** the provisioning URL, already mapped to the address the phones reach */
  url: string;
  /** the URL's host */
  host: string;
  /** the server's IPv4 address (option 150 and 'ip' answers) */
  ip: string;
  /** when set, class, tag and space names carry it, so the blocks of several tenants can be told apart */
  tenant?: string;
}

export const DHCP_CLASS_FORMATS: readonly DhcpClassFormat[] = ['isc', 'kea', 'dnsmasq'];


/** Names ISC dhcpd 4.x knows; other codes get an `option aps-option-N code N = …;` definition. */
const ISC_NAMES: Record<number, string> = {
  66: 'tftp-server-name',
  67: 'bootfile-name',
  114: 'default-url',
};

/** Codes Kea (2.2) defines in the dhcp4 space; others get an option-def. 114 is v4-captive-portal (a string). */
const KEA_STANDARD = new Set([43, 60, 66, 67, 114]);
const KEA_NAMES: Record<number, string> = { 66: 'tftp-server-name', 67: 'boot-file-name' };


interface PlannedOption {
  code: number;
  type: OptionType;
  /** what the value is, for comments: "the provisioning URL" */
  what: string;
  value: string;
}

interface VendorPlan {
  vendor: Vendor;
  /** class / tag name: aps-<vendor id>, or aps-<tenant>-<vendor id> */
  tag: string;
  /** option space for option-43 sub-options, e.g. aps_yealink */
  space: string;
  /** upper-case hex, sorted */
  ouis: string[];
  exact: string[];
  prefix: string[];
  suffix: string[];
  regex: string[];
  options: PlannedOption[];
  /** option 43 as sub-options (value 'sub') */
  sub43: PlannedOption[];
}

interface Plan {
  vendors: VendorPlan[];
  /** vendors whose data asks for no DHCP option: no class */
  without: Vendor[];
  /** the type of every top-level option code in use */
  types: Map<number, OptionType>;
  opts: DhcpClassOptions;
}

/** The class blocks for the given vendors, in one of the three server formats. */
export function dhcpClassBlocks(vendors: Vendor[], opts: DhcpClassOptions): string {
  const plan = makePlan(vendors, opts);
  switch (opts.format) {
    case 'isc': return iscBlocks(plan);
    case 'kea': return keaBlocks(plan);
    case 'dnsmasq': return dnsmasqBlocks(plan);
    default:
      throw new ApsError('APS_ERR_USAGE', `"${String(opts.format)}" is not a DHCP server format`, { expected: DHCP_CLASS_FORMATS.join(', ') });
  }
}

// ---------------------------------------------------------------------------------------------
// the plan: what each vendor matches on and gets, independent of the server format

function makePlan(vendors: Vendor[], opts: DhcpClassOptions): Plan {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(opts.ip) || opts.ip.split('.').some((o) => Number(o) > 255)) {
    throw new ApsError('APS_ERR_USAGE', `"${opts.ip}" is not an IPv4 address`, { key: 'ip', expected: 'the server address the phones reach, e.g. 10.0.0.5' });
  }
  const tenant = opts.tenant === undefined ? '' : slug(opts.tenant);
  if (opts.tenant !== undefined && !tenant) {
    throw new ApsError('APS_ERR_USAGE', `tenant "${opts.tenant}" gives no usable name`, { key: 'tenant', expected: 'letters or digits' });
  }
  const sorted = [...vendors].sort((a, b) => cmp(a.id, b.id));
  const raw: { v: Vendor; answers: DhcpAnswer[] }[] = sorted
    .map((v) => ({ v, answers: v.dhcp?.answers ?? [] }))
    .filter((x) => x.answers.length > 0);

  // one type per option code across all vendors, since a server holds one definition per code
  // (the registry checked the answers when it loaded: src/vendors/registry.ts)
  const kinds = new Map<number, Set<DhcpAnswer['value']>>();
  for (const { answers } of raw) {
    for (const a of answers) {
      if (a.value === 'sub') continue;
      const set = kinds.get(a.code) ?? new Set();
      set.add(a.value);
      kinds.set(a.code, set);
    }
  }
  const types = new Map<number, OptionType>();
  for (const [code, set] of kinds) types.set(code, optionType(code, set));

  const valueOf = (a: DhcpAnswer): { value: string; what: string } => {
    switch (a.value) {
      case 'host': return { value: opts.host, what: 'the provisioning host' };
      case 'ip': return { value: opts.ip, what: "the server's IP address" };
      default: return a.append ? { value: opts.url + a.append, what: `the provisioning URL + ${plain(a.append)}` } : { value: opts.url, what: 'the provisioning URL' };
    }
  };

  const seenTags = new Map<string, string>();
  const plans = raw.map(({ v, answers }) => {
    const base = slug(v.id);
    const tag = tenant ? `aps-${tenant}-${base}` : `aps-${base}`;
    const other = seenTags.get(tag);
    if (other) throw new ApsError('APS_ERR_VENDOR', `vendors ${other} and ${v.id} give the same class name ${tag}`, { key: 'id' });
    seenTags.set(tag, v.id);
    const byKind = (k: string) => uniqSorted(v.vendorClasses.filter((c) => c.match === k).map((c) => c.value));
    const options: PlannedOption[] = [];
    const sub43: PlannedOption[] = [];
    for (const a of answers) {
      const { value, what } = valueOf(a);
      if (a.value === 'sub') {
        if (!sub43.some((s) => s.code === a.suboption)) sub43.push({ code: a.suboption!, type: 'text', what: 'the provisioning URL', value: opts.url });
      } else if (!options.some((o) => o.code === a.code)) {
        options.push({ code: a.code, type: types.get(a.code)!, what, value });
      }
    }
    options.sort((a, b) => a.code - b.code);
    sub43.sort((a, b) => a.code - b.code);
    for (const s of sub43) {
      if (Buffer.byteLength(s.value) > 255) throw new ApsError('APS_ERR_USAGE', `the URL is ${Buffer.byteLength(s.value)} bytes, more than a DHCP sub-option holds`, { key: 'url', expected: 'at most 255 bytes' });
    }
    const plan: VendorPlan = {
      vendor: v,
      tag,
      space: tag.replace(/-/g, '_'),
      ouis: uniqSorted(v.ouis.map((o) => o.toUpperCase())),
      exact: byKind('exact'),
      prefix: byKind('prefix'),
      suffix: byKind('suffix'),
      regex: byKind('regex'),
      options,
      sub43,
    };
    return plan;
  });
  const without = sorted.filter((v) => (v.dhcp?.answers ?? []).length === 0);
  return { vendors: plans, without, types, opts };
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function uniqSorted(xs: string[]): string[] {
  return [...new Set(xs)].sort(cmp);
}

/** A value safe to put in a one-line comment. */
function plain(s: string): string {
  return [...s].map((c) => (c >= ' ' && c <= '~' ? c : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)).join('');
}

function isPrintable(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

function hexBytes(s: string, sep: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => b.toString(16).padStart(2, '0')).join(sep);
}

function ouiColons(oui: string): string {
  return oui.toLowerCase().match(/../g)!.join(':');
}

/** Option 43 bytes: sub-option code, length, value, for each sub-option. */
function sub43Bytes(subs: PlannedOption[]): Buffer {
  return Buffer.concat(subs.map((s) => {
    const v = Buffer.from(s.value, 'utf8');
    return Buffer.concat([Buffer.from([s.code, v.length]), v]);
  }));
}

function answerSummary(p: VendorPlan): string {
  const parts = [
    ...p.sub43.map((s) => `option 43 sub-option ${s.code} = ${s.what}`),
    ...p.options.map((o) => `option ${o.code} = ${o.what}`),
  ];
  return parts.join(', ');
}

function matchSummary(p: VendorPlan, classesHow: string): string[] {
  const lines = [`matches MAC OUI ${p.ouis.map(ouiColons).join(' ')}`];
  const n = p.exact.length + p.prefix.length + p.suffix.length;
  if (n > 0) lines.push(`or option 60 (vendor class) ${classesHow}: ${n} pattern${n === 1 ? '' : 's'}`);
  return lines;
}

function header(p: Plan, prefix: string, format: string): string[] {
  const { url, host, ip, tenant } = p.opts;
  const without = p.without.map((v) => `${plain(v.name)} (vendor ${v.id})`);
  return [
    `${prefix}aps: DHCP classes for ${format}, printed by \`apsctl dhcp classes --format ${p.opts.format}${tenant !== undefined ? ` --tenant ${plain(tenant)}` : ''}\``,
    `${prefix}Provisioning URL ${plain(url)} (host ${plain(host)}, server address ${ip})`,
    `${prefix}One class per phone vendor: it matches the vendor's MAC OUIs and its option-60 vendor classes`,
    `${prefix}and gives the phones the option their firmware reads. Other clients get nothing from it.`,
    ...(without.length ? [`${prefix}No class for ${without.join(', ')}: the vendor data asks for no DHCP option.`] : []),
  ];
}

// ---------------------------------------------------------------------------------------------
// ISC dhcpd

function iscString(s: string): string {
  if (!isPrintable(s)) return hexBytes(s, ':');
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function iscOptionName(code: number): string {
  return ISC_NAMES[code] ?? `aps-option-${code}`;
}

function iscBlocks(p: Plan): string {
  const out: string[] = [];
  out.push(...header(p, '# ', 'ISC dhcpd'));
  out.push(
    '# Where: save as /etc/dhcp/aps-classes.conf and add, at the top level of dhcpd.conf',
    '# (outside any subnet or shared-network), before the subnets:',
    '#     include "/etc/dhcp/aps-classes.conf";',
    '# then check with: dhcpd -t -cf /etc/dhcp/dhcpd.conf',
    '',
  );
  const defs = [...p.types].filter(([code]) => !ISC_NAMES[code]).sort((a, b) => a[0] - b[0]);
  if (defs.length > 0) {
    out.push('# Option definitions, for codes without a name in every dhcpd version');
    for (const [code, type] of defs) {
      out.push(`option ${iscOptionName(code)} code ${code} = ${type === 'ip' ? 'array of ip-address' : 'text'};`);
    }
    out.push('');
  }
  for (const v of p.vendors) {
    out.push(`# ${plain(v.vendor.name)} (vendor ${v.vendor.id}): ${answerSummary(v)}`);
    for (const l of matchSummary(v, 'exact, prefix or suffix')) out.push(`#   ${l}`);
    for (const r of v.regex) out.push(`#   option 60 regex /${plain(r)}/ cannot be written in dhcpd: such phones match by OUI only`);
    if (v.sub43.length > 0) {
      out.push(`option space ${v.space};`);
      for (const s of v.sub43) out.push(`option ${v.space}.sub-${s.code} code ${s.code} = text;`);
    }
    const conds: string[] = [
      ...v.ouis.map((o) => `substring(hardware, 1, 3) = ${ouiColons(o)}`),
      ...v.exact.map((s) => `option vendor-class-identifier = ${iscString(s)}`),
      ...v.prefix.map((s) => `substring(option vendor-class-identifier, 0, ${Buffer.byteLength(s)}) = ${iscString(s)}`),
      ...v.suffix.map((s) => `suffix(option vendor-class-identifier, ${Buffer.byteLength(s)}) = ${iscString(s)}`),
    ];
    out.push(`class "${v.tag}" {`);
    out.push(`  match if ${conds.join('\n        or ')};`);
    if (v.sub43.length > 0) {
      out.push(`  vendor-option-space ${v.space};`);
      for (const s of v.sub43) out.push(`  option ${v.space}.sub-${s.code} ${iscString(s.value)};`);
    }
    for (const o of v.options) {
      out.push(`  option ${iscOptionName(o.code)} ${o.type === 'ip' ? o.value : iscString(o.value)};`);
    }
    out.push('}', '');
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Kea DHCPv4

/** A Kea expression literal: 'text' when plain, else 0x hex. */
function keaLiteral(s: string): string {
  if (isPrintable(s) && !/['\\]/.test(s)) return `'${s}'`;
  return `0x${hexBytes(s, '').toUpperCase()}`;
}

function keaBlocks(p: Plan): string {
  const optionDef: Record<string, unknown>[] = [];
  for (const [code, type] of [...p.types].sort((a, b) => a[0] - b[0])) {
    if (KEA_STANDARD.has(code)) continue;
    optionDef.push({
      name: `aps-option-${code}`,
      code,
      space: 'dhcp4',
      type: type === 'ip' ? 'ipv4-address' : 'string',
      array: type === 'ip',
      comment: `aps: option ${code}, which Kea has no definition for`,
    });
  }
  for (const v of p.vendors) {
    for (const s of v.sub43) {
      optionDef.push({
        name: `sub-${s.code}`, code: s.code, space: v.space, type: 'string', array: false,
        comment: `aps: ${plain(v.vendor.name)} option 43 sub-option ${s.code}`,
      });
    }
  }
  const classes = p.vendors.map((v) => {
    const conds = [
      ...v.ouis.map((o) => `substring(pkt4.mac, 0, 3) == 0x${o}`),
      ...v.exact.map((s) => `option[60].hex == ${keaLiteral(s)}`),
      ...v.prefix.map((s) => `substring(option[60].hex, 0, ${Buffer.byteLength(s)}) == ${keaLiteral(s)}`),
      ...v.suffix.map((s) => `substring(option[60].hex, -${Buffer.byteLength(s)}, all) == ${keaLiteral(s)}`),
    ];
    const comment = [
      `aps: ${plain(v.vendor.name)} (vendor ${v.vendor.id}): ${answerSummary(v)}; ${matchSummary(v, 'exact, prefix or suffix').join(' ')}`,
      ...v.regex.map((r) => `; option 60 regex /${plain(r)}/ cannot be written in a Kea test: such phones match by OUI only`),
    ].join('');
    const optionData: Record<string, unknown>[] = [];
    if (v.sub43.length > 0) {
      for (const s of v.sub43) optionData.push({ name: `sub-${s.code}`, space: v.space, data: s.value, 'always-send': true });
      optionData.push({ name: 'vendor-encapsulated-options', code: 43, 'always-send': true });
    }
    for (const o of v.options) {
      const d: Record<string, unknown> = KEA_NAMES[o.code] ? { name: KEA_NAMES[o.code] } : KEA_STANDARD.has(o.code) ? { code: o.code } : { name: `aps-option-${o.code}` };
      d.code = o.code;
      d.data = o.value;
      d['always-send'] = true;
      optionData.push(d);
    }
    const cls: Record<string, unknown> = { name: v.tag, comment, test: conds.join(' or ') };
    if (v.sub43.length > 0) {
      // a class-level definition of 43 makes Kea encapsulate this vendor's own space
      cls['option-def'] = [{ name: 'vendor-encapsulated-options', code: 43, type: 'empty', encapsulate: v.space }];
    }
    cls['option-data'] = optionData;
    return cls;
  });
  const { url, tenant } = p.opts;
  const obj: Record<string, unknown> = {
    comment: `aps: DHCP classes for Kea, printed by \`apsctl dhcp classes --format kea${tenant !== undefined ? ` --tenant ${plain(tenant)}` : ''}\`, provisioning URL ${plain(url)}. `
      + 'Where: merge into "Dhcp4", appending option-def and client-classes to the lists already there; then check with kea-dhcp4 -t. '
      + 'Kea lets an option set in a subnet, shared network or pool win over the same option in a class: leave 43, 66, 150 and 160 out of the phones\' subnet.'
      + p.without.map((v) => ` No class for ${plain(v.name)} (vendor ${v.id}): the vendor data asks for no DHCP option.`).join(''),
  };
  if (optionDef.length > 0) obj['option-def'] = optionDef;
  obj['client-classes'] = classes;
  return `${JSON.stringify(obj, null, 2)}\n`;
}

// ---------------------------------------------------------------------------------------------
// dnsmasq

function dnsmasqString(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function dnsmasqBlocks(p: Plan): string {
  const out: string[] = [];
  out.push(...header(p, '# ', 'dnsmasq'));
  out.push(
    '# Where: save as /etc/dnsmasq.d/aps-classes.conf (or any file named by conf-file=),',
    '# then check with: dnsmasq --test',
    '# dnsmasq matches a vendor class anywhere inside option 60 (a substring), so exact, prefix',
    '# and suffix patterns all match a little more widely here than in dhcpd or Kea.',
    '',
  );
  for (const v of p.vendors) {
    out.push(`# ${plain(v.vendor.name)} (vendor ${v.vendor.id}): ${answerSummary(v)}`);
    for (const o of v.ouis) out.push(`dhcp-mac=set:${v.tag},${ouiColons(o)}:*:*:*`);
    for (const kind of ['exact', 'prefix', 'suffix'] as const) {
      for (const s of v[kind]) {
        if (!isPrintable(s)) {
          out.push(`# option 60 ${kind} "${plain(s)}" holds bytes dnsmasq cannot match: such phones match by OUI only`);
          continue;
        }
        out.push(`dhcp-vendorclass=set:${v.tag},${dnsmasqString(s)}`);
      }
    }
    for (const r of v.regex) out.push(`# option 60 regex /${plain(r)}/ cannot be written in dnsmasq: such phones match by OUI only`);
    if (v.sub43.length > 0) {
      out.push(`# option 43 = ${v.sub43.map((s) => `sub-option ${s.code} "${plain(s.value)}"`).join(', ')}`);
      out.push(`dhcp-option-force=tag:${v.tag},43,${[...sub43Bytes(v.sub43)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`);
    }
    for (const o of v.options) {
      out.push(`dhcp-option-force=tag:${v.tag},${o.code},${o.type === 'ip' ? o.value : dnsmasqString(o.value)}`);
    }
    out.push('');
  }
  return out.join('\n');
}
