/** The real peers the network tests run, each helper written once: tool lookup, hook-script env dumps, dnsmasq on a link. */
import fs from 'node:fs';
import { waitUntil, which, type Link, type NsProcess } from '../../scripts/lib/netns.js';

/** The path of `cmd`, or an Error that names the Debian package to install. */
export function needTool(cmd: string, pkg: string): string {
  const p = which(cmd);
  if (!p) throw new Error(`${cmd} is not installed: apt-get install -y --no-install-recommends ${pkg}`);
  return p;
}

/** key=value lines (a DHCP client hook script's `env` dump). */
export function envFile(p: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(p, 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** dnsmasq as the site's DHCP server on the host side of `l`: addresses <net>.100-199, no DNS, logging to its output; `extra` adds options. */
export function startDnsmasq(l: Link, net: string, extra: string[] = []): NsProcess {
  needTool('dnsmasq', 'dnsmasq-base');
  return l.spawn('host', 'dnsmasq', [
    '--no-daemon', '--conf-file=/dev/null', '--port=0', `--interface=${l.hostIf}`, '--bind-interfaces',
    `--dhcp-range=${net}.100,${net}.199,255.255.255.0,1h`,
    ...extra,
    `--dhcp-leasefile=${l.file('dnsmasq.leases')}`, `--pid-file=${l.file('dnsmasq.pid')}`,
    '--log-dhcp', '--log-facility=-',
    '--no-ping', // else dnsmasq pings each new address first and the OFFER comes 3 s late
  ]);
}

export interface DhclientOnce {
  /** the peer side's MAC for this run */
  mac: string;
  /** lines of dhclient.conf: option definitions, `send …;`, `request …;` */
  conf: string[];
  /** flush the peer's addresses first (a fresh client) */
  flush?: boolean;
  /** more to say when no lease came (the server's log) */
  context?: () => string;
}

let dhclientRuns = 0;

/** Runs ISC dhclient once on the peer side of `link` with a fresh lease file; returns the environment it gave its script on BOUND. */
export async function dhclientOnce(link: Link, o: DhclientOnce): Promise<Map<string, string>> {
  needTool('dhclient', 'isc-dhcp-client');
  const n = ++dhclientRuns;
  await link.setMac('peer', o.mac);
  if (o.flush) await link.exec('peer', 'ip', ['addr', 'flush', 'dev', link.ifname('peer')], { check: true });
  const out = link.file(`env-${n}`);
  const script = link.file(`script-${n}.sh`, `#!/bin/sh\nif [ "$reason" = BOUND ]; then env > "${out}.tmp" && mv "${out}.tmp" "${out}"; fi\nexit 0\n`, 0o755);
  const conf = link.file(`dhclient-${n}.conf`, ['timeout 20;', ...o.conf, ''].join('\n'));
  const proc = link.spawn('peer', 'dhclient', ['-d', '-1', '-v', '-cf', conf, '-sf', script, '-pf', link.file(`dhclient-${n}.pid`), '-lf', link.file(`dhclient-${n}.leases`), link.ifname('peer')]);
  try {
    await waitUntil(() => fs.existsSync(out) || !proc.running, 30_000, `dhclient (${o.mac}) to be bound`, 100).catch(() => undefined);
    if (!fs.existsSync(out)) throw new Error(`dhclient got no lease:\n${proc.output()}${o.context ? `\n${o.context()}` : ''}`);
  } finally {
    await proc.stop();
  }
  return new Map(Object.entries(envFile(out)));
}

/** dhclient prints binary options as colon-separated hex without leading zeros. */
export function dhclientHex(s: string): Buffer {
  return Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
}
