/**
 * The PIN registration part of apsd, three thin things around the workflow:
 * - the FastAGI server on [pin] agi_listen: `AGI(agi://HOST:4573/register,${PIN},${EXTEN_WANTED}[,MAC])`
 *   answers by setting APS_RESULT. The device is the explicit MAC argument (or ?mac= in the
 *   URL), else the unprov account the call comes from: the endpoint of agi_channel
 *   (PJSIP/<account>-<id>), else agi_callerid.
 * - the accounts file [pbx] accounts_file: every unprovisioned device's account, rewritten
 *   atomically (write, fsync, rename) when the set changes: checked at start, after a reload,
 *   after each registration and every 5 s (devices that discovery or apsctl created).
 * - POST /api/v1/pin-register on the HTTP listeners, with the bearer token of [api] token.
 * AGI listen addresses are read at start; a change needs a restart (like the HTTP listeners).
 */
import type { Config } from '../config/index.js';
import { formatHostPort } from '../config/fields.js';
import type { Service } from './service.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import type { Guard } from '../provisioning/guard.js';
import { AccountsFile } from '../pin/accounts-file.js';
import { pinApi, type ApiHandler } from './api.js';
import { ApsError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseMac, type Mac } from '../mac.js';
import { createAgiServer, type AgiServer, type AgiSession } from '../wire/agi.js';
import { parseSipAddress, resync } from '../pin/resync.js';
import { hasPin, register, type RegisterOutcome, type RegisterRequest, type WorkflowDeps } from '../pin/workflow.js';

const POLL_MS = 5000;

export interface PinService extends Service {
  /** where FastAGI listens (port 0 resolved) */
  agiAddresses(): { host: string; port: number }[];
  /** checks the accounts file now; true when it was rewritten */
  syncAccounts(force?: boolean): boolean;
  /** the workflow as the adapters call it (resync and accounts file included) */
  register(req: RegisterRequest): Promise<RegisterOutcome>;
  /** the HTTP API's handler (POST /api/v1/pin-register) */
  readonly api: ApiHandler;
}

export interface PinServiceDeps {
  config: () => Config;
  store: Store;
  registry: VendorRegistry;
  guard: Pick<Guard, 'note'>;
  log: Logger;
}

/**
 * null when there is nothing to do: no PIN configured (FastAGI and the API would refuse every
 * registration, so they stay off) and no accounts file.
 */
export function createPinService(deps: PinServiceDeps): PinService | null {
  const s0 = deps.config().settings;
  if (!hasPin(s0) && !s0.pbx.accountsFile) return null;
  return new PinServiceImpl(deps);
}

class PinServiceImpl implements PinService {
  readonly name = 'pin';
  private agi: AgiServer[] = [];
  private readonly accounts: AccountsFile;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private readonly agiListen: string;
  private readonly deps: WorkflowDeps;
  readonly api: ApiHandler;

  constructor(private readonly peers: PinServiceDeps) {
    const { log, store, registry, config } = peers;
    this.accounts = new AccountsFile(store, () => config().settings, log);
    this.agiListen = hasPin(config().settings) ? config().settings.pinSettings.agiListen.map(formatHostPort).join(',') : '';
    this.deps = {
      store,
      config,
      log,
      resync: (mac, o) => resync({ store, registry, config, log }, mac, o),
      onRegistered: () => this.syncAccounts(),
    };
    this.api = pinApi({ settings: () => config().settings, log, register: (r) => this.register(r), refused: (ip, reason) => peers.guard.note(ip, 'auth-failed', { proto: 'api', reason }) });
  }

  register(req: RegisterRequest): Promise<RegisterOutcome> {
    return register(this.deps, req);
  }

  async start(): Promise<void> {
    const s = this.peers.config().settings;
    const log = this.peers.log;
    try {
      for (const listen of hasPin(s) ? s.pinSettings.agiListen : []) {
        const srv = createAgiServer({
          listen, log, handle: (sess) => this.onAgi(sess),
          envTimeoutMs: s.pinSettings.agiEnvTimeoutMs, maxSessions: s.pinSettings.agiMaxSessions, perSource: s.pinSettings.agiPerSource,
        });
        await srv.start();
        this.agi.push(srv);
        if (!isLoopback(listen.host)) log.warn('FastAGI listens beyond loopback: whoever reaches it may try PINs; let only the PBX reach it', { listen: formatHostPort(listen) });
      }
    } catch (e) {
      await Promise.all(this.agi.map((a) => a.close({ drainMs: 0 })));
      this.agi = [];
      throw e;
    }
    this.syncAccounts(true);
    this.timer = setInterval(() => this.syncAccounts(), POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.all(this.agi.map((a) => a.close({ drainMs: 2000 })));
    this.agi = [];
  }

  reload(): void {
    const s = this.peers.config().settings;
    const now = hasPin(s) ? s.pinSettings.agiListen.map(formatHostPort).join(',') : '';
    if (now !== this.agiListen) this.peers.log.warn('[pin] agi_listen takes effect at the next restart', { running: this.agiListen || '(off)', configured: now || '(off)' });
    this.syncAccounts(true);
  }

  describe(): Record<string, string> {
    const s = this.peers.config().settings;
    return {
      agi: this.agiAddresses().map(formatHostPort).join(',') || (hasPin(s) ? 'off' : 'off(no PIN)'),
      pbx_accounts: s.pbx.accountsFile || 'off',
      pin_api: s.api.token && hasPin(s) ? 'on' : 'off',
    };
  }

  agiAddresses(): { host: string; port: number }[] {
    return this.agi.flatMap((a) => a.addresses());
  }

  syncAccounts(force = false): boolean {
    try {
      const wrote = this.accounts.check(force);
      this.failing = false;
      return wrote;
    } catch (e) {
      // retried at every poll; said once until it works again
      if (!this.failing) this.peers.log.error('cannot write the PBX accounts file', { file: this.peers.config().settings.pbx.accountsFile, err: describeError(e) });
      this.failing = true;
      return false;
    }
  }

  private async onAgi(sess: AgiSession): Promise<void> {
    const log = this.peers.log;
    if (sess.script !== 'register') {
      log.warn('agi: unknown script', { session: sess.id, script: sess.script.slice(0, 64) });
      await sess.verbose(`aps: no FastAGI script "${sess.script.slice(0, 64)}"; the script is register`).catch(() => undefined);
      return;
    }
    const [pin = '', extension = '', macArg = ''] = sess.args;
    const macText = macArg || sess.params.mac || '';
    const mac = macText ? parseMac(macText) : null;
    const channel = sess.env.agi_channel ?? '';
    const accounts = macText ? [] : [endpointOf(channel), sess.env.agi_callerid].filter((x): x is string => !!x && x !== 'unknown');
    let contact: { host: string; port: number } | undefined;
    if (/^PJSIP\//i.test(channel) && !sess.hungUp) {
      contact = parseSipAddress(await sess.getVariable('CHANNEL(pjsip,remote_addr)').catch(() => undefined)) ?? undefined;
    }
    const out = await this.register({ mac: mac ?? undefined, account: accounts, pin, extension, via: 'agi', ip: sess.remote.address, contact });
    try {
      await sess.setVariable('APS_RESULT', out.result);
      await sess.verbose(`aps: PIN registration ${out.result}${out.result === 'OK' ? `: extension ${out.extension} of ${out.tenant}` : ''}`, 3);
    } catch (e) {
      log.debug('agi: the caller left before the result', { session: sess.id, result: out.result, err: describeError(e) });
    }
  }
}

/** `PJSIP/unprov-805ec0123456-0000002a` → `unprov-805ec0123456` (the channel name is <tech>/<endpoint>-<sequence>). */
export function endpointOf(channel: string): string | undefined {
  const m = /^[A-Za-z0-9]+\/(.+)-[0-9a-fA-F]{8}$/.exec(channel);
  return m?.[1];
}

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.') || host === 'localhost';
}

