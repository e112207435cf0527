/**
 * The RFC 2131 decisions of the built-in DHCP server, as pure functions of the message and the
 * address pool: what a REQUEST, a DECLINE or a RELEASE means for this server. The server
 * (src/servers/dhcp-server.ts) applies them: it records leases, logs and sends the reply.
 */
import net from 'node:net';
import { ipToInt } from '../net/address.js';
import type { DhcpMessage } from '../wire/dhcp.js';
import type { LeasePool } from './pool.js';

const ZERO = '0.0.0.0';

export type RequestDecision =
  /** SELECTING another server: our offer to this client, if any, is withdrawn */
  | { kind: 'other-server' }
  | { kind: 'ignore'; why: string }
  | { kind: 'ack'; ip: string }
  | { kind: 'nak'; ip: string; why: string }
  /** INIT-REBOOT of a client this server has no record of: RFC 2131 §4.3.2 says stay silent */
  | { kind: 'silent'; ip: string; state: string };

/**
 * A DHCPREQUEST, by RFC 2131 §4.3.2: SELECTING (server id) → ACK if the address is free for this
 * client, else NAK; INIT-REBOOT (requested address, no ciaddr) and RENEWING/REBINDING (ciaddr) →
 * NAK for an address on another network or held by another client, ACK for this client's, else
 * silence.
 */
export function decideRequest(m: DhcpMessage, pool: LeasePool, serverIp: string, ifaceOnSubnet: boolean, now: number): RequestDecision {
  const mac = m.mac!;
  if (m.serverId !== undefined && m.serverId !== serverIp) return { kind: 'other-server' };
  const relayed = m.giaddr !== ZERO;
  let ip: string | undefined;
  let state: 'selecting' | 'init-reboot' | 'renewing';
  if (m.serverId !== undefined) {
    state = 'selecting';
    ip = m.requestedIp ?? (m.ciaddr !== ZERO ? m.ciaddr : undefined);
  } else if (m.requestedIp !== undefined && m.ciaddr === ZERO) {
    state = 'init-reboot';
    ip = m.requestedIp;
  } else if (m.ciaddr !== ZERO) {
    state = 'renewing';
    ip = m.ciaddr;
  } else {
    return { kind: 'ignore', why: 'DHCPREQUEST with neither a requested address nor ciaddr: ignored' };
  }
  if (!ip || !net.isIPv4(ip)) return { kind: 'ignore', why: '' };
  const n = ipToInt(ip);
  const e = pool.get(ip);
  const known = pool.addressOf(mac);
  if (state === 'selecting') {
    return pool.freeFor(n, mac, now) ? { kind: 'ack', ip } : { kind: 'nak', ip, why: 'the address is not free for this client' };
  }
  if (!pool.onSubnet(ip) || (!relayed && !ifaceOnSubnet)) return { kind: 'nak', ip, why: 'the address is on another network' };
  if (e && e.mac === mac && e.state !== 'declined' && pool.freeFor(n, mac, now)) return { kind: 'ack', ip };
  if (e && e.mac !== mac && e.state !== 'released' && e.expires_at > now) return { kind: 'nak', ip, why: 'the address belongs to another client' };
  if (known !== undefined && known !== ip) return { kind: 'nak', ip, why: `the client's address is ${known}` };
  if (e && e.mac === mac) return { kind: 'nak', ip, why: 'the address is not free any more' };
  return { kind: 'silent', ip, state };
}

/** A DHCPDECLINE or DHCPRELEASE names an address this client holds from this server, or it is ignored. */
export function decideLetGo(m: DhcpMessage, pool: LeasePool, serverIp: string): { kind: 'ignore'; ip?: string; why: string } | { kind: 'let-go'; ip: string } {
  if (m.serverId !== undefined && m.serverId !== serverIp) return { kind: 'ignore', why: '' };
  if (m.type === 'DECLINE') {
    const ip = m.requestedIp;
    const e = ip ? pool.get(ip) : undefined;
    if (!ip || !e || e.mac !== m.mac) return { kind: 'ignore', ip, why: 'DHCPDECLINE of an address this client does not hold: ignored' };
    return { kind: 'let-go', ip };
  }
  const ip = m.ciaddr;
  const e = ip !== ZERO ? pool.get(ip) : undefined;
  if (!e || e.mac !== m.mac || e.state !== 'bound') return { kind: 'ignore', ip, why: 'DHCPRELEASE of an address this client does not hold: ignored' };
  return { kind: 'let-go', ip };
}
