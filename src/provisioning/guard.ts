/**
 * The guard: the one module every server consults. It holds the two questions of security:
 *
 *  - proof: may this requester have the secrets of this MAC? A client certificate naming the
 *    MAC (HTTPS with client_ca), the site credentials or the device's own credentials (HTTP
 *    digest; Basic only over HTTPS), or the DHCP lease of that MAC held by the requesting IP
 *    inside trusted_subnets. For TFTP, tftp_secrets decides between never, lease and always.
 *  - bans: the distinct MACs one source asks for without proof (known and unknown ones alike,
 *    so that the time of a ban tells a scanner nothing), failed authentication and User-Agents
 *    that contradict the MAC count against the source IP; past ban_after within ban_window the IP is banned
 *    for ban_time (HTTP 403 without body, TFTP silence) on every protocol. A global budget of
 *    unknown-MAC lookups per minute makes a scan spread over many addresses cost one miss
 *    per address once it is spent. Bans are kept in the state database and survive restarts.
 *    trusted_subnets and allow are never banned, but still need proof for secrets.
 */
import type { Settings } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import type { AuthResult, DigestAuth } from './digest.js';

export type Proof =
  | { ok: true; by: 'certificate' | 'credentials' | 'device-credentials' | 'lease' | 'policy'; user?: string }
  | { ok: false; reason: string; challenge: boolean; stale?: boolean; lease?: string; credentials?: string };

export type Offence = 'auth-failed' | 'ua-mismatch';

/** How long a vouched-for source's phone has to prove the MAC it asked for before it counts. */
export const PROOF_GRACE_MS = 2000;

export interface HttpProofRequest {
  proto: 'http' | 'https';
  ip: string;
  method: string;
  url: string;
  authorization?: string;
  /** the MAC named by a client certificate that chains to client_ca, if any */
  certMac?: Mac | null;
}


export interface GuardDeps {
  store: Store;
  settings: () => Settings;
  auth: DigestAuth;
  log: Logger;
  registry: () => VendorRegistry;
}

export class Guard {
  private readonly bans = new Map<string, { until: number; reason: string }>();
  private readonly hits = new Map<string, number[]>();
  private budget = { windowStart: 0, used: 0, warned: false };
  /** per source: the MACs it asked for without proof in the window, and when (insertion order) */
  private readonly asked = new Map<string, Map<string, number>>();
  /** per source: when it last proved a MAC (phones behind one NAT share it) */
  private readonly vouched = new Map<string, number>();
  private sweepAt = 0;

  constructor(private readonly deps: GuardDeps) {
    this.reloadBans();
  }

  /** Re-reads bans from the database (at start, and when apsctl lifted or listed one). */
  reloadBans(now = Date.now()): void {
    this.bans.clear();
    for (const b of this.deps.store.activeBans(now)) this.bans.set(b.ip, { until: b.until, reason: b.reason });
  }

  exempt(ip: string): boolean {
    const s = this.deps.settings().security;
    return s.trustedSubnets.has(ip) || s.allow.has(ip);
  }

  banned(ip: string, now = Date.now()): { until: number; reason: string } | null {
    const b = this.bans.get(ip);
    if (!b) return null;
    if (b.until <= now) {
      this.bans.delete(ip);
      return null;
    }
    if (this.exempt(ip)) return null;
    return b;
  }

  /** Counts an offence against an IP; bans it past the threshold. */
  note(ip: string, offence: Offence, fields: Record<string, string | number | undefined> = {}, now = Date.now()): void {
    const s = this.deps.settings().security;
    this.deps.log.security(offence, { ...fields, ip });
    if (this.exempt(ip) || this.banned(ip, now)) return;
    this.sweep(now);
    let list = this.hits.get(ip);
    if (!list) {
      list = [];
      this.hits.set(ip, list);
    }
    list.push(now);
    while (list.length && list[0] <= now - s.banWindowMs) list.shift();
    const threshold = s.banAfter;
    if (list.length >= threshold) this.ban(ip, offence, list.length, now);
  }

  /**
   * A request for one device's file (its MAC in the name) that carried no proof: the MAC joins
   * the source's set for the window, whether it is a device or not. A MAC asked for again costs
   * nothing more (a phone asking for its files, the first step of digest). Past ban_after
   * distinct MACs the source is banned. A source that proved a MAC within ban_time (phones behind
   * one NAT) counts only MACs still unproved PROOF_GRACE_MS after they were asked for, so its own
   * phones' first requests never ban it.
   */
  unproved(ip: string, mac: Mac, fields: { proto: string; file: string; unknown: boolean }, now = Date.now()): void {
    if (fields.unknown) this.deps.log.security('unknown-mac', { proto: fields.proto, mac, file: fields.file, ip });
    if (this.exempt(ip) || this.banned(ip, now)) return;
    const s = this.deps.settings().security;
    this.sweep(now);
    let m = this.asked.get(ip);
    if (!m) {
      m = new Map();
      this.asked.set(ip, m);
    }
    for (const [k, t] of m) {
      if (t > now - s.banWindowMs) break;
      m.delete(k);
    }
    if (m.has(mac)) return;
    m.set(mac, now);
    let threshold = s.banAfter;
    if (s.unknownBudget > 0) {
      if (now - this.budget.windowStart >= 60_000) this.budget = { windowStart: now, used: 0, warned: false };
      this.budget.used++;
      if (this.budget.used > s.unknownBudget) {
        // the minute's budget is spent: every further MAC without proof bans its source at once
        threshold = 1;
        if (!this.budget.warned) {
          this.budget.warned = true;
          this.deps.log.security('budget-exhausted', { budget: s.unknownBudget, window: '60s' });
        }
      }
    }
    let count = m.size;
    const v = this.vouched.get(ip);
    if (v !== undefined && now - v < s.banTimeMs) {
      count = 0;
      for (const t of m.values()) if (now - t >= PROOF_GRACE_MS) count++;
    }
    if (count >= threshold) {
      this.asked.delete(ip);
      this.ban(ip, 'unproved-macs', count, now);
    }
  }

  /** The source proved `mac`: it leaves the source's unproved set, and the source is vouched for. */
  proved(ip: string, mac: Mac, now = Date.now()): void {
    this.asked.get(ip)?.delete(mac);
    this.vouched.set(ip, now);
  }

  ban(ip: string, reason: string, count: number, now = Date.now()): void {
    const s = this.deps.settings().security;
    if (s.banTimeMs <= 0) return;
    const until = now + s.banTimeMs;
    this.bans.set(ip, { until, reason });
    this.hits.delete(ip);
    try {
      this.deps.store.putBan({ ip, until, reason, count });
    } catch (e) {
      // the ban holds in memory; the database gets it when it can be written again
      this.deps.store.writeFailed('ban', e, this.deps.log);
    }
    this.deps.log.security('ban', { ip, reason, count, until: new Date(until).toISOString() });
  }

  private sweep(now: number) {
    if (now < this.sweepAt) return;
    this.sweepAt = now + 30_000;
    const win = this.deps.settings().security.banWindowMs;
    for (const [ip, list] of this.hits) if (!list.length || list[list.length - 1] <= now - win) this.hits.delete(ip);
    for (const [ip, b] of this.bans) if (b.until <= now) this.bans.delete(ip);
    for (const [ip, m] of this.asked) {
      let last = 0;
      for (const t of m.values()) last = t;
      if (last <= now - win) this.asked.delete(ip);
    }
    const banTime = this.deps.settings().security.banTimeMs;
    for (const [ip, t] of this.vouched) if (t <= now - banTime) this.vouched.delete(ip);
  }

  /** Whether `ip` holds the current DHCP lease of `mac` inside trusted_subnets, and in words why or why not. */
  leaseProof(mac: Mac, ip: string, now = Date.now()): { ok: true } | { ok: false; says: string } {
    const l = this.deps.store.lease(mac);
    const trusted = this.deps.settings().security.trustedSubnets;
    if (!l) return { ok: false, says: 'no DHCP lease is known for this MAC' };
    if (l.ip !== ip) return { ok: false, says: `the lease of this MAC is held by ${l.ip}, not ${ip}` };
    if (l.expires_at <= now) return { ok: false, says: `the lease expired at ${new Date(l.expires_at).toISOString()}` };
    if (!trusted.has(ip)) return { ok: false, says: `${ip} holds the lease but is outside trusted_subnets (${trusted.text || 'empty'})` };
    return { ok: true };
  }

  holdsLease(mac: Mac, ip: string, now = Date.now()): boolean {
    return this.leaseProof(mac, ip, now).ok;
  }

  /** Which HTTP credentials would prove a requester of `mac`, in words. */
  credentialsHint(mac: Mac): string {
    const sec = this.deps.settings().security;
    if (sec.auth === 'none') return 'HTTP credentials are off ([security] auth = none)';
    const own = this.deps.store.credentials(mac);
    return `HTTP ${sec.auth === 'basic' ? 'digest (or Basic over HTTPS)' : 'digest'} with ${sec.username ? `the site user "${sec.username}" or ` : ''}the device's own user "${own?.username ?? '?'}" (apsctl device credentials ${mac})`;
  }

  /** HTTP(S): certificate, then credentials (site or the device's own), then a current lease. */
  http(req: HttpProofRequest, mac: Mac): Proof {
    const sec = this.deps.settings().security;
    if (req.certMac && req.certMac === mac) return { ok: true, by: 'certificate' };
    let cred: AuthResult | null = null;
    if (sec.auth !== 'none' && req.authorization) {
      const own = this.deps.store.credentials(mac);
      const other = (u: string) => (own && own.username === u ? own.password : undefined);
      const isBasic = /^Basic\s/i.test(req.authorization);
      if (isBasic) {
        // Basic sends the password in clear: only over HTTPS, and only when allowed
        cred = sec.auth === 'basic' && req.proto === 'https'
          ? this.deps.auth.checkBasic(req.authorization, other)
          : { ok: false, reason: 'scheme' };
      } else {
        cred = this.deps.auth.checkDigest(req.authorization, req.method, req.url, Date.now(), other);
      }
      if (cred.ok) {
        const byDevice = own !== undefined && cred.username === own.username;
        return { ok: true, by: byDevice ? 'device-credentials' : 'credentials', user: cred.username };
      }
      if (cred.reason !== 'stale' && cred.reason !== 'missing' && cred.reason !== 'scheme') {
        this.note(req.ip, 'auth-failed', { proto: req.proto, mac, reason: cred.reason });
      }
    }
    const lease = this.leaseProof(mac, req.ip);
    if (lease.ok) return { ok: true, by: 'lease' };
    if (sec.auth === 'none') return { ok: false, reason: 'no-lease', challenge: false, lease: lease.says, credentials: this.credentialsHint(mac) };
    return {
      ok: false,
      reason: cred && !cred.ok ? `auth-${cred.reason}` : 'auth-missing',
      challenge: true,
      stale: cred && !cred.ok ? cred.stale : false,
      lease: lease.says,
      credentials: this.credentialsHint(mac),
    };
  }

  /** TFTP: per [security] tftp_secrets. */
  tftp(ip: string, mac: Mac): Proof {
    const policy = this.deps.settings().security.tftpSecrets;
    if (policy === 'always') return { ok: true, by: 'policy' };
    if (policy === 'never') return { ok: false, reason: 'tftp-secrets-never', challenge: false, lease: '[security] tftp_secrets = never: no file with secrets over TFTP' };
    const lease = this.leaseProof(mac, ip);
    if (lease.ok) return { ok: true, by: 'lease' };
    return { ok: false, reason: this.deps.settings().security.trustedSubnets.has(ip) ? 'no-lease' : 'untrusted-subnet', challenge: false, lease: lease.says };
  }

  /**
   * A User-Agent that names another vendor than the MAC's OUI, or embeds another MAC than
   * the one requested, counts as an offence. Returns what it found, for explain.
   */
  checkUserAgent(ip: string, proto: string, mac: Mac, userAgent: string | undefined, record = true): string | null {
    if (!userAgent) return null;
    const reg = this.deps.registry();
    const ua = reg.identify({ userAgent }).find((i) => i.by === 'userAgent');
    if (!ua) return null;
    const ouiVendor = reg.vendorOfMac(mac);
    let why: string | null = null;
    if (ua.mac && ua.mac !== mac) why = `User-Agent carries MAC ${ua.mac}`;
    else if (ouiVendor && ouiVendor.id !== ua.vendor) why = `User-Agent is ${ua.vendor}, the MAC's OUI is ${ouiVendor.id}`;
    if (why && record) this.note(ip, 'ua-mismatch', { proto, mac, ua_vendor: ua.vendor, ua_mac: ua.mac, mac_vendor: ouiVendor?.id });
    return why;
  }

  stats(): { bans: number; watched: number; budgetUsed: number } {
    return { bans: this.bans.size, watched: this.hits.size + this.asked.size, budgetUsed: this.budget.used };
  }
}
