/**
 * What every apsctl command gets: the loaded configuration and vendors, the state database
 * (opened on first use), output helpers, and the shape of a command module.
 * Command modules live in src/cli/commands/*.ts and export `commands: CliCommand[]`;
 * apsctl loads every module in that folder, so an area adds its commands without touching
 * apsctl.ts.
 */
import { readStatus } from '../servers/status-file.js';
import type { ParseArgsConfig } from 'node:util';
import type { Config } from '../config/index.js';
import { ApsError } from '../errors.js';
import { macColon, type Mac } from '../mac.js';
import { Store, type DeviceRow } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';

export interface Ctx {
  config: Config;
  registry: VendorRegistry;
  store?: Store;
  json: boolean;
}

export type Opts = Record<string, string | boolean | undefined>;

export interface CliCommand {
  /** one or two words: "dhcp classes", "import" */
  name: string;
  /** usage lines shown in apsctl --help (without the leading "apsctl ") */
  usage: string;
  /** extra options this command takes (merged into apsctl's parser) */
  options?: NonNullable<ParseArgsConfig['options']>;
  /** exit status (0 success) */
  run(ctx: Ctx, positionals: string[], opts: Opts): number | void | Promise<number | void>;
}

export function out(s: string): void {
  process.stdout.write(s);
}

export function usage(msg: string): never {
  throw new ApsError('APS_ERR_USAGE', msg, { expected: 'see apsctl --help' });
}

export function openStore(ctx: Ctx): Store {
  if (!ctx.store) ctx.store = Store.open(ctx.config.settings.server.stateDir);
  return ctx.store;
}

export function needDevice(store: Store, mac: Mac): DeviceRow {
  const d = store.device(mac);
  if (!d) throw new ApsError('APS_ERR_NOT_FOUND', `no device ${macColon(mac)}`, { expected: 'a MAC from apsctl device list' });
  return d;
}

/**
 * Changes to /etc/aps reach the phones once apsd has reloaded: when apsd (alive) runs another
 * configuration than the files apsctl just read (its status file says which), say the one
 * command that makes it so.
 */
export function warnIfStale(ctx: Ctx): void {
  const st = readStatus(ctx.config.settings.server.stateDir);
  if (!st?.configFingerprint || st.configFingerprint === ctx.config.fingerprint || !alive(st.pid)) return;
  process.stderr.write(
    `note: apsd (pid ${st.pid}) runs the configuration it loaded at ${st.configLoadedAt}, not the files as they are now:\n` +
      `      run "systemctl reload apsd" (or kill -HUP ${st.pid}) so that phones get this change at their next fetch\n`,
  );
}

/** Whether a process of that pid exists (EPERM: it does, under another user). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
