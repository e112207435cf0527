/**
 * apsd with the built-in DHCP server, for the tests and the DHCP benchmark: the same App the
 * daemon runs (src/daemon.ts), plus the DHCP service when app.ts does not register it itself.
 * Same flags as apsd: --config DIR [--vendors DIR] [--http-listen H:P] [--tftp-listen H:P].
 * Prints the "apsd ready" line; SIGTERM/SIGINT stop it (exit 0), SIGHUP reloads.
 *
 *   node dist/test/support/dhcp-server-runner.js --config DIR ...     (after npm run build)
 *   node --import tsx test/support/dhcp-server-runner.ts --config DIR ...
 */
import { parseArgs } from 'node:util';
import { App } from '../../src/app.js';
import { parseHostPort, type HostPort } from '../../src/config/fields.js';
import { createDhcpServerService } from '../../src/dhcp/server.js';
import { isApsError } from '../../src/errors.js';
import { flushStderr } from '../../src/log.js';

const { values: args } = parseArgs({
  options: {
    config: { type: 'string' },
    vendors: { type: 'string' },
    'http-listen': { type: 'string' },
    'https-listen': { type: 'string' },
    'tftp-listen': { type: 'string' },
  },
  strict: true,
});

function listen(v: string | undefined): HostPort[] | undefined {
  if (v === undefined) return undefined;
  if (v === '') return [];
  return v.split(',').map((x) => {
    const hp = parseHostPort(x.trim());
    if (!hp) throw new Error(`"${x}" is not host:port`);
    return hp;
  });
}

function fail(e: unknown): never {
  process.stderr.write(`level=error msg="cannot start" err=${JSON.stringify(isApsError(e) ? e.describe() : (e as Error).message)}\n`);
  flushStderr();
  process.exit(1);
}

let app: App;
try {
  app = new App({
    configDir: args.config ?? null,
    vendorsDir: args.vendors,
    httpListen: listen(args['http-listen']),
    httpsListen: listen(args['https-listen']),
    tftpListen: listen(args['tftp-listen']),
  });
  if (!app.services.some((s) => s.name === 'dhcp-server')) {
    const svc = createDhcpServerService(app);
    if (svc) app.services.push(svc);
  }
} catch (e) {
  fail(e);
}
app.start().then(serve, (e) => {
  app.store.close();
  fail(e);
});

function serve(): void {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    app.stop(0).then(
      () => {
        flushStderr();
        process.exit(0);
      },
      (e) => fail(e),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => app.reload());
}
