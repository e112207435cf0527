/**
 * Tells a phone to fetch its files again, by [resync] method:
 * - notify: a SIP NOTIFY with the vendor's event (vendor.json resync.event, or rebootEvent for a
 *   reboot) straight to the phone over UDP, with RFC 3261 retransmission. The phone's address:
 *   the contact the PBX saw (when the caller knows it), else the IP of its DHCP lease, else the
 *   address it last fetched from; port = the contact's, else [resync] port (default 5060).
 * - ami: PJSIPNotify through the Asterisk Manager Interface, for phones only the PBX can reach
 *   (NAT, or phones that accept NOTIFY from their registrar only): Endpoint = the account the
 *   phone is registered as now, `Variable: Event=<event>`.
 * - none: nothing is sent; the phone's periodic check picks the change up.
 * Never throws; every outcome is logged (mac, method, target, event, result).
 */
import net from 'node:net';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { macColon, type Mac } from '../mac.js';
import { amiAction, amiList } from '../wire/ami.js';
import { sendNotify, type SipTimers } from '../wire/sip-notify.js';
import type { Store } from '../store/index.js';
import { pinStore } from '../store/pin.js';
import type { VendorRegistry } from '../vendors/registry.js';
import { ApsError } from '../errors.js';

export interface ResyncDeps {
  store: Store;
  registry: VendorRegistry;
  config: () => Config;
  log: Logger;
  /** the phones' SIP port when the target has none; default [resync] port, else 5060 */
  port?: number;
  /** SIP timers (tests make them fast) */
  timers?: SipTimers;
  /** deadline of a whole AMI exchange; default 5 s */
  amiTimeoutMs?: number;
}

export interface ResyncOptions {
  /** the vendor's reboot event instead of its plain one */
  reboot?: boolean;
  /** where the phone is, as the PBX saw it (CHANNEL(pjsip,remote_addr)) */
  contact?: { host: string; port: number };
  /** the account the phone is registered as now (NOTIFY user, AMI endpoint); default: line 1's extension, or the unprov account while unprovisioned */
  account?: string;
}

export interface ResyncOutcome {
  mac: Mac;
  method: 'notify' | 'ami' | 'none';
  ok: boolean;
  event?: string;
  /** host:port for notify, the endpoint for ami */
  target?: string;
  status?: number;
  attempts?: number;
  reason?: string;
}

/** `10.0.0.5:5060`, `[fd00::5]:5062` (CHANNEL(pjsip,remote_addr)) → host and port; null otherwise. */
export function parseSipAddress(s: string | undefined): { host: string; port: number } | null {
  if (!s) return null;
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s.trim()) ?? /^([0-9.]+):(\d{1,5})$/.exec(s.trim());
  if (!m || !net.isIP(m[1])) return null;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: m[1], port } : null;
}

function defaultPort(config: Config, deps: ResyncDeps): number {
  if (deps.port) return deps.port;
  // [resync] port (proposed key; read this way so that it works before and after it exists)
  const p = (config.settings.resync as { port?: number }).port;
  return typeof p === 'number' && p >= 1 && p <= 65535 ? p : 5060;
}

/** The account the phone is registered as: its unprov account while unprovisioned, else line 1's extension. */
export function registeredAccount(deps: Pick<ResyncDeps, 'store' | 'config'>, mac: Mac): string | undefined {
  const dev = deps.store.device(mac);
  if (!dev) return undefined;
  if (dev.state === 'unprovisioned') return pinStore(deps.store).unprovAccount(mac, deps.config().settings.provisioning.unprovPrefix).account;
  const l1 = deps.store.lines(mac).find((l) => l.idx === 1);
  return l1 ? deps.config().extensions.get(`${dev.tenant}/${l1.extension}`)?.number ?? l1.extension : undefined;
}

export async function resync(deps: ResyncDeps, mac: Mac, opts: ResyncOptions = {}): Promise<ResyncOutcome> {
  const config = deps.config();
  const method = config.settings.resync.method;
  const log = deps.log.child({ mac });
  const done = (o: Omit<ResyncOutcome, 'mac' | 'method'>): ResyncOutcome => {
    const out: ResyncOutcome = { mac, method, ...o };
    const fields = { method, target: out.target, event: out.event, status: out.status, attempts: out.attempts, reason: out.reason };
    if (out.ok) log.info('resync sent', fields);
    else if (method === 'none') log.info('resync not sent: [resync] method = none; the phone picks the change up at its next periodic check', fields);
    else log.warn('resync failed', fields);
    return out;
  };
  const dev = deps.store.device(mac);
  if (!dev) return done({ ok: false, reason: `no device ${macColon(mac)}` });
  const vendor = deps.registry.get(dev.vendor);
  if (!vendor) return done({ ok: false, reason: `unknown vendor ${dev.vendor}` });
  const event = opts.reboot ? vendor.resync.rebootEvent ?? vendor.resync.event : vendor.resync.event;
  if (method === 'none') return done({ ok: false, event, reason: 'method none' });
  const account = opts.account ?? registeredAccount(deps, mac);

  if (method === 'ami') {
    const r = config.settings.resync;
    if (!account) return done({ ok: false, event, reason: 'the phone is registered as no account the PBX knows (no line 1, not unprovisioned)' });
    try {
      await amiAction(
        { host: r.amiHost, port: r.amiPort, user: r.amiUser, secret: r.amiSecret, timeoutMs: deps.amiTimeoutMs ?? 5000, log },
        { Action: 'PJSIPNotify', Endpoint: account, Variable: `Event=${event}` },
      );
      return done({ ok: true, event, target: `${r.amiHost}:${r.amiPort} endpoint ${account}` });
    } catch (e) {
      return done({ ok: false, event, target: `${r.amiHost}:${r.amiPort} endpoint ${account}`, reason: e instanceof ApsError ? e.message : String(e) });
    }
  }

  // where the phone is: the contact the caller saw, else its DHCP lease, else the address of its
  // last fetch, else the contact it registered at the PBX (AMI, when [resync] has an AMI login)
  let target = opts.contact ?? null;
  const tried: string[] = [];
  if (!target) {
    const lease = deps.store.lease(mac);
    if (lease?.ip) target = { host: lease.ip, port: defaultPort(config, deps) };
    else tried.push('no DHCP lease');
  }
  if (!target) {
    if (dev.last_ip) target = { host: dev.last_ip, port: defaultPort(config, deps) };
    else tried.push('no fetch seen');
  }
  if (!target) {
    const r = config.settings.resync;
    if (!r.amiUser || !r.amiSecret) tried.push('no SIP contact asked (no AMI login: [resync] ami_user, ami_secret)');
    else if (!account) tried.push('no SIP contact (no account to look up)');
    else {
      const c = await contactThroughAmi(deps, account).catch((e: unknown) => (e instanceof Error ? e.message : String(e)));
      if (typeof c === 'string') tried.push(`no SIP contact of ${account} through AMI (${c})`);
      else target = c;
    }
  }
  if (!target) return done({ ok: false, event, reason: `no address known for the phone: ${tried.join(', ')}` });
  const fromHost = fromHostOf(config);
  const r = await sendNotify({ target, event, fromHost, user: account, log, timers: deps.timers });
  return done({
    ok: r.ok,
    event,
    target: `${net.isIPv6(target.host) ? `[${target.host}]` : target.host}:${target.port}`,
    status: r.status,
    attempts: r.attempts,
    reason: r.ok ? undefined : r.reason,
  });
}

/** The address the phone registered from, as the PBX knows it (PJSIPShowEndpoint → ContactStatusDetail URI). */
async function contactThroughAmi(deps: ResyncDeps, account: string): Promise<{ host: string; port: number } | string> {
  const r = deps.config().settings.resync;
  const { events } = await amiList(
    { host: r.amiHost, port: r.amiPort, user: r.amiUser, secret: r.amiSecret, timeoutMs: deps.amiTimeoutMs ?? 5000, log: deps.log },
    { Action: 'PJSIPShowEndpoint', Endpoint: account },
  );
  for (const e of events) {
    if ((e.Event ?? '').toLowerCase() !== 'contactstatusdetail') continue;
    const m = /^sips?:(?:[^@]*@)?(\[[0-9a-fA-F:.]+\]|[0-9.]+)(?::(\d{1,5}))?/.exec(e.URI ?? '');
    if (m) return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 5060 };
  }
  return 'the endpoint has no contact: is the phone registered?';
}

function fromHostOf(config: Config): string {
  try {
    const h = new URL(config.settings.provisioning.url).hostname;
    return h.startsWith('[') ? h.slice(1, -1) : h;
  } catch {
    return config.settings.provisioning.sipServer;
  }
}
