/**
 * One decoded DHCP message → one sighting of the client's MAC (chaddr). Pure.
 *
 * What a client sends is evidence about the client (vendor class, parameter list, host name,
 * client id, requested address); what a server sends carries addresses only (the offered or
 * acknowledged address, the lease time). giaddr and option 82 come from either: a relay adds
 * them to the request and the server echoes them in its answer.
 */
import { BOOTREQUEST, type DhcpMessage } from '../wire/dhcp.js';
import type { Sighting } from './inventory.js';

const ZERO = '0.0.0.0';
const addr = (ip: string | undefined): string | undefined => (ip && ip !== ZERO ? ip : undefined);

/** null when chaddr is not an Ethernet MAC (htype 1, hlen 6). */
export function sightingFromDhcp(msg: DhcpMessage, meta: { interface: string; at: number }): Sighting | null {
  if (!msg.mac) return null;
  const request = msg.op === BOOTREQUEST;
  const s: Sighting = {
    mac: msg.mac,
    source: 'dhcp',
    at: meta.at,
    msgType: msg.type ?? (request ? 'BOOTREQUEST' : 'BOOTREPLY'),
    fromServer: !request,
    interface: meta.interface,
  };
  const relay = addr(msg.giaddr);
  if (relay) s.relay = relay;
  const o82 = msg.options.get(82);
  if (o82) s.option82 = o82.toString('hex');
  if (request) {
    if (msg.vendorClass !== undefined) s.vendorClass = msg.vendorClass;
    if (msg.paramList) s.paramList = msg.paramList;
    if (msg.hostname !== undefined) s.hostname = msg.hostname;
    if (msg.clientId !== undefined) s.clientId = msg.clientId;
    const req = addr(msg.requestedIp);
    if (req) s.requestedIp = req;
    const ci = addr(msg.ciaddr);
    if (ci) s.clientIp = ci;
  } else if (msg.type === 'OFFER') {
    const y = addr(msg.yiaddr);
    if (y) s.offeredIp = y;
  } else if (msg.type === 'ACK') {
    // the ACK of an INFORM has yiaddr 0 and names the client's own address in ciaddr
    const y = addr(msg.yiaddr) ?? addr(msg.ciaddr);
    if (y) s.ackedIp = y;
    if (msg.leaseTime !== undefined) s.leaseSeconds = msg.leaseTime;
  }
  return s;
}
