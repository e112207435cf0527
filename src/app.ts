/**
 * Wiring, and nothing else: builds the configuration, vendor registry, store, the one
 * inventory, renderer, guard and every server, and hands each exactly the peers it uses.
 * Only apsd (src/daemon.ts) builds an App.
 */
import fs from 'node:fs';
import { loadConfig, type Config, type Tenant } from './config/index.js';
import { formatHostPort } from './config/fields.js';
import type { HostPort } from './config/fields.js';
import { createLogger, fileWriter, type Logger } from './log.js';
import { describeError } from './errors.js';
import { Renderer } from './render/index.js';
import { Store } from './store/index.js';
import { VendorRegistry } from './vendors/registry.js';
import { checkTemplates } from './vendors/templates-check.js';
import { DEFAULT_VENDORS_DIR } from './install.js';
import { Inventory } from './inventory/inventory.js';
import { FetchLog } from './inventory/fetches.js';
import { DigestAuth } from './provisioning/digest.js';
import { Guard } from './provisioning/guard.js';
import { provisioningUrl } from './provisioning/url.js';
import { normalizeIp } from './net/address.js';
import type { Service, ServiceStatus } from './servers/service.js';
import { HttpService, type HttpServerDeps } from './servers/http.js';
import { createTftpServer, type TftpServer } from './servers/tftp.js';
import { tftpResolver } from './servers/tftp-files.js';
import { createCaptureService } from './servers/dhcp-capture.js';
import { createPnpService } from './servers/pnp.js';
import { createDhcpServerService } from './servers/dhcp-server.js';
import { createPinService } from './servers/pin.js';
import { notFound, type ApiHandler } from './servers/api.js';
import { createRolloutService } from './servers/rollouts.js';
import { checkTemplateFirmware } from './firmware/select.js';
import { FirmwareStore } from './store/firmware.js';

export interface AppOptions {
  configDir: string | null;
  vendorsDir?: string;
  log?: Logger;
  /** override listen addresses (apsd --http-listen …) */
  httpListen?: HostPort[];
  httpsListen?: HostPort[];
  tftpListen?: HostPort[];
}

export class App {
  private config: Config;
  private gen = 1;
  private configLoadedAt = new Date().toISOString();
  /** the configuration generation: 1 at start, +1 at every accepted reload */
  get generation(): number {
    return this.gen;
  }
  readonly registry: VendorRegistry;
  /** state_dir as it was at start (a change takes effect at the next restart) */
  readonly stateDir: string;
  readonly store: Store;
  readonly inventory: Inventory;
  readonly fetches: FetchLog;
  readonly renderer: Renderer;
  readonly auth: DigestAuth;
  readonly guard: Guard;
  readonly log: Logger;
  private http?: HttpService;
  private https?: HttpService;
  private tftp?: TftpServer;
  /** optional services, started after the file servers and stopped before them */
  private readonly services: Service[] = [];
  private readonly apis: ApiHandler[] = [];

  constructor(readonly opts: AppOptions) {
    this.config = loadConfig(opts.configDir);
    const secLog = this.config.settings.server.securityLog;
    this.log = opts.log ?? createLogger({ level: this.config.settings.server.logLevel, writeSecurity: secLog ? fileWriter(secLog) : undefined });
    this.log.setLevel(this.config.settings.server.logLevel);
    this.registry = VendorRegistry.load(opts.vendorsDir ?? DEFAULT_VENDORS_DIR);
    checkTemplates(this.config, this.registry);
    this.stateDir = this.config.settings.server.stateDir;
    this.store = Store.open(this.stateDir, { cache: true });
    fs.mkdirSync(this.config.settings.server.firmwareDir, { recursive: true });
    const config = () => this.config;
    const settings = () => this.config.settings;
    const generation = () => this.gen;
    this.renderer = new Renderer({ registry: this.registry, store: this.store, config, generation });
    const sec = this.config.settings.security;
    this.auth = new DigestAuth(sec.username ? { username: sec.username, password: sec.password } : null, sec.realm);
    this.guard = new Guard({ store: this.store, settings, auth: this.auth, log: this.log, registry: () => this.registry });
    this.inventory = new Inventory({ store: this.store, registry: this.registry, settings, templates: () => this.config.templates, log: this.log });
    this.fetches = new FetchLog({ store: this.store, registry: this.registry, inventory: this.inventory, settings, log: this.log });
    for (const w of this.config.warnings) this.log.warn(w);
    this.warnFirmware(this.config);

    const url = (tenant: Tenant | undefined, localIp: string) =>
      provisioningUrl({ settings: this.config.settings, tenant, localIp, listen: this.opts.httpListen ?? this.config.settings.http.listen, httpPort: this.http?.addresses()[0]?.port });
    const { store, registry, guard, inventory, log } = this;
    // optional services, each null when its section leaves it off
    const capture = createCaptureService({ capture: () => this.config.settings.dhcp.capture, inventory, store, log });
    const dhcpServer = createDhcpServerService({ config, generation, store, registry, inventory, log, provisioningUrl: url });
    const pnp = createPnpService({ config, registry, store, guard, inventory, log, provisioningUrl: url });
    const pin = createPinService({ config, store, registry, guard, log });
    const rollouts = createRolloutService({ store, registry, config, log });
    for (const svc of [capture, dhcpServer, pnp, pin, rollouts]) if (svc) this.services.push(svc);
    if (pin) this.apis.push(pin.api);
  }

  private serverDeps(): HttpServerDeps {
    return {
      api: (req, res, info) => {
        for (const a of this.apis) if (a(req, res, info)) return;
        notFound(res, req);
      },
      registry: () => this.registry,
      store: this.store,
      renderer: this.renderer,
      guard: this.guard,
      firmwareDir: () => this.config.settings.server.firmwareDir,
      log: this.log,
      auth: this.auth,
      settings: () => this.config.settings,
      fetches: this.fetches,
    };
  }

  async start(): Promise<void> {
    const s = this.config.settings;
    const deps = this.serverDeps();
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
        maxTimeoutS: s.tftp.maxTimeoutS,
        firstAckMs: s.tftp.firstAckMs,
        maxTransfers: s.tftp.maxTransfers,
        perSource: s.tftp.perSource,
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

  /** What runs, on which interface, since when, the last error (`apsctl status`, systemd STATUS). */
  status(): { listen: { http: string[]; https: string[]; tftp: string[] }; services: ServiceStatus[]; configFingerprint: string; configLoadedAt: string } {
    return {
      // which configuration apsd serves from, for apsctl to compare with the files (src/cli/context.ts warnIfStale)
      configFingerprint: this.config.fingerprint,
      configLoadedAt: this.configLoadedAt,
      listen: {
        http: this.http?.addresses().map(formatHostPort) ?? [],
        https: this.https?.addresses().map(formatHostPort) ?? [],
        tftp: this.tftp?.addresses().map(formatHostPort) ?? [],
      },
      services: this.services.flatMap((svc) => svc.status?.() ?? []),
    };
  }

  /** Re-reads the ini files; on any error keeps the running configuration and says why. */
  reload(): { ok: true } | { ok: false; error: string } {
    let next: Config;
    try {
      next = loadConfig(this.opts.configDir);
      checkTemplates(next, this.registry);
    } catch (e) {
      const msg = describeError(e);
      this.log.error('reload refused: keeping the running configuration', { err: msg });
      return { ok: false, error: msg };
    }
    const old = this.config.settings;
    const fixed = (x: typeof old) => JSON.stringify([x.http.listen, x.https, x.tftp.listen, x.tftp.enabled, x.server.stateDir, x.server.securityLog, x.security.realm]);
    if (fixed(old) !== fixed(next.settings)) this.log.warn('listen addresses, [https], [tftp] enabled, state_dir, security_log and realm take effect at the next restart');
    this.config = next;
    this.gen++;
    const sec = next.settings.security;
    this.auth.setCredentials(sec.username ? { username: sec.username, password: sec.password } : null);
    this.log.setLevel(next.settings.server.logLevel);
    for (const w of next.warnings) this.log.warn(w);
    this.warnFirmware(next);
    for (const svc of this.services) svc.reload?.();
    this.configLoadedAt = new Date().toISOString();
    this.log.info('configuration reloaded', { generation: this.generation, templates: next.templates.size, extensions: next.extensions.size, tenants: next.tenants.size });
    return { ok: true };
  }

  /** Templates whose firmware is not for their model: served without it (apsctl config check says the same, as an error). */
  private warnFirmware(config: Config): void {
    try {
      for (const e of checkTemplateFirmware(config.templates.values(), new FirmwareStore(this.store).images(), config.settings.server.firmwareDir).errors) this.log.warn(e);
    } catch (e) {
      this.log.warn('cannot check template firmware against the catalogue', { err: describeError(e) });
    }
  }

  async stop(drainMs = 5000): Promise<void> {
    for (const svc of [...this.services].reverse()) {
      await svc.stop().catch((e) => this.log.error('service did not stop cleanly', { service: svc.name, err: describeError(e) }));
    }
    await Promise.all([this.http?.close(drainMs), this.https?.close(drainMs), this.tftp?.close({ drainMs })]);
    this.fetches.close();
    this.store.close();
  }
}
