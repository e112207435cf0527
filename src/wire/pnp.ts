/**
 * SIP plug-and-play (the ua-profile event package) on the wire: what a SUBSCRIBE to
 * 224.0.1.75 says (event, vendor, model, version, MAC, User-Agent), and where its answers go.
 * Pure functions; the service is src/servers/pnp.ts.
 */
import net from 'node:net';
import { parseMac, type Mac } from '../mac.js';
import { getHeader, headerParam, type SipRequest } from './sip.js';

export const PNP_GROUP = '224.0.1.75';
export const PNP_EVENT = 'ua-profile';



export interface PnpSubscribe {
  /** the event package, lower case: ua-profile for a PnP request */
  event: string;
  /** the Event header as received */
  eventHeader: string;
  profileType: string | null;
  vendor: string | null;
  model: string | null;
  version: string | null;
  /** from the From or To user (MAC%3a…, or 12 hex digits), else null */
  mac: Mac | null;
  userAgent: string | null;
}

function unquote(v: string | undefined): string | null {
  if (v === undefined) return null;
  const s = v.trim();
  const u = s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/\\(.)/g, '$1') : s;
  return u === '' ? null : u;
}

/** The user part of a name-addr or addr-spec (`"x" <sip:user@host>;tag=…`), %-decoded; null if none. */
export function sipUser(value: string | undefined): string | null {
  if (!value) return null;
  const lt = value.indexOf('<');
  const uri = lt >= 0 ? value.slice(lt + 1, value.indexOf('>', lt) < 0 ? undefined : value.indexOf('>', lt)) : value.split(';')[0];
  const m = /^\s*sips?:([^@;>]+)@/i.exec(uri);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return m[1];
  }
}

/** A MAC in a SIP user: `MAC:7C2F80E0D605`, `mac%3a7c2f80e0d605`, `001565aabbcc`, `00:15:65:aa:bb:cc`. */
export function macFromSipUser(user: string | null): Mac | null {
  if (!user) return null;
  const rest = user.replace(/^mac[:=_-]?/i, '');
  return parseMac(rest);
}

/** Reads a SUBSCRIBE as a PnP request. */
export function readPnpSubscribe(req: SipRequest): PnpSubscribe {
  const eventHeader = getHeader(req, 'Event') ?? '';
  const semi = eventHeader.indexOf(';');
  const event = (semi < 0 ? eventHeader : eventHeader.slice(0, semi)).trim().toLowerCase();
  const p = (name: string) => unquote(headerParam(eventHeader, name));
  return {
    event,
    eventHeader,
    profileType: p('profile-type'),
    vendor: p('vendor'),
    model: p('model'),
    version: p('version'),
    mac: macFromSipUser(sipUser(getHeader(req, 'From'))) ?? macFromSipUser(sipUser(getHeader(req, 'To'))),
    userAgent: getHeader(req, 'User-Agent') ?? null,
  };
}

/** host and port of a SIP URI in a Contact value, when the host is an IP literal. */
export function contactTarget(contact: string | undefined): { host: string; port: number; uri: string } | null {
  if (!contact) return null;
  const lt = contact.indexOf('<');
  const uri = (lt >= 0 ? contact.slice(lt + 1, contact.indexOf('>', lt)) : contact.split(';')[0]).trim();
  const m = /^sips?:(?:[^@]*@)?(\[[0-9a-fA-F:.]+\]|[0-9.]+)(?::(\d{1,5}))?(?:[;?].*)?$/i.exec(uri);
  if (!m) return null;
  const host = m[1].replace(/^\[|\]$/g, '');
  if (!net.isIP(host)) return null;
  const port = m[2] ? Number(m[2]) : 5060;
  if (port < 1 || port > 65535) return null;
  return { host, port, uri };
}

/** Where the response to a request from `src` goes (RFC 3261 18.2.2, RFC 3581): the source address; rport → source port, else the Via port or 5060. */
export function responsePort(via: string | undefined, srcPort: number): number {
  if (!via) return srcPort;
  if (headerParam(via, 'rport') !== undefined) return srcPort;
  const sentBy = via.split(';')[0].trim().split(/\s+/)[1] ?? '';
  const m = /^(?:\[[^\]]*\]|[^:\[\]]+)(?::(\d{1,5}))?$/.exec(sentBy);
  if (!m) return srcPort;
  const port = m[1] ? Number(m[1]) : 5060;
  return port >= 1 && port <= 65535 ? port : srcPort;
}

// ------------------------------------------------------------------------------ the service

