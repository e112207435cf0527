/**
 * apsd with DHCP capture, for the discovery tests and the discovery benchmark, until the
 * capture service is registered in src/app.ts (then this adds nothing and behaves like apsd).
 * Same flags, same log lines ("apsd ready", "cannot start" err=…), same exit codes (0 after
 * SIGTERM/SIGINT, 1 when start-up fails), SIGHUP reloads.
 *
 *   node dist/test/support/capture-runner.js --config DIR [--http-listen H:P] [--tftp-listen H:P]
 */
import { parseArgs } from 'node:util';
import { App } from '../../src/app.js';
import { parseHostPort, type HostPort } from '../../src/config/fields.js';
import { configDirFrom } from '../../src/config/index.js';
import { createCaptureService } from '../../src/discovery/capture.js';
import { isApsError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';

async function main(): Promise<number> {
  const args = parseArgs({
    options: { config: { type: 'string' }, vendors: { type: 'string' }, 'http-listen': { type: 'string' }, 'tftp-listen': { type: 'string' } },
    strict: true,
  }).values;
  const listen = (v: string | undefined): HostPort[] | undefined => (v === undefined ? undefined : v === '' ? [] : v.split(',').map((x) => parseHostPort(x.trim())!));
  const boot = createLogger({ level: 'info' });
  let app: App;
  try {
    app = new App({ configDir: configDirFrom(args.config).dir, vendorsDir: args.vendors, httpListen: listen(args['http-listen']), tftpListen: listen(args['tftp-listen']) });
    if (!app.services.some((s) => s.name === 'dhcp-capture')) {
      const svc = createCaptureService(app);
      if (svc) app.services.push(svc);
    }
  } catch (e) {
    boot.error('cannot start', { err: isApsError(e) ? e.describe() : (e as Error).message });
    return 1;
  }
  try {
    await app.start();
  } catch (e) {
    app.log.error('cannot start', { err: isApsError(e) ? e.describe() : (e as Error).message });
    app.store.close();
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    process.on('SIGHUP', () => {
      if (!stopping) app.reload();
    });
    const stop = () => {
      if (stopping) return;
      stopping = true;
      app.stop(500).then(
        () => {
          app.log.info('apsd stopped');
          resolve(0);
        },
        (e) => {
          app.log.error('unclean stop', { err: (e as Error).message });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

main().then((code) => process.exit(code));
