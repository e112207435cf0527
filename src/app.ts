/**
 * Wiring in one place: configuration, vendors, store, renderer, guard and the servers.
 * Used by apsd (src/daemon.ts) and by the tests, which start the same thing on loopback.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApsError } from './errors.js';
import { loadConfig, type Config } from './config/index.js';
import { formatHostPort } from './config/fields.js';
import type { HostPort } from './config/fields.js';
import { createLogger, fileWriter, type Logger } from './log.js';
import { Renderer } from './render/index.js';
import { Store } from './store/index.js';
import { VendorRegistry } from './vendors/registry.js';
import { DigestAuth } from './serve/digest.js';
import { Guard, normalizeIp } from './serve/guard.js';
import { HttpService } from './serve/http.js';
import { createTftpServer, type TftpServer } from './serve/tftp.js';
import { tftpResolver } from './serve/tftp-adapter.js';
import { createCaptureService } from './discovery/capture.js';
import { createPnpService } from './discovery/pnp.js';
import { createDhcpServerService } from './dhcp/server.js';
import { createPinService } from './pin/service.js';

/** The project root: src/ when run from source, dist/src/ when built. */
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const INSTALL_DIR = fs.existsSync(path.join(HERE, '../vendors')) ? path.resolve(HERE, '..') : path.resolve(HERE, '../..');
export const DEFAULT_VENDORS_DIR = path.join(INSTALL_DIR, 'vendors');

/** A part of apsd with a life of its own (DHCP capture, DHCP server, FastAGI, SIP PnP …). */
export interface Service {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** called after a successful configuration reload */
  reload?(): void;
  /** key=value facts for the "apsd ready" line */
  describe?(): Record<string, string>;
}

export interface AppOptions {
  configDir: string | null;
  vendorsDir?: string;
  log?: Logger;
  /** override listen addresses (tests) */
  httpListen?: HostPort[];
  httpsListen?: HostPort[];
  tftpListen?: HostPort[];
}

export class App {
  config: Config;
  generation = 1;
  readonly registry: VendorRegistry;
  readonly store: Store;
  readonly renderer: Renderer;
  readonly auth: DigestAuth;
  readonly guard: Guard;
  readonly log: Logger;
  http?: HttpService;
  https?: HttpService;
  tftp?: TftpServer;
  /** optional services, started after the file servers and stopped before them */
  readonly services: Service[] = [];
  /** handler of /api/… on the HTTP(S) listeners, set by the services that offer an API */
  api?: import('./serve/http.js').HttpServerDeps['api'];

  constructor(readonly opts: AppOptions) {
    this.config = loadConfig(opts.configDir);
    const secLog = this.config.settings.server.securityLog;
    this.log = opts.log ?? createLogger({ level: this.config.settings.server.logLevel, writeSecurity: secLog ? fileWriter(secLog) : undefined });
    this.log.setLevel(this.config.settings.server.logLevel);
    this.registry = VendorRegistry.load(opts.vendorsDir ?? DEFAULT_VENDORS_DIR);
    checkTemplates(this.config, this.registry);
    this.store = Store.open(this.config.settings.server.stateDir, { cache: true });
    fs.mkdirSync(this.config.settings.server.firmwareDir, { recursive: true });
    this.renderer = new Renderer({ registry: this.registry, store: this.store, config: () => this.config, generation: () => this.generation });
    const sec = this.config.settings.security;
    this.auth = new DigestAuth(sec.username ? { username: sec.username, password: sec.password } : null, sec.realm);
    this.guard = new Guard({ store: this.store, settings: () => this.config.settings, auth: this.auth, log: this.log, registry: () => this.registry });
    for (const w of this.config.warnings) this.log.warn(w);
    // optional services, each null when its section leaves it off
    for (const make of [createCaptureService, createDhcpServerService, createPnpService, createPinService]) {
      const svc = make(this);
      if (svc) this.services.push(svc);
    }
  }

  async start(): Promise<void> {
    const s = this.config.settings;
    const deps = {
      api: (req: Parameters<NonNullable<App['api']>>[0], res: Parameters<NonNullable<App['api']>>[1], info: Parameters<NonNullable<App['api']>>[2]) => {
        if (this.api) this.api(req, res, info);
        else {
          res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
          res.end('no API here\n');
          req.resume();
        }
      },
      registry: () => this.registry,
      store: this.store,
      renderer: this.renderer,
      guard: this.guard,
      firmwareDir: () => this.config.settings.server.firmwareDir,
      log: this.log,
      auth: this.auth,
      settings: () => this.config.settings,
    };
    const httpListen = this.opts.httpListen ?? s.http.listen;
    if (httpListen.length) {
      this.http = new HttpService(deps);
      await this.http.start(httpListen);
    }
    const httpsListen = this.opts.httpsListen ?? s.https.listen;
    if (httpsListen.length) {
      this.https = new HttpService(deps);
      try {
        await this.https.start(httpsListen, { cert: s.https.cert, key: s.https.key, clientCa: s.https.clientCa });
      } catch (e) {
        await this.http?.close(0);
        throw e;
      }
    }
    const tftpListen = this.opts.tftpListen ?? s.tftp.listen;
    if (s.tftp.enabled && tftpListen.length) {
      this.tftp = createTftpServer({
        listen: tftpListen,
        resolve: tftpResolver(deps),
        log: this.log,
        maxBlksize: s.tftp.maxBlksize,
        maxWindowsize: s.tftp.maxWindowsize,
        silent: (address) => this.guard.banned(normalizeIp(address)) !== null,
      });
      try {
        await this.tftp.start();
      } catch (e) {
        await this.http?.close(0);
        await this.https?.close(0);
        throw e;
      }
    }
    const started: Service[] = [];
    for (const svc of this.services) {
      try {
        await svc.start();
        started.push(svc);
      } catch (e) {
        for (const s2 of started.reverse()) await s2.stop().catch(() => {});
        await Promise.all([this.http?.close(0), this.https?.close(0), this.tftp?.close({ drainMs: 0 })]);
        throw e;
      }
    }
    const facts: Record<string, string> = {};
    for (const svc of this.services) Object.assign(facts, svc.describe?.() ?? {});
    this.log.info('apsd ready', {
      ...facts,
      http: this.http?.addresses().map(formatHostPort).join(','),
      https: this.https?.addresses().map(formatHostPort).join(','),
      tftp: this.tftp?.addresses().map(formatHostPort).join(','),
      config: this.config.dir ?? '(built-in defaults)',
      state: s.server.stateDir,
      devices: this.store.countDevices(),
      vendors: this.registry.list().map((v) => v.id).join(','),
    });
  }

  /** Re-reads the ini files; on any error keeps the running configuration and says why. */
  reload(): { ok: true } | { ok: false; error: string } {
    let next: Config;
    try {
      next = loadConfig(this.opts.configDir);
      checkTemplates(next, this.registry);
    } catch (e) {
      const msg = (e as { describe?: () => string }).describe?.() ?? (e as Error).message;
      this.log.error('reload refused: keeping the running configuration', { err: msg });
      return { ok: false, error: msg };
    }
    const old = this.config.settings;
    const fixed = (x: typeof old) => JSON.stringify([x.http.listen, x.https, x.tftp.listen, x.tftp.enabled, x.server.stateDir, x.server.securityLog, x.security.realm]);
    if (fixed(old) !== fixed(next.settings)) this.log.warn('listen addresses, [https], [tftp] enabled, state_dir, security_log and realm take effect at the next restart');
    this.config = next;
    this.generation++;
    const sec = next.settings.security;
    this.auth.setCredentials(sec.username ? { username: sec.username, password: sec.password } : null);
    this.log.setLevel(next.settings.server.logLevel);
    for (const w of next.warnings) this.log.warn(w);
    for (const svc of this.services) svc.reload?.();
    this.log.info('configuration reloaded', { generation: this.generation, templates: next.templates.size, extensions: next.extensions.size, tenants: next.tenants.size });
    return { ok: true };
  }

  async stop(drainMs = 5000): Promise<void> {
    for (const svc of [...this.services].reverse()) {
      await svc.stop().catch((e) => this.log.error('service did not stop cleanly', { service: svc.name, err: (e as Error).message }));
    }
    await Promise.all([this.http?.close(drainMs), this.https?.close(drainMs), this.tftp?.close({ drainMs })]);
    this.store.close();
  }
}

/** Every template must name a known vendor and one of its models. */
export function checkTemplates(config: Config, registry: VendorRegistry): void {
  for (const t of config.templates.values()) {
    const v = registry.get(t.vendor);
    if (!v) {
      throw new ApsError('APS_ERR_CONFIG', `no vendor "${t.vendor}"`, {
        file: t.file, key: '[template] vendor', expected: `one of ${registry.list().map((x) => x.id).join(', ')}`,
      });
    }
    if (!registry.model(v.id, t.model)) {
      throw new ApsError('APS_ERR_CONFIG', `${v.name} has no model "${t.model}"`, {
        file: t.file, key: '[template] model', expected: `one of ${v.models.map((m) => m.id).join(', ')}`,
      });
    }
  }
}
