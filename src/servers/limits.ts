/**
 * Limits that keep one source, or a storm, from taking everything: connections counted in
 * total and per source address, and the process's descriptor limit they are derived from.
 * A refusal is logged when an overload begins and then at most once a minute with a count,
 * never per connection.
 */
import fs from 'node:fs';
import type { Logger } from '../log.js';

/** The soft RLIMIT_NOFILE of this process (systemd: LimitNOFILE), or null when unknown. */
export function descriptorLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return null;
    return m[1] === 'unlimited' ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * `configured` connections, or (0) what the descriptor limit leaves once a reserve is kept for
 * everything else apsd opens (database, firmware images, TFTP transfer sockets, captures).
 */
export function connectionBudget(configured: number, reserveFraction = 0.25, reserveMin = 128): number {
  if (configured > 0) return configured;
  const lim = descriptorLimit() ?? 65_536;
  return Math.max(16, Math.floor(lim - Math.max(reserveMin, lim * reserveFraction)));
}

export type Admission = 'ok' | 'total' | 'source';

export class ConnectionGate {
  private total = 0;
  private readonly bySource = new Map<string, number>();
  private refusedSinceLog = 0;
  private lastLog = 0;
  readonly counters = { admitted: 0, refusedTotal: 0, refusedSource: 0 };

  constructor(
    private readonly what: string,
    private readonly limits: () => { max: number; perSource: number },
    private readonly log: Logger,
  ) {}

  get open(): number {
    return this.total;
  }

  admit(ip: string): Admission {
    const { max, perSource } = this.limits();
    const mine = this.bySource.get(ip) ?? 0;
    const verdict: Admission = this.total >= max ? 'total' : mine >= perSource ? 'source' : 'ok';
    if (verdict !== 'ok') {
      if (verdict === 'total') this.counters.refusedTotal++;
      else this.counters.refusedSource++;
      this.refused(verdict, ip, max, perSource);
      return verdict;
    }
    this.total++;
    this.bySource.set(ip, mine + 1);
    this.counters.admitted++;
    return 'ok';
  }

  release(ip: string): void {
    this.total--;
    const n = (this.bySource.get(ip) ?? 1) - 1;
    if (n > 0) this.bySource.set(ip, n);
    else this.bySource.delete(ip);
  }

  private refused(why: Admission, ip: string, max: number, perSource: number): void {
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastLog < 60_000) return;
    this.lastLog = now;
    this.log.warn(why === 'total' ? `${this.what}: connection limit reached, new connections are refused` : `${this.what}: one address holds its share of connections, more from it are refused`, {
      open: this.total, max, per_source: perSource, ip, refused: this.refusedSinceLog,
    });
    this.refusedSinceLog = 0;
  }
}
