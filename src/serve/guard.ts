/**
 * The one place where proofs are checked. A file that holds secrets leaves only with proof:
 * site HTTP credentials (digest or basic), or — for TFTP with tftp_secrets = lease, and for
 * HTTP — the requester is the IP that holds this MAC's DHCP lease right now.
 */
import type { Settings } from '../config/index.js';
import type { Mac } from '../mac.js';
import type { Store } from '../store/index.js';
import type { AuthResult, DigestAuth } from './digest.js';

export type Proof =
  | { ok: true; by: 'credentials' | 'lease' | 'policy'; user?: string }
  | { ok: false; reason: string; challenge: boolean; stale?: boolean };

export function normalizeIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

export class Guard {
  constructor(
    private readonly deps: { store: Store; settings: () => Settings; auth: DigestAuth },
  ) {}

  holdsLease(mac: Mac, ip: string, now = Date.now()): boolean {
    const l = this.deps.store.lease(mac);
    return !!l && l.ip === ip && l.expires_at > now;
  }

  /** HTTP: credentials per [security] auth, else a current lease. */
  http(req: { method: string; url: string; authorization?: string; ip: string }, mac: Mac): Proof {
    const sec = this.deps.settings().security;
    let cred: AuthResult | null = null;
    if (sec.auth !== 'none' && sec.username) {
      cred = sec.auth === 'digest'
        ? this.deps.auth.checkDigest(req.authorization, req.method === 'HEAD' ? 'HEAD' : req.method, req.url)
        : this.deps.auth.checkBasic(req.authorization);
      if (cred.ok) return { ok: true, by: 'credentials', user: cred.username };
    }
    if (this.holdsLease(mac, req.ip)) return { ok: true, by: 'lease' };
    if (sec.auth === 'none') return { ok: false, reason: 'no-lease', challenge: false };
    if (!sec.username) return { ok: false, reason: 'no-site-credentials-configured', challenge: false };
    return { ok: false, reason: cred && !cred.ok ? `auth-${cred.reason}` : 'auth-missing', challenge: true, stale: cred && !cred.ok ? cred.stale : false };
  }

  /** TFTP: per [security] tftp_secrets. */
  tftp(ip: string, mac: Mac): Proof {
    const policy = this.deps.settings().security.tftpSecrets;
    if (policy === 'always') return { ok: true, by: 'policy' };
    if (policy === 'never') return { ok: false, reason: 'tftp-secrets-never', challenge: false };
    if (this.holdsLease(mac, ip)) return { ok: true, by: 'lease' };
    return { ok: false, reason: 'no-lease', challenge: false };
  }
}
