/** apsctl sighting list, apsctl device approve. */
import { defaultModel, requireTemplateFits } from '../../inventory/rules.js';
import { ApsError } from '../../errors.js';
import { macColon, requireMac } from '../../mac.js';
import { SIGHTING_STATUSES, Sightings, type SightingRow, type SightingStatus } from '../../store/sightings.js';
import { openStore, out, usage, type CliCommand } from '../context.js';
import { table } from '../table.js';

function sightingJson(r: SightingRow) {
  return {
    mac: r.mac, status: r.status, reason: r.reason, vendor: r.vendor, model: r.model, confidence: r.confidence,
    source: r.source, first: new Date(r.first_at).toISOString(), last: new Date(r.last_at).toISOString(), count: r.count,
    msgType: r.msg_type, vendorClass: r.vendor_class, paramList: r.param_list ? r.param_list.split(',').map(Number) : null,
    hostname: r.hostname, clientId: r.client_id, requestedIp: r.requested_ip, offeredIp: r.offered_ip, ackedIp: r.acked_ip,
    relay: r.relay, option82: r.option82, interface: r.interface,
  };
}

export const commands: CliCommand[] = [
  {
    name: 'sighting list',
    usage: 'sighting list [--status pending|ignored|device]\n                          what DHCP capture and the other discovery sources saw, one row per MAC,\n                          with why a phone was not made a device',
    options: { status: { type: 'string' } },
    run(ctx, pos, o) {
      if (pos.length) usage('sighting list takes no positional arguments');
      const status = o.status as string | undefined;
      if (status !== undefined && !(SIGHTING_STATUSES as readonly string[]).includes(status)) usage(`--status ${status}: expected one of ${SIGHTING_STATUSES.join(', ')}`);
      const rows = new Sightings(openStore(ctx)).list({ status: status as SightingStatus | undefined });
      if (ctx.json) {
        out(JSON.stringify(rows.map(sightingJson), null, 2) + '\n');
        return;
      }
      if (!rows.length) {
        out(status ? `no ${status} sightings\n` : 'no sightings\n');
        return;
      }
      out(table(
        ['MAC', 'STATUS', 'VENDOR', 'MODEL', 'VENDOR CLASS', 'IP', 'RELAY', 'INTERFACE', 'SEEN', 'LAST', 'REASON'],
        rows.map((r) => [
          macColon(r.mac), r.status, r.vendor ?? '-', r.model ?? '-', r.vendor_class ?? '-', r.acked_ip ?? r.offered_ip ?? r.requested_ip ?? '-',
          r.relay ?? '-', r.interface ?? '-', r.count, new Date(r.last_at).toISOString(), r.reason || '-',
        ]),
      ));
    },
  },
  {
    name: 'device approve',
    usage: 'device approve <mac> --tenant T [--template NAME] [--model M]\n                          make a pending or ignored sighting an unprovisioned device',
    run(ctx, pos, o) {
      if (pos.length !== 1) usage('device approve takes one MAC');
      const mac = requireMac(pos[0]!);
      const tenant = o.tenant as string | undefined;
      if (!tenant) usage('device approve needs --tenant T');
      if (!ctx.config.tenants.has(tenant)) {
        throw new ApsError('APS_ERR_NOT_FOUND', `no tenant "${tenant}"`, { expected: `one of ${[...ctx.config.tenants.keys()].join(', ')} (tenants.d/<id>.ini)` });
      }
      const tplName = o.template as string | undefined;
      const tpl = tplName !== undefined ? ctx.config.templates.get(tplName) : undefined;
      if (tplName !== undefined && !tpl) throw new ApsError('APS_ERR_NOT_FOUND', `no template "${tplName}"`, { expected: `one of ${[...ctx.config.templates.keys()].join(', ') || '(none: add templates.d/<name>.ini)'}` });
      if (tpl) requireTemplateFits(tpl, tenant, '--template');
      const store = openStore(ctx);
      const sightings = new Sightings(store);
      const device = store.transaction(() => {
        const s = sightings.get(mac);
        if (!s) throw new ApsError('APS_ERR_NOT_FOUND', `no sighting of ${macColon(mac)}`, { expected: 'a MAC from apsctl sighting list (or add it with apsctl device add)' });
        const existing = store.device(mac);
        if (existing) throw new ApsError('APS_ERR_EXISTS', `${macColon(mac)} is already a device (${existing.state}, tenant ${existing.tenant})`, { expected: 'a pending or ignored sighting' });
        const vendorId = s.vendor ?? tpl?.vendor;
        if (!vendorId) usage(`the sighting of ${macColon(mac)} names no vendor: say which with --template NAME`);
        if (tpl && tpl.vendor !== vendorId) {
          throw new ApsError('APS_ERR_USAGE', `template "${tplName}" is for ${tpl.vendor}, the sighting of ${macColon(mac)} is ${vendorId}`, { expected: `a ${vendorId} template` });
        }
        const vendor = ctx.registry.get(vendorId);
        if (!vendor) throw new ApsError('APS_ERR_NOT_FOUND', `no vendor "${vendorId}"`, { expected: ctx.registry.list().map((v) => v.id).join(', ') });
        const modelName = (o.model as string | undefined) ?? s.model ?? defaultModel(vendor, tpl).model.id;
        const model = ctx.registry.model(vendor.id, modelName);
        if (!model) throw new ApsError('APS_ERR_NOT_FOUND', `${vendor.name} has no model "${modelName}"`, { expected: `one of ${vendor.models.map((m) => m.id).join(', ')}` });
        const d = store.addDevice({ mac, tenant, vendor: vendor.id, model: model.id, template: tpl?.name ?? null, state: 'unprovisioned', source: s.source, label: '' });
        sightings.setStatus(mac, 'device', `approved by apsctl (was ${s.status}${s.reason ? `: ${s.reason}` : ''})`);
        store.event('device.approved', mac, `tenant=${tenant} vendor=${vendor.id} model=${model.id} was=${s.status}`);
        return d;
      });
      if (ctx.json) out(JSON.stringify({ mac: device.mac, tenant: device.tenant, vendor: device.vendor, model: device.model, template: device.template, state: device.state, source: device.source }, null, 2) + '\n');
      else out(`${macColon(mac)}: unprovisioned ${device.vendor} ${device.model} in tenant ${device.tenant}${device.template ? ` with template ${device.template}` : ''}\n`);
    },
  },
];
