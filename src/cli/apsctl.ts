/**
 * apsctl: the admin CLI. Works with or without apsd running: it writes the state database
 * (apsd reads it per request, so changes take effect at the next fetch) and reads the same
 * ini files as apsd.
 */
import { TEMPLATE_SECTIONS } from '../config/template.js';
import { readIni } from '../config/ini-file.js';
import { DigestAuth } from '../provisioning/digest.js';
import { Guard } from '../provisioning/guard.js';
import { createLogger } from '../log.js';
import { assignLine, describeStage, setDisabled, unassignLine } from '../inventory/lines.js';
import { Observations } from '../store/observations.js';
import { configSource, lineCapacity, tieBase, untieBase } from '../inventory/multicell.js';
import { requireTemplateFits } from '../inventory/rules.js';
import { parseArgs } from 'node:util';
import path from 'node:path';
import { DEFAULT_VENDORS_DIR } from '../install.js';
import { checkTemplates } from '../vendors/templates-check.js';
import { configDirFrom, loadConfig, type Config } from '../config/index.js';
import { ApsError, isApsError } from '../errors.js';
import { macColon, requireMac, type Mac } from '../mac.js';
import { Renderer } from '../render/index.js';
import { buildView } from '../render/view.js';
import { Store, storeFailure, type DeviceRow } from '../store/index.js';
import { VendorRegistry, fileFits, fileNameForModel } from '../vendors/registry.js';
import { table } from './table.js';
import { needDevice, openStore, out, usage, warnIfStale, type CliCommand, type Ctx } from './context.js';
import fs from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { explain } from '../provisioning/explain.js';
import { checkTemplateFirmware } from '../firmware/select.js';
import { FirmwareStore } from '../store/firmware.js';
import net from 'node:net';

const USAGE = `usage: apsctl [--config DIR] [--vendors DIR] [--json] COMMAND ...

devices
  device add <mac> --tenant T --template NAME [--model M] [--label L]
  device list [--tenant T] [--state unprovisioned|provisioned|disabled] [--vendor V]
  device show <mac>         its stage, lines, files and recent fetches
  device set <mac> [--template T] [--model M] [--label L] [--tenant T]
  device disable <mac>      serve it nothing of value (no account, no keys, no secrets)
  device enable <mac>
  device tie <base> --to <primary>
                            multicell DECT: the base is served the primary base's configuration
  device untie <base>
  device remove <mac>
  line set <mac> <n> --extension E      (on a DECT base line n is handset n) [--label L] [--cid-source pai-from|from|rpid|pai]
                     [--local-port PORT|LOW-HIGH] [--srtp]
  line remove <mac> <n>
  device credentials <mac> [--rotate]
                            the phone's own HTTP credentials (written into its config)
files
  render <mac> [<file>]     print exactly what the phone would get (no proof needed here)
  explain <ip> <file> [--user-agent UA]
                            what apsd decides for that request, and why (401/403/404)
security
  ban list                  banned source addresses
  ban lift <ip>             lift a ban at once (apsd sees it at its next request)
catalogue
  vendor list               vendors, their models, files and DHCP classes
  template list             hardware templates in templates.d
  template show <name>      its effective keys (extends resolved) and the file:line each comes from
  config check              validate every ini file, template and vendor; show warnings

MAC forms: 80:5e:c0:12:34:56, 80-5E-C0-12-34-56, 805e.c012.3456, 805EC0123456.
--json prints machine-readable output on every command that prints data.
Exit status: 0 success, 1 error (message names the file, line and key), 2 usage.`;

const CID_SOURCES = ['pai-from', 'from', 'rpid', 'pai'];

function deviceJson(d: DeviceRow, store: Store) {
  return {
    mac: d.mac, tenant: d.tenant, vendor: d.vendor, model: d.model, template: d.template, state: d.state,
    label: d.label, source: d.source, created: new Date(d.created_at).toISOString(), updated: new Date(d.updated_at).toISOString(),
    seen: d.seen_at ? new Date(d.seen_at).toISOString() : null, lastIp: d.last_ip, lastProto: d.seen_proto, firmware: d.firmware,
    lines: store.lines(d.mac).map((l) => ({ line: l.idx, extension: l.extension, label: l.label, cidSource: l.cid_source, localPort: l.local_port, srtp: l.srtp === 1 })),
  };
}

function fetchesJson(store: Store, mac: Mac, limit: number) {
  return new Observations(store).recent(mac, limit).map((f) => ({
    at: new Date(f.at).toISOString(), proto: f.proto, file: f.file, answer: f.answer, proof: f.proof || null, ip: f.ip,
    userAgent: f.user_agent || null, vendor: f.ua_vendor, model: f.ua_model, firmware: f.ua_firmware,
  }));
}

function deviceAdd(ctx: Ctx, pos: string[], o: Record<string, string | boolean | undefined>) {
  if (pos.length !== 1) usage('device add takes one MAC');
  const mac = requireMac(pos[0]);
  const tenant = o.tenant as string | undefined;
  const tplName = o.template as string | undefined;
  if (!tenant) usage('device add needs --tenant T');
  if (!tplName) usage('device add needs --template NAME');
  if (!ctx.config.tenants.has(tenant)) {
    throw new ApsError('APS_ERR_NOT_FOUND', `no tenant "${tenant}"`, { expected: `one of ${[...ctx.config.tenants.keys()].join(', ')} (tenants.d/<id>.ini)` });
  }
  const tpl = ctx.config.templates.get(tplName);
  if (!tpl) throw new ApsError('APS_ERR_NOT_FOUND', `no template "${tplName}"`, { expected: `one of ${[...ctx.config.templates.keys()].join(', ') || '(none: add templates.d/<name>.ini)'}` });
  requireTemplateFits(tpl, tenant, '--template');
  const vendor = ctx.registry.get(tpl.vendor)!;
  const modelName = (o.model as string | undefined) ?? tpl.model;
  const model = ctx.registry.model(vendor.id, modelName);
  if (!model) throw new ApsError('APS_ERR_NOT_FOUND', `${vendor.name} has no model "${modelName}"`, { expected: `one of ${vendor.models.map((m) => m.id).join(', ')}` });
  const ouiVendor = ctx.registry.vendorOfMac(mac);
  const store = openStore(ctx);
  // no line yet: the unprovisioned stage (its own unprov account) until a line is set or a PIN registers it
  const d = store.addDevice({ mac, tenant, vendor: vendor.id, model: model.id, template: tpl.name, label: (o.label as string) ?? '', state: 'unprovisioned', source: 'cli' });
  warnIfStale(ctx);
  if (ctx.json) out(JSON.stringify(deviceJson(d, store), null, 2) + '\n');
  else {
    out(`added ${macColon(mac)}: ${vendor.name} ${model.id}, tenant ${tenant}, template ${tpl.name}\n`);
    if (ouiVendor && ouiVendor.id !== vendor.id) out(`note: the OUI of ${macColon(mac)} belongs to ${ouiVendor.name}, not ${vendor.name}\n`);
    if (!ouiVendor) out(`note: the OUI of ${macColon(mac)} is not one ${vendor.name} is known to use\n`);
  }
}

function deviceList(ctx: Ctx, o: Record<string, string | boolean | undefined>) {
  const store = openStore(ctx);
  const state = o.state as string | undefined;
  if (state && !['unprovisioned', 'provisioned', 'disabled'].includes(state)) usage(`--state ${state}: expected unprovisioned, provisioned or disabled`);
  const rows = store.devices({ tenant: o.tenant as string, state: state as never, vendor: o.vendor as string });
  if (ctx.json) {
    out(JSON.stringify(rows.map((d) => deviceJson(d, store)), null, 2) + '\n');
    return;
  }
  if (!rows.length) {
    out('no devices\n');
    return;
  }
  out(table(['MAC', 'TENANT', 'VENDOR', 'MODEL', 'TEMPLATE', 'STATE', 'LINE 1', 'LABEL', 'LAST SEEN', 'ADDRESS', 'FIRMWARE'], rows.map((d) => {
    const l1 = store.lines(d.mac)[0];
    return [macColon(d.mac), d.tenant, d.vendor, d.model, d.template ?? '-', d.state, l1?.extension ?? '-', d.label || '-', d.seen_at ? new Date(d.seen_at).toISOString().replace(/\.\d+Z$/, 'Z') : '-', d.last_ip ?? '-', d.firmware ?? '-'];
  })));
}

function deviceShow(ctx: Ctx, pos: string[]) {
  if (pos.length !== 1) usage('device show takes one MAC');
  const store = openStore(ctx);
  const d = needDevice(store, requireMac(pos[0]));
  const src = configSource(store, d);
  const j = { ...deviceJson(d, store), lines: deviceJson(src, store).lines, sharesWith: d.shares_with, stage: describeStage(src, store.lines(src.mac).length), fetches: fetchesJson(store, d.mac, ctx.config.settings.server.observationsPerDevice) };
  if (ctx.json) {
    out(JSON.stringify(j, null, 2) + '\n');
    return;
  }
  const v = ctx.registry.get(d.vendor);
  const m = ctx.registry.model(d.vendor, d.model);
  out(`mac:       ${macColon(d.mac)}\nvendor:    ${v?.name ?? d.vendor}\nmodel:     ${d.model}\ntenant:    ${d.tenant}\ntemplate:  ${d.template ?? '-'}\nstate:     ${j.stage}\nlabel:     ${d.label || '-'}\nsource:    ${d.source}\nfirmware:  ${d.firmware ?? '-'}\ncreated:   ${j.created}\nupdated:   ${j.updated}\nlast seen: ${j.seen ?? '-'}${d.last_ip ? ` from ${d.last_ip}${d.seen_proto ? ` (${d.seen_proto})` : ''}` : ''}\n`);
  if (v && m) {
    out('files:\n');
    for (const f of v.compiledFiles.filter((c) => fileFits(v, c.spec, m))) {
      const name = fileNameForModel(f.spec, d.mac, m);
      if (name !== undefined) out(`  ${name.padEnd(28)} ${f.spec.secrets ? 'holds secrets: needs proof' : 'no secrets'}\n`);
    }
  }
  if (d.shares_with) out(`multicell: served the configuration of ${macColon(d.shares_with as Mac)} (its lines below; apsctl device untie ${d.mac} ends it)\n`);
  const tied = store.devices().filter((x) => x.shares_with === d.mac);
  if (tied.length) out(`multicell: ${tied.map((x) => macColon(x.mac)).join(', ')} share${tied.length === 1 ? 's' : ''} this configuration\n`);
  const noun = m && lineCapacity(m).noun === 'handset' ? 'HANDSET' : 'LINE';
  out(j.lines.length ? table([noun, 'EXTENSION', 'LABEL', 'CID SOURCE', 'LOCAL PORT', 'SRTP'], j.lines.map((l) => [l.line, l.extension, l.label || '-', l.cidSource, l.localPort || '-', l.srtp ? 'yes' : 'no'])) : 'no lines assigned\n');
  const recent = j.fetches.slice(0, 10);
  out(recent.length
    ? `recent fetches (${j.fetches.length} kept, newest first):\n` + table(['TIME', 'PROTO', 'FILE', 'ANSWER', 'PROOF', 'ADDRESS', 'FIRMWARE'], recent.map((f) => [f.at.replace(/\.\d+Z$/, 'Z'), f.proto, f.file, f.answer, f.proof ?? '-', f.ip, f.firmware ?? '-']))
    : 'no fetches seen\n');
}

function deviceSet(ctx: Ctx, pos: string[], o: Record<string, string | boolean | undefined>) {
  if (pos.length !== 1) usage('device set takes one MAC');
  const mac = requireMac(pos[0]);
  if (['template', 'model', 'label', 'tenant'].every((k) => o[k] === undefined)) usage('device set needs at least one of --template, --model, --label, --tenant');
  const store = openStore(ctx);
  const d = needDevice(store, mac);
  const tenant = (o.tenant as string | undefined) ?? d.tenant;
  if (!ctx.config.tenants.has(tenant)) throw new ApsError('APS_ERR_NOT_FOUND', `no tenant "${tenant}"`, { key: '--tenant', expected: `one of ${[...ctx.config.tenants.keys()].join(', ')} (tenants.d/<id>.ini)` });
  if (tenant !== d.tenant && store.lines(mac).length) {
    throw new ApsError('APS_ERR_USAGE', `${macColon(mac)} has lines of tenant ${d.tenant}: remove them first (apsctl line remove)`, { key: '--tenant', expected: 'a device without lines' });
  }
  const tplName = (o.template as string | undefined) ?? d.template ?? undefined;
  const tpl = tplName ? ctx.config.templates.get(tplName) : undefined;
  if (tplName && !tpl) throw new ApsError('APS_ERR_NOT_FOUND', `no template "${tplName}"`, { key: '--template', expected: `one of ${[...ctx.config.templates.keys()].join(', ') || '(none: add templates.d/<name>.ini)'}` });
  if (tpl) {
    requireTemplateFits(tpl, tenant, '--template');
    if (tpl.vendor !== d.vendor) throw new ApsError('APS_ERR_USAGE', `template "${tpl.name}" is for ${tpl.vendor}; ${macColon(mac)} is a ${d.vendor} phone`, { key: '--template', expected: `a ${d.vendor} template` });
  }
  let model = d.model;
  if (o.model !== undefined) {
    const m = ctx.registry.model(d.vendor, o.model as string);
    const v = ctx.registry.get(d.vendor);
    if (!m) throw new ApsError('APS_ERR_NOT_FOUND', `${v?.name ?? d.vendor} has no model "${o.model}"`, { key: '--model', expected: `one of ${v?.models.map((x) => x.id).join(', ')}` });
    model = m.id;
  } else if (o.template !== undefined && tpl) {
    model = tpl.model;
  }
  const next = store.updateDevice(mac, {
    tenant, model, template: tpl?.name ?? d.template, label: o.label !== undefined ? String(o.label) : undefined,
  });
  if (ctx.json) out(JSON.stringify(deviceJson(next, store), null, 2) + '\n');
  else out(`${macColon(mac)}: ${next.vendor} ${next.model}, tenant ${next.tenant}, template ${next.template ?? '-'}, label ${next.label || '-'}\n`);
  warnIfStale(ctx);
}

function deviceTie(ctx: Ctx, pos: string[], o: Record<string, string | boolean | undefined>) {
  if (pos.length !== 1 || typeof o.to !== 'string') usage('device tie takes a base MAC and --to <primary base MAC>');
  const store = openStore(ctx);
  const d = tieBase(store, ctx.registry, requireMac(pos[0]), requireMac(o.to));
  if (ctx.json) out(JSON.stringify({ ...deviceJson(d, store), sharesWith: d.shares_with }, null, 2) + '\n');
  else out(`${macColon(d.mac)} is served the configuration of ${macColon(d.shares_with as Mac)} (multicell)\n`);
}

function deviceUntie(ctx: Ctx, pos: string[]) {
  if (pos.length !== 1) usage('device untie takes one base MAC');
  const store = openStore(ctx);
  const d = untieBase(store, requireMac(pos[0]));
  out(ctx.json ? JSON.stringify(deviceJson(d, store), null, 2) + '\n' : `${macColon(d.mac)} has its own configuration again\n`);
}

function deviceEnable(ctx: Ctx, pos: string[], disabled: boolean) {
  if (pos.length !== 1) usage(`device ${disabled ? 'disable' : 'enable'} takes one MAC`);
  const store = openStore(ctx);
  const d = setDisabled(store, requireMac(pos[0]), disabled);
  if (ctx.json) out(JSON.stringify(deviceJson(d, store), null, 2) + '\n');
  else out(`${macColon(d.mac)}: ${describeStage(d, store.lines(d.mac).length)}\n`);
}

function deviceRemove(ctx: Ctx, pos: string[]) {
  if (pos.length !== 1) usage('device remove takes one MAC');
  const mac = requireMac(pos[0]);
  const store = openStore(ctx);
  if (!store.removeDevice(mac)) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${macColon(mac)}`);
  if (ctx.json) out(JSON.stringify({ removed: mac }) + '\n');
  else out(`removed ${macColon(mac)}\n`);
}

function lineSet(ctx: Ctx, pos: string[], o: Record<string, string | boolean | undefined>) {
  if (pos.length !== 2) usage('line set takes a MAC and a line number');
  const mac = requireMac(pos[0]);
  if (!/^\d{1,2}$/.test(pos[1]) || Number(pos[1]) < 1) usage(`"${pos[1]}" is not a line number (1, 2, ...)`);
  const idx = Number(pos[1]);
  const extension = o.extension as string | undefined;
  if (!extension) usage('line set needs --extension E');
  const store = openStore(ctx);
  const d = needDevice(store, mac);
  const model = ctx.registry.model(d.vendor, d.model);
  if (d.shares_with) throw new ApsError('APS_ERR_USAGE', `${macColon(mac)} shares the configuration of ${macColon(d.shares_with as Mac)} (multicell): set the system's lines there`, { expected: `apsctl line set ${d.shares_with} ${idx} --extension …` });
  const cap = model ? lineCapacity(model) : null;
  if (cap && idx > cap.max) throw new ApsError('APS_ERR_USAGE', `a ${d.model} has ${cap.max} ${cap.noun}s; there is no ${cap.noun} ${idx}`, { expected: `1..${cap.max}` });
  const ext = ctx.config.extensions.get(`${d.tenant}/${extension}`);
  if (!ext) throw new ApsError('APS_ERR_NOT_FOUND', `extension ${extension} does not exist in tenant ${d.tenant}`, { expected: 'an [<number>] section with tenant = ' + d.tenant + ' in extensions.d/*.ini' });
  const cid = (o['cid-source'] as string | undefined) ?? 'from';
  if (!CID_SOURCES.includes(cid)) usage(`--cid-source ${cid}: expected one of ${CID_SOURCES.join(', ')}`);
  const lp = (o['local-port'] as string | undefined) ?? '';
  if (lp) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(lp);
    const lo = m ? Number(m[1]) : 0;
    const hi = m?.[2] ? Number(m[2]) : lo;
    if (!m || lo < 1024 || hi > 65535 || hi < lo) usage(`--local-port ${lp}: expected a port or a range from 1024 to 65535, e.g. 5062 or 10000-20000`);
  }
  assignLine(store, d.tenant, { mac, idx, extension, label: (o.label as string) ?? '', cid_source: cid, local_port: lp, srtp: o.srtp === true });
  if (ctx.json) out(JSON.stringify(deviceJson(store.device(mac)!, store), null, 2) + '\n');
  else out(`line ${idx} of ${macColon(mac)} is extension ${extension} (${ext.name || ext.number})\n`);
  warnIfStale(ctx);
}

function lineRemove(ctx: Ctx, pos: string[]) {
  if (pos.length !== 2) usage('line remove takes a MAC and a line number');
  const mac = requireMac(pos[0]);
  const store = openStore(ctx);
  needDevice(store, mac);
  if (!unassignLine(store, mac, Number(pos[1]))) throw new ApsError('APS_ERR_NOT_FOUND', `line ${pos[1]} of ${macColon(mac)} is not assigned`);
  out(ctx.json ? JSON.stringify({ removed: { mac, line: Number(pos[1]) } }) + '\n' : `removed line ${pos[1]} of ${macColon(mac)}\n`);
}

function deviceCredentials(ctx: Ctx, pos: string[], o: Record<string, string | boolean | undefined>) {
  if (pos.length !== 1) usage('device credentials takes one MAC');
  const store = openStore(ctx);
  const mac = requireMac(pos[0]);
  needDevice(store, mac);
  const c = o.rotate ? store.rotateCredentials(mac) : store.credentials(mac);
  if (!c) throw new ApsError('APS_ERR_NOT_FOUND', `device ${macColon(mac)} has no credentials`);
  if (ctx.json) out(JSON.stringify({ mac, username: c.username, password: c.password, created: new Date(c.created_at).toISOString() }, null, 2) + '\n');
  else {
    out(`username: ${c.username}\npassword: ${c.password}\ncreated:  ${new Date(c.created_at).toISOString()}\n`);
    if (o.rotate) out('rotated: the old pair no longer works; the phone learns the new one at its next authenticated fetch\n');
  }
}

function banList(ctx: Ctx) {
  const bans = openStore(ctx).activeBans();
  if (ctx.json) {
    out(JSON.stringify(bans.map((b) => ({ ip: b.ip, until: new Date(b.until).toISOString(), reason: b.reason, count: b.count, since: new Date(b.created_at).toISOString() })), null, 2) + '\n');
    return;
  }
  if (!bans.length) {
    out('no bans\n');
    return;
  }
  out(table(['IP', 'UNTIL', 'REASON', 'OFFENCES', 'SINCE'], bans.map((b) => [b.ip, new Date(b.until).toISOString(), b.reason, b.count, new Date(b.created_at).toISOString()])));
}

function banLift(ctx: Ctx, pos: string[]) {
  if (pos.length !== 1) usage('ban lift takes one IP address');
  const store = openStore(ctx);
  if (!store.liftBan(pos[0])) throw new ApsError('APS_ERR_NOT_FOUND', `${pos[0]} is not banned`, { expected: 'an address from apsctl ban list' });
  store.event('ban.lifted', null, `ip=${pos[0]}`);
  out(ctx.json ? JSON.stringify({ lifted: pos[0] }) + '\n' : `lifted the ban of ${pos[0]}\n`);
}

function explainCmd(ctx: Ctx, pos: string[], o: Record<string, string | boolean | undefined>) {
  if (pos.length !== 2) usage('explain takes an IP address and a file name');
  if (!net.isIP(pos[0])) usage(`"${pos[0]}" is not an IP address`);
  const store = openStore(ctx);
  const settings = () => ctx.config.settings;
  const sec = ctx.config.settings.security;
  const auth = new DigestAuth(sec.username ? { username: sec.username, password: sec.password } : null, sec.realm);
  const log = createLogger({ level: 'error' });
  const guard = new Guard({ store, settings, auth, log, registry: () => ctx.registry });
  const renderer = new Renderer({ registry: ctx.registry, store, config: () => ctx.config, generation: () => 1 });
  const e = explain({ registry: () => ctx.registry, store, renderer, guard, firmwareDir: () => ctx.config.settings.server.firmwareDir, log }, { ip: pos[0], file: pos[1], userAgent: o['user-agent'] as string | undefined });
  if (ctx.json) {
    out(JSON.stringify(e, null, 2) + '\n');
    return;
  }
  out(`request of ${e.file} from ${e.ip}\n`);
  for (const s of e.steps) out(`  ${(s.step + ':').padEnd(13)}${s.says}\n`);
  out(`  ${'HTTP:'.padEnd(13)}${e.http}\n  ${'TFTP:'.padEnd(13)}${e.tftp}\n`);
}

function render(ctx: Ctx, pos: string[]) {
  if (pos.length < 1 || pos.length > 2) usage('render takes a MAC and optionally a file name');
  const store = openStore(ctx);
  const d = needDevice(store, requireMac(pos[0]));
  const v = ctx.registry.get(d.vendor);
  const model = ctx.registry.model(d.vendor, d.model);
  if (!v || !model) throw new ApsError('APS_ERR_VENDOR', `device ${d.mac} names vendor ${d.vendor} model ${d.model}, which the vendor data does not have`);
  const renderer = new Renderer({ registry: ctx.registry, store, config: () => ctx.config, generation: () => 1 });
  // the files of this model: one named by a code the model does not have is another model family's
  const names = v.compiledFiles.filter((c) => fileFits(v, c.spec, model)).flatMap((f) => {
    const name = fileNameForModel(f.spec, d.mac, model);
    return name === undefined ? [] : [{ f, name }];
  });
  const wanted = pos[1] ? names.filter((n) => n.name === pos[1] || n.name.toLowerCase() === pos[1].toLowerCase()) : names;
  if (pos[1] && !wanted.length) {
    throw new ApsError('APS_ERR_NOT_FOUND', `a ${v.name} ${model.id} does not ask for ${pos[1]}`, { expected: `one of ${names.map((n) => n.name).join(', ')}` });
  }
  const results = wanted.map(({ f, name }) => {
    const r = renderer.renderUncached(f, model, f.scope === 'device' ? d : undefined);
    return { name, secrets: f.spec.secrets, warnings: r.warnings, body: r.body.toString('utf8') };
  });
  if (ctx.json) {
    out(JSON.stringify(results, null, 2) + '\n');
    return;
  }
  if (pos[1]) {
    out(results[0].body);
  } else {
    for (const r of results) out(`==> ${r.name} <==${r.secrets ? ' (holds secrets)' : ''}\n${r.body}${r.body.endsWith('\n') ? '' : '\n'}\n`);
  }
  for (const r of results) for (const w of r.warnings) process.stderr.write(`warning: ${r.name}: ${w}\n`);
}

function vendorList(ctx: Ctx) {
  const vs = ctx.registry.list();
  if (ctx.json) {
    out(JSON.stringify(vs.map((v) => ({
      id: v.id, name: v.name, ouis: v.ouis, models: v.models.map((m) => ({ id: m.id, lines: m.lines, keys: m.keys })),
      files: v.files.map((f) => ({ name: f.name, secrets: f.secrets })), vendorClasses: v.vendorClasses.map((c) => ({ match: c.match, value: c.value })),
      resync: v.resync,
    })), null, 2) + '\n');
    return;
  }
  out(table(['VENDOR', 'NAME', 'MODELS', 'FILES'], vs.map((v) => [v.id, v.name, v.models.map((m) => m.id).join(' '), v.files.map((f) => f.name + (f.secrets ? '*' : '')).join(' ')])));
  out('(* = holds secrets: served only with proof)\n');
}

function templateShow(ctx: Ctx, pos: string[]) {
  if (pos.length !== 1) usage('template show takes one template name');
  const t = ctx.config.templates.get(pos[0]);
  if (!t) throw new ApsError('APS_ERR_NOT_FOUND', `no template "${pos[0]}"`, { expected: `one of ${[...ctx.config.templates.keys()].join(', ') || '(none: add templates.d/<name>.ini)'}` });
  const rows = [...(t.sources ?? new Map()).entries()]
    .map(([k, src]) => {
      const m = /^\[([^\]]*)\](.*)$/.exec(k)!;
      return { section: m[1], key: m[2], file: src.file, line: src.line };
    })
    .sort((a, b) => TEMPLATE_SECTIONS.indexOf(a.section as never) - TEMPLATE_SECTIONS.indexOf(b.section as never) || a.key.localeCompare(b.key, undefined, { numeric: true }));
  const value = (section: string, key: string) => {
    const v = effectiveValue(ctx, t.name, section, key);
    return /password|secret/i.test(key) && v ? '(set)' : v;
  };
  if (ctx.json) {
    out(JSON.stringify({ name: t.name, extends: t.extends || null, vendor: t.vendor, model: t.model, tenant: t.tenant, keys: rows.map((r) => ({ ...r, value: value(r.section, r.key) })) }, null, 2) + '\n');
    return;
  }
  const chain = [t.name];
  for (let p = t.extends; p; p = ctx.config.templates.get(p)?.extends ?? '') chain.push(p);
  out(`template ${t.name}: ${t.vendor} ${t.model}, tenant ${t.tenant === '*' ? '* (global)' : t.tenant}${chain.length > 1 ? `, extends ${chain.slice(1).join(' → ')}` : ''}\n`);
  out(table(['SECTION', 'KEY', 'VALUE', 'FROM'], rows.map((r) => [`[${r.section}]`, r.key, value(r.section, r.key), `${path.relative(ctx.config.dir ?? process.cwd(), r.file)}:${r.line}`])));
}

/** The value of a key as the effective (inherited) template has it, read back from the file it comes from. */
function effectiveValue(ctx: Ctx, name: string, section: string, key: string): string {
  const t = ctx.config.templates.get(name);
  const src = t?.sources?.get(`[${section}]${key}`);
  if (!src) return '';
  try {
    return readIni(src.file).sections.get(section)?.get(key) ?? '';
  } catch {
    return '';
  }
}

function templateList(ctx: Ctx) {
  const ts = [...ctx.config.templates.values()];
  if (ctx.json) {
    out(JSON.stringify(ts.map((t) => ({ name: t.name, vendor: t.vendor, model: t.model, tenant: t.tenant, firmware: t.firmware, file: t.file })), null, 2) + '\n');
    return;
  }
  if (!ts.length) {
    out(`no templates (add ${ctx.config.dir ?? '/etc/aps'}/templates.d/<name>.ini)\n`);
    return;
  }
  out(table(['TEMPLATE', 'VENDOR', 'MODEL', 'TENANT', 'FIRMWARE', 'FILE'], ts.map((t) => [t.name, t.vendor, t.model, t.tenant === '*' ? '* (global)' : t.tenant, t.firmware || '-', t.file])));
}

function configCheck(ctx: Ctx) {
  const problems: string[] = [...ctx.config.warnings];
  for (const t of ctx.config.templates.values()) {
    const v = ctx.registry.get(t.vendor)!;
    const m = ctx.registry.model(v.id, t.model)!;
    const tenant = ctx.config.tenants.get(t.tenant === '*' ? 'default' : t.tenant)!;
    const w = { warnings: [] as string[] };
    buildView({ config: ctx.config, vendor: v, model: m, tenant, template: t }, w);
    for (const x of w.warnings) problems.push(`${t.file}: ${x}`);
  }
  const store = ctx.store ?? tryStore(ctx);
  // [template] firmware against the catalogue: an image not for the template's vendor and model is an error
  const fwCheck = checkTemplateFirmware(ctx.config.templates.values(), store ? catalogueOf(store) : [], ctx.config.settings.server.firmwareDir);
  problems.push(...fwCheck.warnings);
  if (store) {
    for (const d of store.devices()) {
      if (!ctx.config.tenants.has(d.tenant)) problems.push(`device ${macColon(d.mac)}: tenant ${d.tenant} no longer exists`);
      if (d.template && !ctx.config.templates.has(d.template)) problems.push(`device ${macColon(d.mac)}: template ${d.template} no longer exists (built-in defaults are served)`);
      for (const l of store.lines(d.mac)) {
        if (!ctx.config.extensions.has(`${d.tenant}/${l.extension}`)) problems.push(`device ${macColon(d.mac)} line ${l.idx}: extension ${l.extension} no longer exists in tenant ${d.tenant}`);
      }
    }
  }
  const summary = {
    config: ctx.config.dir ?? '(built-in defaults)', valid: true,
    tenants: ctx.config.tenants.size, templates: ctx.config.templates.size, extensions: ctx.config.extensions.size,
    vendors: ctx.registry.list().length, warnings: problems, errors: fwCheck.errors,
  };
  summary.valid = fwCheck.errors.length === 0;
  if (ctx.json) out(JSON.stringify(summary, null, 2) + '\n');
  else if (!summary.valid) {
    for (const e of fwCheck.errors) out(`error: ${e}\n`);
    for (const p of problems) out(`warning: ${p}\n`);
  } else {
    out(`${summary.config}: valid (${summary.tenants} tenants, ${summary.templates} templates, ${summary.extensions} extensions, ${summary.vendors} vendors)\n`);
    for (const p of problems) out(`warning: ${p}\n`);
  }
  if (!summary.valid) throw new ApsError('APS_ERR_CONFIG', `${fwCheck.errors.length} template firmware setting${fwCheck.errors.length > 1 ? 's name' : ' names'} an image that is not for the template's model`, { expected: 'a version with an image for the model (apsctl firmware list)' });
}

/** The firmware catalogue, empty when the database predates it (opened read-only, not migrated). */
function catalogueOf(store: Store) {
  try {
    return new FirmwareStore(store).images();
  } catch {
    return [];
  }
}

function tryStore(ctx: Ctx): Store | undefined {
  try {
    return Store.open(ctx.config.settings.server.stateDir, { readonly: true });
  } catch {
    return undefined;
  }
}

/** Command modules of src/cli/commands/ (built or source, whichever this file is). */
async function loadCommandModules(): Promise<CliCommand[]> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dir = path.join(here, 'commands');
  const ext = path.extname(fileURLToPath(import.meta.url));
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith(ext) && !n.endsWith('.d.ts') && !n.endsWith('.test' + ext)).sort();
  } catch {
    return [];
  }
  const all: CliCommand[] = [];
  for (const n of names) {
    const m = (await import(pathToFileURL(path.join(dir, n)).href)) as { commands?: CliCommand[] };
    all.push(...(m.commands ?? []));
  }
  return all;
}

export async function main(argv: string[]): Promise<number> {
  const extra = await loadCommandModules();
  const extraUsage = extra.map((c) => `  ${c.usage.split('\n').join('\n  ')}`).join('\n');
  const help = extraUsage ? USAGE.replace("\nMAC forms:", `\ndhcp, discovery, pbx\n${extraUsage}\n\nMAC forms:`) : USAGE;
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' }, vendors: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
        tenant: { type: 'string' }, template: { type: 'string' }, model: { type: 'string' }, label: { type: 'string' }, to: { type: 'string' },
        state: { type: 'string' }, vendor: { type: 'string' }, extension: { type: 'string' }, 'cid-source': { type: 'string' },
        'local-port': { type: 'string' }, srtp: { type: 'boolean' }, rotate: { type: 'boolean' }, 'user-agent': { type: 'string' },
        ...Object.assign({}, ...extra.map((c) => c.options ?? {})),
      },
    });
  } catch (e) {
    process.stderr.write(`apsctl: ${(e as Error).message}\n${help}\n`);
    return 2;
  }
  const o = parsed.values as Record<string, string | boolean | undefined>;
  const [cmd, sub, ...rest] = parsed.positionals;
  if (o.help || !cmd) {
    (o.help ? process.stdout : process.stderr).write(help + '\n');
    return o.help ? 0 : 2;
  }
  let ctx: Ctx | undefined;
  try {
    const { dir } = configDirFrom(o.config as string | undefined);
    const config = loadConfig(dir);
    const registry = VendorRegistry.load(path.resolve((o.vendors as string | undefined) ?? DEFAULT_VENDORS_DIR));
    checkTemplates(config, registry);
    ctx = { config, registry, json: o.json === true };
    const key = `${cmd} ${sub ?? ''}`.trim();
    switch (key) {
      case 'device add': deviceAdd(ctx, rest, o); break;
      case 'device list': deviceList(ctx, o); break;
      case 'device show': deviceShow(ctx, rest); break;
      case 'device remove': deviceRemove(ctx, rest); break;
      case 'device set': deviceSet(ctx, rest, o); break;
      case 'device disable': deviceEnable(ctx, rest, true); break;
      case 'device enable': deviceEnable(ctx, rest, false); break;
      case 'device tie': deviceTie(ctx, rest, o); break;
      case 'device untie': deviceUntie(ctx, rest); break;
      case 'device credentials': deviceCredentials(ctx, rest, o); break;
      case 'ban list': banList(ctx); break;
      case 'ban lift': banLift(ctx, rest); break;
      case 'line set': lineSet(ctx, rest, o); break;
      case 'line remove': lineRemove(ctx, rest); break;
      case 'vendor list': vendorList(ctx); break;
      case 'template list': templateList(ctx); break;
      case 'template show': templateShow(ctx, rest); break;
      case 'config check': configCheck(ctx); break;
      default:
        if (cmd === 'render') {
          render(ctx, [sub, ...rest].filter((x) => x !== undefined));
          break;
        }
        if (cmd === 'explain') {
          explainCmd(ctx, [sub, ...rest].filter((x) => x !== undefined), o);
          break;
        }
        {
          const two = extra.find((c) => c.name === key);
          const one = extra.find((c) => c.name === cmd);
          if (two) return (await two.run(ctx, rest, o)) ?? 0;
          if (one) return (await one.run(ctx, [sub, ...rest].filter((x) => x !== undefined), o)) ?? 0;
        }
        process.stderr.write(`apsctl: unknown command "${key}"\n${help}\n`);
        return 2;
    }
    return 0;
  } catch (e) {
    // a database that cannot be written (disk full, read-only, busy): said plainly, never a stack
    const err = isApsError(e) ? e : (ctx?.store?.failure(e) ?? storeFailure(e, path.join(ctx?.config.settings.server.stateDir ?? '.', 'aps.db')));
    if (err) {
      process.stderr.write(`apsctl: ${err.describe()}\n`);
      return err.code === 'APS_ERR_USAGE' ? 2 : 1;
    }
    process.stderr.write(`apsctl: internal error: ${(e as Error).message ?? e}\n${process.env.APS_DEBUG ? `${(e as Error).stack}\n` : '(APS_DEBUG=1 shows where)\n'}`);
    return 1;
  } finally {
    ctx?.store?.close();
  }
}


// exit once stdout is written out (a pipe takes large output asynchronously: process.exit would cut it)
main(process.argv.slice(2)).then((code) => process.stdout.write('', () => process.exit(code)));
