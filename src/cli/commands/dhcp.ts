/** apsctl dhcp classes, apsctl lease list. */
import net from 'node:net';
import { dhcpClassBlocks, DHCP_CLASS_FORMATS, type DhcpClassFormat } from '../../dhcp/classes.js';
import { ApsError } from '../../errors.js';
import { macColon } from '../../mac.js';
import { provisioningUrl } from '../../provisioning/url.js';
import { openStore, out, usage, type CliCommand } from '../context.js';
import { table } from '../table.js';

export const commands: CliCommand[] = [
  {
    name: 'dhcp classes',
    usage: 'dhcp classes --format isc|kea|dnsmasq [--tenant T] [--ip IPv4]\n                          class blocks giving each vendor its provisioning option, for the\n                          site\'s own DHCP server (--ip: this server\'s address, for option 150)',
    options: { format: { type: 'string' }, ip: { type: 'string' } },
    run(ctx, pos, o) {
      if (pos.length) usage('dhcp classes takes no positional arguments');
      const format = (o.format as string | undefined) ?? '';
      if (!(DHCP_CLASS_FORMATS as readonly string[]).includes(format)) usage(`--format ${format || '(missing)'}: expected one of ${DHCP_CLASS_FORMATS.join(', ')}`);
      const tenantId = o.tenant as string | undefined;
      const tenant = tenantId ? ctx.config.tenants.get(tenantId) : undefined;
      if (tenantId && !tenant) throw new ApsError('APS_ERR_NOT_FOUND', `no tenant "${tenantId}"`, { expected: [...ctx.config.tenants.keys()].join(', ') });
      const rawUrl = tenant?.provisioningUrl ?? ctx.config.settings.provisioning.url;
      const url = provisioningUrl({ settings: ctx.config.settings, tenant: tenant ?? { ipDnsMap: [] } });
      const host = new URL(url).hostname;
      const rawHost = new URL(rawUrl).hostname;
      const ip = (o.ip as string | undefined) ?? (net.isIPv4(rawHost) ? rawHost : net.isIPv4(host) ? host : '');
      if (o.ip !== undefined && !net.isIPv4(ip)) usage(`--ip ${o.ip}: expected an IPv4 address`);
      const needsIp = ctx.registry.list().some((v) => v.dhcp?.answers.some((a) => a.value === 'ip'));
      if (needsIp && !ip) usage(`some vendors are given this server's IP address (option 150): the provisioning URL ${url} names no IPv4 address, so give one with --ip`);
      out(dhcpClassBlocks(ctx.registry.list(), { format: format as DhcpClassFormat, url, host, ip: ip || '0.0.0.0', tenant: tenantId }));
    },
  },
  {
    name: 'lease list',
    usage: 'lease list                DHCP leases known to apsd (captured or its own DHCP server)',
    run(ctx) {
      const store = openStore(ctx);
      const now = Date.now();
      const rows = store.leaseList();
      if (ctx.json) {
        out(JSON.stringify(rows.map((r) => ({ mac: r.mac, ip: r.ip, interface: r.interface, source: r.source, state: r.state, expires: new Date(r.expires_at).toISOString(), active: r.expires_at > now })), null, 2) + '\n');
        return;
      }
      if (!rows.length) {
        out('no leases\n');
        return;
      }
      out(table(['MAC', 'IP', 'SOURCE', 'INTERFACE', 'EXPIRES', 'ACTIVE'], rows.map((r) => [macColon(r.mac as never), r.ip, r.source, r.interface || '-', new Date(r.expires_at).toISOString(), r.expires_at > now ? 'yes' : 'no'])));
    },
  },
];
