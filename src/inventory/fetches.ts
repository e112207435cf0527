/**
 * Every fetch is evidence. An HTTP, HTTPS or TFTP request that names a MAC becomes an
 * observation (time, address, protocol, file, answer, proof kind, User-Agent and what it says);
 * the device gets its last contact, address and firmware. The same request is a sighting for
 * the inventory, so that its rules apply as for DHCP: an unknown MAC of a supported vendor
 * appears (or waits for approval), and an unprovisioned, discovered device's model is
 * corrected from the User-Agent or from the model-common file it asks for (that request names
 * no MAC: it is tied to the MAC that fetched from the same address just before).
 *
 * Nothing is written per request: fetches are queued and written in one transaction per batch
 * (at most every FLUSH_MS, or at once past FLUSH_ROWS), off the request's path. A write that
 * fails is counted and logged once a minute; the queue is bounded (MAX_QUEUED), so a database
 * that cannot be written costs observations, never answers.
 */
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Mac } from '../mac.js';
import type { Settings } from '../config/settings.js';
import { Observations, type NewObservation } from '../store/observations.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import type { Inventory, Sighting } from './inventory.js';

const FLUSH_MS = 250;
const FLUSH_ROWS = 2000;
const MAX_QUEUED = 50_000;
/** how long a fetch of a MAC's file ties its source address to that MAC (for the model-common file that follows) */
const TIE_MS = 10 * 60_000;
const MAX_TIES = 100_000;
const EXPIRE_EVERY_MS = 10 * 60_000;

export interface Fetch {
  at: number;
  ip: string;
  proto: 'http' | 'https' | 'tftp';
  file: string;
  /** what the requester got: 200, 304, 401 … or ok / error N */
  answer: string;
  /** the proof kind of a file with secrets (lease, credentials …) */
  proof?: string;
  userAgent?: string;
  /** the MAC the name carries, if it names one */
  mac?: Mac;
  /** the model the name carries (a model-common file), with its vendor */
  model?: { vendor: string; id: string };
  /** the MAC's file is a device this store knows */
  known?: boolean;
}

export interface FetchLogDeps {
  store: Store;
  registry: VendorRegistry;
  inventory: Pick<Inventory, 'observeMany'>;
  settings: () => Settings;
  log: Logger;
}

export class FetchLog {
  private readonly observations: Observations;
  private queue: Fetch[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly ties = new Map<string, { mac: Mac; at: number }>();
  private lastExpire = 0;
  private failed = 0;
  private dropped = 0;
  private lastWarn = 0;
  readonly counters = { recorded: 0, written: 0, sightings: 0, dropped: 0, failed: 0 };

  constructor(private readonly deps: FetchLogDeps) {
    this.observations = new Observations(deps.store);
  }

  record(f: Fetch): void {
    if (!f.mac && !f.model) return;
    if (this.queue.length >= MAX_QUEUED) {
      this.dropped++;
      this.counters.dropped++;
      return;
    }
    this.counters.recorded++;
    this.queue.push(f);
    if (this.queue.length >= FLUSH_ROWS) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Writes what is queued now (also at shutdown). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue;
    if (!batch.length) return;
    this.queue = [];
    const { registry, settings } = this.deps;
    const s = settings().server;
    const rows: NewObservation[] = [];
    const sightings = new Map<Mac, Sighting>();
    for (const f of batch) {
      let mac = f.mac;
      if (mac) {
        this.tie(f.ip, mac, f.at);
      } else {
        // a model-common file: the MAC that fetched from this address just before
        const t = this.ties.get(f.ip);
        if (!t || f.at - t.at > TIE_MS) continue;
        mac = t.mac;
      }
      const ua = f.userAgent ? registry.identify({ userAgent: f.userAgent }).find((i) => i.by === 'userAgent') : undefined;
      if (f.mac) {
        rows.push({
          at: f.at, mac, ip: f.ip, proto: f.proto, file: f.file.slice(0, 255), answer: f.answer, proof: f.proof ?? '',
          user_agent: (f.userAgent ?? '').slice(0, 512), ua_vendor: ua?.vendor ?? null, ua_model: ua?.model ?? null,
          ua_firmware: ua?.version ?? null, ua_mac: ua?.mac ?? null,
        });
      }
      // evidence for the inventory: the User-Agent, or the model its common file names
      const prev = sightings.get(mac);
      const model = f.model && registry.vendorOfMac(mac)?.id === f.model.vendor ? f.model.id : undefined;
      sightings.set(mac, {
        mac, source: f.proto === 'tftp' ? 'tftp' : 'http', at: f.at, clientIp: f.ip,
        userAgent: f.userAgent ?? prev?.userAgent,
        model: model ?? prev?.model,
      });
    }
    if (sightings.size) {
      try {
        const out = this.deps.inventory.observeMany([...sightings.values()]);
        this.counters.sightings += out.filter((r) => !(r instanceof Error)).length;
        const err = out.find((r): r is Error => r instanceof Error);
        if (err) this.warn('sightings of fetches not written', err);
      } catch (e) {
        // the transaction itself failed (disk full, read-only, busy): serving goes on without it
        this.warn('sightings of fetches not written', e);
      }
    }
    try {
      this.observations.write(rows, s.observationsPerDevice);
      this.counters.written += rows.length;
      if (Date.now() - this.lastExpire > EXPIRE_EVERY_MS) {
        this.lastExpire = Date.now();
        this.observations.expire(Date.now() - s.observationsMs);
      }
    } catch (e) {
      this.failed += rows.length;
      this.counters.failed += rows.length;
      this.warn('observations not written', e);
    }
  }

  close(): void {
    this.flush();
  }

  private tie(ip: string, mac: Mac, at: number): void {
    this.ties.delete(ip);
    this.ties.set(ip, { mac, at });
    if (this.ties.size > MAX_TIES) this.ties.delete(this.ties.keys().next().value as string);
  }

  /** At most one warning a minute, with the counts since the last one. */
  private warn(msg: string, e: unknown): void {
    const now = Date.now();
    if (now - this.lastWarn < 60_000) return;
    this.lastWarn = now;
    this.deps.log.warn(msg, { err: describeError(e), failed: this.failed, dropped: this.dropped });
    this.failed = 0;
    this.dropped = 0;
  }
}
