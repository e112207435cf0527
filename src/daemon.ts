/**
 * apsd: the provisioning daemon. Lifecycle: load and validate everything (fail fast, exit 1
 * with file, line and key), bind every socket, then tell systemd READY=1; ping the watchdog;
 * SIGHUP reloads the ini files (keeping the running configuration if the new one is
 * invalid); SIGTERM/SIGINT let transfers in flight finish and exit 0.
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { App } from './app.js';
import { configDirFrom } from './config/index.js';
import { parseHostPort, type HostPort } from './config/fields.js';
import { isApsError, describeError } from './errors.js';
import { createLogger } from './log.js';
import { statusLine, writeStatus } from './servers/status-file.js';

interface SdNotify {
  ready(): void;
  stopping(pid?: number): void;
  watchdog(): void;
  watchdogInterval(): number;
  sendStatus(s: string): void;
}

function loadSdNotify(): SdNotify {
  const noop: SdNotify = { ready() {}, stopping() {}, watchdog() {}, watchdogInterval: () => 0, sendStatus() {} };
  if (!process.env.NOTIFY_SOCKET) return noop;
  try {
    return createRequire(import.meta.url)('sd-notify') as SdNotify;
  } catch (e) {
    process.stderr.write(`level=warn msg="sd-notify is not available: no READY/WATCHDOG to systemd" err=${JSON.stringify((e as Error).message)}\n`);
    return noop;
  }
}

const USAGE = `usage: apsd [--config DIR] [--vendors DIR] [--check]
  --config DIR   configuration directory (default: $APS_CONFIG, else /etc/aps if present, else built-in defaults)
  --vendors DIR  vendor data directory (default: the vendors/ folder of this installation)
  --check        validate configuration and vendor data, print warnings, and exit (0 = valid)
  --http-listen, --https-listen, --tftp-listen host:port  override the ini listen addresses (for tests and one-off runs)`;

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        config: { type: 'string' },
        vendors: { type: 'string' },
        check: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        'http-listen': { type: 'string' },
        'https-listen': { type: 'string' },
        'tftp-listen': { type: 'string' },
      },
      strict: true,
    }).values;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const boot = createLogger({ level: 'info' });
  const { dir } = configDirFrom(args.config);
  const listenOverride = (v: string | undefined): HostPort[] | undefined => {
    if (v === undefined) return undefined;
    if (v === '') return [];
    return v.split(',').map((x) => {
      const hp = parseHostPort(x.trim());
      if (!hp) throw new Error(`"${x}" is not host:port`);
      return hp;
    });
  };
  let app: App;
  try {
    app = new App({
      configDir: dir,
      vendorsDir: args.vendors,
      httpListen: listenOverride(args['http-listen']),
      httpsListen: listenOverride(args['https-listen']),
      tftpListen: listenOverride(args['tftp-listen']),
    });
  } catch (e) {
    boot.error('cannot start', { err: describeError(e) });
    return 1;
  }
  if (args.check) {
    app.store.close();
    process.stdout.write(`configuration ${dir ?? '(built-in defaults)'} is valid\n`);
    return 0;
  }
  const sd = loadSdNotify();
  try {
    await app.start();
  } catch (e) {
    app.log.error('cannot start', { err: describeError(e) });
    app.store.close();
    return 1;
  }
  sd.ready();
  sd.sendStatus(`serving ${app.store.countDevices()} devices`);
  // the status file and systemd's STATUS line follow every change of a service's state
  const started = new Date().toISOString();
  let lastStatus = '';
  let statusWriteFailed = false;
  const publishStatus = () => {
    const st = app.status();
    const now = JSON.stringify(st);
    if (now === lastStatus) return;
    lastStatus = now;
    if (st.services.length) sd.sendStatus(statusLine(st));
    try {
      writeStatus(app.stateDir, { pid: process.pid, started, updated: new Date().toISOString(), config: dir ?? '(built-in defaults)', ...st });
      statusWriteFailed = false;
    } catch (e) {
      lastStatus = '';
      if (!statusWriteFailed) app.log.warn('cannot write the status file (apsctl status shows an older state)', { err: describeError(e) });
      statusWriteFailed = true;
    }
  };
  publishStatus();
  const statusTimer = setInterval(publishStatus, 1000);
  statusTimer.unref();
  const wd = sd.watchdogInterval();
  let wdTimer: NodeJS.Timeout | undefined;
  if (wd > 0) {
    wdTimer = setInterval(() => sd.watchdog(), Math.max(500, Math.floor(wd / 2)));
    wdTimer.unref();
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    process.on('SIGHUP', () => {
      if (stopping) return;
      app.log.info('SIGHUP: reloading configuration');
      const r = app.reload();
      sd.sendStatus(r.ok ? `configuration generation ${app.generation}` : `reload refused: ${r.error}`);
      // apsctl compares the files with what apsd runs: say at once that it runs the new ones
      if (r.ok) publishStatus();
    });
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      sd.stopping();
      app.log.info(`${sig}: finishing transfers in flight, then exiting`);
      if (wdTimer) clearInterval(wdTimer);
      clearInterval(statusTimer);
      app.stop(5000).then(
        () => {
          app.log.info('apsd stopped');
          resolve(0);
        },
        (e) => {
          app.log.error('unclean stop', { err: describeError(e) });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

process.on('uncaughtException', (e) => {
  process.stderr.write(`level=error msg="uncaught exception" err=${JSON.stringify(e.stack ?? e.message)}\n`);
  process.exit(70);
});

main().then((code) => process.exit(code));
