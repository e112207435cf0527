/**
 * HTTP authentication: Digest (RFC 7616, SHA-256 and MD5, qop=auth) and Basic.
 * Nonces are stateless (time + sequence number + HMAC), expire after `nonceTtlMs`, and each
 * (nonce, nc) pair is accepted once, so a captured request cannot be replayed. Every challenge
 * gets its own nonce: phones challenged in the same millisecond (a boot storm) would otherwise
 * share one, all count from nc=1, and all but the first be refused as replays.
 */
import crypto from 'node:crypto';

export interface Credentials {
  username: string;
  password: string;
}

type Algo = 'MD5' | 'SHA-256';
const HASH: Record<Algo, string> = { MD5: 'md5', 'SHA-256': 'sha256' };

export type AuthResult =
  | { ok: true; username: string; scheme: 'digest' | 'basic' }
  | { ok: false; reason: 'missing' | 'malformed' | 'bad-user' | 'bad-password' | 'stale' | 'bad-nonce' | 'replay' | 'uri-mismatch' | 'scheme'; stale?: boolean };

export class DigestAuth {
  private readonly key = crypto.randomBytes(32);
  private readonly opaque = crypto.randomBytes(12).toString('base64url');
  private readonly seen = new Map<string, { exp: number; nc: Set<number> }>();
  private readonly ha1 = new Map<string, string>();
  private sweepAt = 0;
  private seq = 0;

  constructor(
    private creds: Credentials | null,
    readonly realm: string,
    private readonly nonceTtlMs = 300_000,
  ) {
    this.setCredentials(creds);
  }

  setCredentials(creds: Credentials | null): void {
    this.creds = creds;
    this.ha1.clear();
    if (creds) {
      for (const a of Object.keys(HASH) as Algo[]) {
        this.ha1.set(a, h(a, `${creds.username}:${this.realm}:${creds.password}`));
      }
    }
  }

  nonce(now = Date.now()): string {
    this.seq = (this.seq + 1) % 0x7fffffff;
    return this.nonceFor(`${now.toString(36)}-${this.seq.toString(36)}`);
  }

  /** WWW-Authenticate header values: SHA-256 first, MD5 for older phones. */
  challenge(stale = false): string[] {
    const n = this.nonce();
    const st = stale ? ', stale=true' : '';
    return (['SHA-256', 'MD5'] as Algo[]).map(
      (a) => `Digest realm="${this.realm}", qop="auth", algorithm=${a}, nonce="${n}", opaque="${this.opaque}"${st}`,
    );
  }

  basicChallenge(): string {
    return `Basic realm="${this.realm}", charset="UTF-8"`;
  }

  /** The password of a user name other than the site's (a device's own credentials), if any. */
  checkBasic(header: string | undefined, other?: (username: string) => string | undefined): AuthResult {
    if (!header) return { ok: false, reason: 'missing' };
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!m) return { ok: false, reason: header.toLowerCase().startsWith('digest') ? 'scheme' : 'malformed' };
    const dec = Buffer.from(m[1], 'base64').toString('utf8');
    const i = dec.indexOf(':');
    if (i < 0) return { ok: false, reason: 'malformed' };
    const user = dec.slice(0, i);
    const pass = dec.slice(i + 1);
    const expected = this.creds && safeEq(user, this.creds.username) ? this.creds.password : other?.(user);
    if (expected === undefined) return { ok: false, reason: 'bad-user' };
    if (!safeEq(pass, expected)) return { ok: false, reason: 'bad-password' };
    return { ok: true, username: user, scheme: 'basic' };
  }

  checkDigest(header: string | undefined, method: string, uri: string, now = Date.now(), other?: (username: string) => string | undefined): AuthResult {
    if (!header) return { ok: false, reason: 'missing' };
    if (!/^Digest\s/i.test(header)) return { ok: false, reason: /^Basic\s/i.test(header) ? 'scheme' : 'malformed' };
    const p = parseAuthParams(header.slice(7));
    if (!p) return { ok: false, reason: 'malformed' };
    const algo = (p.algorithm ?? 'MD5').toUpperCase() as Algo;
    if (!HASH[algo] || !p.username || !p.nonce || !p.uri || !p.response || p.qop !== 'auth' || !p.nc || !p.cnonce) {
      return { ok: false, reason: 'malformed' };
    }
    if (p.realm !== this.realm) return { ok: false, reason: 'malformed' };
    let ha1: string | undefined;
    if (this.creds && safeEq(p.username, this.creds.username)) ha1 = this.ha1.get(algo);
    else {
      const pw = other?.(p.username);
      if (pw !== undefined) ha1 = h(algo, `${p.username}:${this.realm}:${pw}`);
    }
    if (ha1 === undefined) return { ok: false, reason: 'bad-user' };
    if (p.uri !== uri) return { ok: false, reason: 'uri-mismatch' };
    const dot = p.nonce.indexOf('.');
    const ts = p.nonce.slice(0, dot);
    if (dot < 1 || !safeEq(p.nonce, this.nonceFor(ts))) return { ok: false, reason: 'bad-nonce' };
    const issued = parseInt(ts, 36);
    if (!Number.isFinite(issued) || issued > now + 5000) return { ok: false, reason: 'bad-nonce' };
    const expected = h(algo, `${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:auth:${h(algo, `${method}:${p.uri}`)}`);
    if (!safeEq(p.response.toLowerCase(), expected)) return { ok: false, reason: 'bad-password' };
    if (now - issued > this.nonceTtlMs) return { ok: false, reason: 'stale', stale: true };
    if (!/^[0-9a-fA-F]{8}$/.test(p.nc)) return { ok: false, reason: 'malformed' };
    const nc = parseInt(p.nc, 16);
    this.sweep(now);
    let rec = this.seen.get(p.nonce);
    if (!rec) {
      rec = { exp: issued + this.nonceTtlMs, nc: new Set() };
      this.seen.set(p.nonce, rec);
    }
    if (rec.nc.has(nc) || rec.nc.size >= 100_000) return { ok: false, reason: 'replay', stale: rec.nc.size >= 100_000 };
    rec.nc.add(nc);
    return { ok: true, username: p.username, scheme: 'digest' };
  }

  private nonceFor(ts: string): string {
    return `${ts}.${crypto.createHmac('sha256', this.key).update(ts).digest('base64url').slice(0, 22)}`;
  }

  private sweep(now: number) {
    if (now < this.sweepAt) return;
    this.sweepAt = now + 10_000;
    for (const [k, v] of this.seen) if (v.exp < now) this.seen.delete(k);
  }
}

function h(a: Algo, s: string): string {
  return crypto.createHash(HASH[a]).update(s).digest('hex');
}

function safeEq(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

/** `key="quoted", key=token, ...` → map; null on malformed input. */
export function parseAuthParams(s: string): Record<string, string> | null {
  const out: Record<string, string> = {};
  const re = /\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  let last = 0;
  while (last < s.length && (m = re.exec(s))) {
    out[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    last = re.lastIndex;
    if (m[0] === '') break;
  }
  if (s.slice(last).trim() !== '') return null;
  return out;
}
