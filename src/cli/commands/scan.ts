/**
 * apsctl scan FIRST-LAST --interface IF --tenant T: an ARP sweep with nmap; every phone of a
 * supported vendor that is not a device yet is added as unprovisioned (source scan, last IP
 * the scanned one). Progress on stderr while nmap runs, a table at the end.
 *
 * --sip-server: ScopTEL asks for the PBX address here and writes it into the unprovisioned
 * configuration. In aps the registrar of every unprovisioned phone is [provisioning]
 * sip_server (one place, used by every discovery path and by the PIN workflow), so a
 * per-scan registrar would make two truths. The flag is therefore a check: the scan says
 * whether the address given is the configured one (after the IP/DNS map), warns when it is
 * not and how to change it, and records the given address in the scan's audit event.
 *
 * The model: the template's (--template, one per vendor, else [discovery] template when it
 * is of the same vendor), else the vendor's first model is assumed and the table says so;
 * the inventory replaces an assumed model of a scanned, still unprovisioned device as soon as
 * DHCP or a User-Agent names the real one.
 */
import { defaultModel, requireTemplateFits, templateFits } from '../../inventory/rules.js';
import net from 'node:net';
import type { Template } from '../../config/index.js';
import { ApsError } from '../../errors.js';
import { isLocallyAdministered, macColon, type Mac } from '../../mac.js';
import { applyIpMap, compileIpMap } from '../../render/ipmap.js';
import { checkInterface, findNmap, NMAP_MISSING, parseScanRange, runScan, type ScanHost } from '../../inventory/scan.js';
import type { Vendor } from '../../vendors/registry.js';
import { openStore, out, usage, type CliCommand, type Ctx } from '../context.js';
import { table } from '../table.js';

type Status = 'added' | 'would be added' | 'already known' | 'not a phone' | 'no MAC (this machine)';

interface ScanRow {
  ip: string;
  mac: Mac | null;
  vendor: Vendor | null;
  /** nmap's name for the OUI, for what is not a phone */
  macVendor: string;
  model: string | null;
  modelAssumed: boolean;
  template: string | null;
  status: Status;
}

function ipKey(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

async function runScanCommand(ctx: Ctx, pos: string[], o: Record<string, string | boolean | undefined>): Promise<number> {
  if (pos.length !== 1) usage('scan takes one address range: FIRST-LAST');
  const range = parseScanRange(pos[0]);
  const ifname = o.interface as string | undefined;
  if (!ifname) usage('scan needs --interface IF: the interface on the voice subnet');
  const tenant = o.tenant as string | undefined;
  if (!tenant) usage('scan needs --tenant T: the tenant the new phones belong to');
  if (!ctx.config.tenants.has(tenant)) {
    throw new ApsError('APS_ERR_NOT_FOUND', `no tenant "${tenant}"`, { key: '--tenant', expected: `one of ${[...ctx.config.tenants.keys()].join(', ')} (tenants.d/<id>.ini)` });
  }
  const dryRun = o['dry-run'] === true;
  const sipServer = o['sip-server'] as string | undefined;
  if (sipServer !== undefined && !net.isIP(sipServer) && !/^[A-Za-z0-9.-]{1,253}$/.test(sipServer)) {
    usage(`--sip-server ${sipServer}: expected an IP address or a host name`);
  }

  // templates per vendor: --template, else [discovery] template
  const byVendor = new Map<string, Template>();
  const names = ((o.template as string | undefined) ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  for (const name of names) {
    const t = ctx.config.templates.get(name);
    if (!t) throw new ApsError('APS_ERR_NOT_FOUND', `no template "${name}"`, { key: '--template', expected: `one of ${[...ctx.config.templates.keys()].join(', ') || '(none)'}` });
    requireTemplateFits(t, tenant, '--template');
    if (byVendor.has(t.vendor)) usage(`--template names two templates of vendor ${t.vendor}: give one per vendor`);
    byVendor.set(t.vendor, t);
  }
  const discTpl = ctx.config.templates.get(ctx.config.settings.discovery.template);
  if (discTpl && templateFits(discTpl, tenant) && !byVendor.has(discTpl.vendor)) byVendor.set(discTpl.vendor, discTpl);

  const nmap = findNmap();
  if (!nmap) throw new ApsError('APS_ERR_USAGE', NMAP_MISSING, { expected: 'nmap on PATH' });
  checkInterface(ifname, range);
  const store = openStore(ctx);
  const progress = (s: string) => {
    process.stderr.write(s + '\n');
  };
  progress(`scanning ${range.first}-${range.last} (${range.count} address${range.count === 1 ? '' : 'es'}) on ${ifname} with nmap (ARP)`);
  let lastLine = '';
  const result = await runScan({
    nmap,
    range,
    ifname,
    onProgress: (p) => {
      const line = `${p.task || 'scan'}: ${Math.round(p.percent)}%${p.remaining ? `, about ${p.remaining} s left` : ''}`;
      if (line !== lastLine) progress(line);
      lastLine = line;
    },
    onHost: (h) => {
      const v = h.mac ? ctx.registry.vendorOfMac(h.mac) : undefined;
      progress(`up: ${h.ip}${h.mac ? ` ${macColon(h.mac)}` : ''}${v ? ` (${v.name})` : h.macVendor ? ` (${h.macVendor})` : ''}`);
    },
  });

  const rows: ScanRow[] = result.hosts.map((h: ScanHost) => {
    const base = { ip: h.ip, mac: h.mac, macVendor: h.macVendor, vendor: null, model: null, modelAssumed: false, template: null };
    if (!h.mac) return { ...base, status: 'no MAC (this machine)' as const };
    const vendor = isLocallyAdministered(h.mac) ? undefined : ctx.registry.vendorOfMac(h.mac);
    if (!vendor) return { ...base, status: 'not a phone' as const };
    const known = store.device(h.mac);
    if (known) return { ...base, vendor, model: known.model, template: known.template, status: 'already known' as const };
    const tpl = byVendor.get(vendor.id);
    const wanted = (o.model as string | undefined) ?? tpl?.model;
    const m = wanted ? ctx.registry.model(vendor.id, wanted) : undefined;
    return {
      ...base, vendor, model: m?.id ?? defaultModel(vendor, tpl).model.id, modelAssumed: !m, template: tpl?.name ?? null,
      status: dryRun ? ('would be added' as const) : ('added' as const),
    };
  });
  rows.sort((a, b) => ipKey(a.ip) - ipKey(b.ip));

  const fresh = rows.filter((r) => r.status === 'added');
  const seen = rows.filter((r) => r.mac && r.vendor && r.status === 'already known');
  if (!dryRun) {
    const now = Date.now();
    store.transaction(() => {
      for (const r of fresh) {
        store.addDevice({ mac: r.mac!, tenant, vendor: r.vendor!.id, model: r.model!, template: r.template, state: 'unprovisioned', source: 'scan', label: '' });
      }
      for (const r of [...fresh, ...seen]) store.noteSeen(r.mac!, r.ip, now);
      store.event('scan', null, `range=${range.first}-${range.last} interface=${ifname} tenant=${tenant} up=${rows.length} added=${fresh.length}${sipServer ? ` sip_server=${sipServer}` : ''}`);
    });
  }

  // the SIP server check
  const settings = ctx.config.settings;
  const tenantMap = ctx.config.tenants.get(tenant)?.ipDnsMap ?? [];
  const configured = settings.provisioning.sipServer;
  const mapped = applyIpMap(configured, compileIpMap(tenantMap, settings.ipDnsMap));
  const sipMatches = sipServer === undefined || sipServer === configured || sipServer === mapped;

  const phones = rows.filter((r) => r.vendor).length;
  const summary = `scanned ${range.count} address${range.count === 1 ? '' : 'es'} in ${(result.ms / 1000).toFixed(1)} s: ${rows.length} up, ${phones} phone${phones === 1 ? '' : 's'}, ${dryRun ? `${rows.filter((r) => r.status === 'would be added').length} would be added (dry run: nothing written)` : `${fresh.length} added`}, ${rows.filter((r) => r.status === 'already known').length} already known`;
  if (ctx.json) {
    out(JSON.stringify({
      range: `${range.first}-${range.last}`, interface: ifname, tenant, dryRun, ms: result.ms,
      sipServer: sipServer === undefined ? null : { given: sipServer, configured, mapped, matches: sipMatches },
      hosts: rows.map((r) => ({ ip: r.ip, mac: r.mac, vendor: r.vendor?.id ?? null, macVendor: r.macVendor || null, model: r.model, modelAssumed: r.modelAssumed, template: r.template, status: r.status })),
    }, null, 2) + '\n');
  } else {
    out(rows.length
      ? table(['IP', 'MAC', 'VENDOR', 'MODEL', 'TEMPLATE', 'STATUS'], rows.map((r) => [
        r.ip, r.mac ? macColon(r.mac) : '-', r.vendor?.name ?? (r.macVendor ? `(${r.macVendor})` : '-'),
        r.model ? r.model + (r.modelAssumed ? ' (assumed)' : '') : '-', r.template ?? '-', r.status,
      ]))
      : 'no host answered\n');
    out(summary + '\n');
    if (rows.some((r) => r.modelAssumed)) out('(assumed) = no template of that vendor names a model: the model is corrected when the phone asks for its files or sends DHCP\n');
  }
  if (!sipMatches) {
    process.stderr.write(`note: unprovisioned phones register at [provisioning] sip_server = ${configured}${mapped !== configured ? ` (${mapped})` : ''}, not ${sipServer}: to change it, set sip_server = ${sipServer} in aps.ini and reload apsd\n`);
  }
  return 0;
}

export const commands: CliCommand[] = [
  {
    name: 'scan',
    usage: 'scan FIRST-LAST --interface IF --tenant T [--template X[,Y]] [--sip-server IP] [--dry-run]\n                          ARP-scan a range with nmap; phones of supported vendors that are not\n                          devices yet are added as unprovisioned',
    options: { interface: { type: 'string' }, 'sip-server': { type: 'string' }, 'dry-run': { type: 'boolean' } },
    run: runScanCommand,
  },
];
