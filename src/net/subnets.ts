/** Lists of subnets (`10.0.0.0/8, 192.168.1.10, fd00::/8`) and the question "is this address in it". */
import net from 'node:net';
import { normalizeIp } from './address.js';

export interface SubnetList {
  readonly text: string;
  readonly empty: boolean;
  has(ip: string): boolean;
}

export function parseSubnets(text: string): { ok: true; list: SubnetList } | { ok: false; bad: string } {
  const bl = new net.BlockList();
  const parts = text.split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of parts) {
    const [addr, bits] = p.split('/');
    const fam = net.isIPv4(addr) ? 'ipv4' : net.isIPv6(addr) ? 'ipv6' : null;
    if (!fam) return { ok: false, bad: p };
    const max = fam === 'ipv4' ? 32 : 128;
    const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : -1;
    if (prefix < 0 || prefix > max) return { ok: false, bad: p };
    bl.addSubnet(addr, prefix, fam);
  }
  return {
    ok: true,
    list: {
      text: parts.join(', '),
      empty: parts.length === 0,
      has(ip: string) {
        const v4 = normalizeIp(ip);
        if (net.isIPv4(v4)) return bl.check(v4, 'ipv4');
        if (net.isIPv6(v4)) return bl.check(v4, 'ipv6');
        return false;
      },
    },
  };
}
