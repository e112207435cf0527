/**
 * apsctl pin hash | pin register | pin unlock, pbx accounts | pbx dialplan, extension list,
 * device resync.
 *
 * `pin register` runs the PIN workflow in this process (apsd sees the change at its next
 * request: it reads the database per request) and sends the resync itself, waiting for the
 * phone's answer (at most Timer F, 32 s) unless --no-resync. `device resync` likewise sends
 * the NOTIFY (or the AMI action) from this process; it asks nothing of apsd.
 */
import { ApsError } from '../../errors.js';
import { createLogger, fileWriter, type Logger } from '../../log.js';
import { macColon, requireMac, type Mac } from '../../mac.js';
import { asteriskDialplan } from '../../pin/dialplan.js';
import { pjsipAccounts } from '../../pin/accounts.js';
import { readPjsipConf } from '../../config/pjsip.js';
import { listExtensions } from '../../pin/extensions.js';
import { pjsipExtensions, type SkippedEndpoint } from '../../config/extensions.js';
import { hashPin } from '../../pin/pinhash.js';
import { resync, type ResyncOutcome } from '../../pin/resync.js';
import { register, type PinResult } from '../../pin/workflow.js';
import { weakPin } from '../../config/settings.js';
import { parseHostPort } from '../../config/fields.js';
import { pinStore } from '../../store/pin.js';
import { needDevice, openStore, out, usage, type CliCommand, type Ctx } from '../context.js';
import { table } from '../table.js';

export const EXIT_CODES: Record<PinResult, number> = { OK: 0, BADPIN: 10, LOCKED: 11, NOEXT: 12, TAKEN: 13, UNKNOWN: 14 };

function cliLogger(ctx: Ctx, level: 'warn' | 'error' = 'warn'): Logger {
  const sec = ctx.config.settings.server.securityLog;
  return createLogger({ level, timestamps: false, writeSecurity: sec ? fileWriter(sec) : undefined });
}

/** The whole of stdin (a pipe or a file), at most 1 KB, without the final line break. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 1024) throw new ApsError('APS_ERR_USAGE', 'more than 1 KB on standard input: a PIN is a few digits');
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Reads a line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (err?: Error) => {
      stdin.removeListener('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (d: Buffer) => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') return finish(new ApsError('APS_ERR_USAGE', 'interrupted'));
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else if (text.length < 256) text += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

async function readPin(): Promise<string> {
  if (!process.stdin.isTTY) return readStdin();
  const a = await promptHidden('PIN: ');
  const b = await promptHidden('again: ');
  if (a !== b) throw new ApsError('APS_ERR_PIN', 'the two PINs differ');
  return a;
}

function describeResync(mac: Mac, o: ResyncOutcome): string {
  if (o.method === 'none') return `resync ${macColon(mac)}: [resync] method = none: nothing sent; the phone picks the change up at its next periodic check`;
  const what = `${o.method === 'ami' ? 'PJSIPNotify' : 'NOTIFY'} ${o.event ?? ''}${o.target ? ` to ${o.target}` : ''}`;
  return `resync ${macColon(mac)}: ${what}: ${o.ok ? `answered${o.status ? ` ${o.status}` : ''}` : `failed: ${o.reason ?? 'no answer'}`}`;
}

function skippedEndpoints(ctx: Ctx): SkippedEndpoint[] {
  const file = ctx.config.settings.pbx.pjsipConf;
  return file ? pjsipExtensions(readPjsipConf(file), ctx.config).skipped : [];
}

export const commands: CliCommand[] = [
  {
    name: 'pin hash',
    usage: 'pin hash                  read a PIN (from the terminal without echo, or from standard input)\n                          and print the line [provisioning] pin_hash = scrypt$… for aps.ini',
    async run(ctx, pos) {
      if (pos.length) usage('pin hash takes no arguments: it reads the PIN from the terminal or standard input');
      const pin = await readPin();
      const weak = weakPin(pin);
      if (weak) throw new ApsError('APS_ERR_PIN', `refused: ${weak}`, { expected: 'at least 6 digits, not a repetition or a sequence' });
      const h = await hashPin(pin);
      out(ctx.json ? JSON.stringify({ pin_hash: h }) + '\n' : `pin_hash = ${h}\n`);
    },
  },
  {
    name: 'pin register',
    usage:
      'pin register --mac M | --account A --pin P|- --extension E [--no-resync]\n' +
      '                          register a phone as extension E with the provisioning PIN (for System()\n' +
      '                          and scripts; --pin - reads it from standard input, unseen by ps). Prints\n' +
      '                          the result; exit 0 OK, 10 BADPIN, 11 LOCKED, 12 NOEXT, 13 TAKEN, 14 UNKNOWN',
    options: { mac: { type: 'string' }, account: { type: 'string' }, pin: { type: 'string' }, 'no-resync': { type: 'boolean' } },
    async run(ctx, pos, o) {
      if (pos.length) usage('pin register takes options only');
      const macText = o.mac as string | undefined;
      const account = o.account as string | undefined;
      if ((macText === undefined) === (account === undefined)) usage('pin register needs exactly one of --mac M and --account A');
      if (o.pin === undefined) usage('pin register needs --pin P (or --pin - to read it from standard input)');
      if (o.extension === undefined) usage('pin register needs --extension E');
      const mac = macText !== undefined ? requireMac(macText) : undefined;
      const pin = o.pin === '-' ? await readStdin() : (o.pin as string);
      const store = openStore(ctx);
      const log = cliLogger(ctx, 'error');
      const r = await register(
        { store, config: () => ctx.config, log, resync: o['no-resync'] ? undefined : (m, ro) => resync({ store, registry: ctx.registry, config: () => ctx.config, log }, m, ro) },
        { mac, account, pin, extension: o.extension as string, via: 'cli' },
      );
      const rs = r.resync ? await r.resync : null;
      if (ctx.json) {
        out(JSON.stringify({ result: r.result, mac: r.result === 'OK' ? r.mac : undefined, extension: r.result === 'OK' ? r.extension : undefined, tenant: r.result === 'OK' ? r.tenant : undefined, lockedUntil: r.lockedUntil ? new Date(r.lockedUntil).toISOString() : undefined, resync: rs ?? undefined }) + '\n');
      } else {
        out(`${r.result}\n`);
        if (r.result === 'OK') process.stderr.write(`${macColon(r.mac!)} is extension ${r.extension} of tenant ${r.tenant}\n`);
        if (r.result === 'LOCKED' && r.lockedUntil) process.stderr.write(`locked until ${new Date(r.lockedUntil).toISOString()} (apsctl pin unlock lifts it)\n`);
        if (rs) process.stderr.write(describeResync(r.mac!, rs) + '\n');
      }
      return EXIT_CODES[r.result];
    },
  },
  {
    name: 'pin unlock',
    usage: 'pin unlock <mac>          lift a PIN lockout and forget the device\'s wrong PINs',
    run(ctx, pos) {
      if (pos.length !== 1) usage('pin unlock takes one MAC');
      const mac = requireMac(pos[0]);
      const store = openStore(ctx);
      needDevice(store, mac);
      const had = pinStore(store).unlock(mac);
      if (had) store.event('pin.unlocked', mac, 'by=cli');
      out(ctx.json ? JSON.stringify({ mac, unlocked: had }) + '\n' : had ? `unlocked ${macColon(mac)}\n` : `${macColon(mac)} had no wrong PINs on record\n`);
    },
  },
  {
    name: 'pbx accounts',
    usage: 'pbx accounts --format pjsip\n                          one PJSIP endpoint/auth/aor per unprovisioned phone (its own secret), for\n                          pjsip.conf; [pbx] accounts_file keeps such a file up to date by itself',
    options: { format: { type: 'string' } },
    run(ctx, pos, o) {
      if (pos.length) usage('pbx accounts takes no positional arguments');
      if ((o.format ?? 'pjsip') !== 'pjsip') usage(`--format ${o.format}: expected pjsip`);
      const s = ctx.config.settings;
      const pins = pinStore(openStore(ctx));
      pins.ensureUnprovAccounts(s.provisioning.unprovPrefix);
      out(pjsipAccounts(pins.unprovAccounts(), { context: s.pbx.unprovContext, sipServer: s.provisioning.sipServer }));
    },
  },
  {
    name: 'pbx dialplan',
    usage: 'pbx dialplan --pbx asterisk [--agi HOST:PORT]\n                          the extensions.conf context for unprovisioned phones: PIN, extension,\n                          FastAGI register, a result prompt ([pin] agi_listen unless --agi)',
    options: { pbx: { type: 'string' }, agi: { type: 'string' } },
    run(ctx, pos, o) {
      if (pos.length) usage('pbx dialplan takes no positional arguments');
      if ((o.pbx ?? 'asterisk') !== 'asterisk') usage(`--pbx ${o.pbx}: expected asterisk`);
      const s = ctx.config.settings;
      let hp = o.agi !== undefined ? parseHostPort(o.agi as string) : s.pinSettings.agiListen[0];
      if (o.agi !== undefined && !hp) usage(`--agi ${o.agi}: expected host:port`);
      if (!hp) throw new ApsError('APS_ERR_CONFIG', 'FastAGI is off ([pin] agi_listen is empty): the dialplan would call nothing', { key: '[pin] agi_listen', expected: 'host:port, e.g. 127.0.0.1:4573, or --agi HOST:PORT' });
      if (hp.host === '0.0.0.0' || hp.host === '::') {
        // a wildcard is no address to call: the PBX reaches apsd where the phones do
        hp = { host: new URL(s.provisioning.url).hostname.replace(/^\[|\]$/g, ''), port: hp.port };
      }
      out(asteriskDialplan({ context: s.pbx.unprovContext, agiHost: hp.host, agiPort: hp.port }));
    },
  },
  {
    name: 'extension list',
    usage: 'extension list [--free] [--tenant T]\n                          extensions (extensions.d and [pbx] pjsip_conf) and the phones holding\n                          them; pjsip.conf endpoints that cannot be assigned, with the reason',
    options: { free: { type: 'boolean' } },
    run(ctx, pos, o) {
      if (pos.length) usage('extension list takes no positional arguments');
      const tenant = o.tenant as string | undefined;
      let rows = listExtensions(ctx.config, openStore(ctx), o.free ? [] : skippedEndpoints(ctx));
      if (o.free) rows = rows.filter((r) => r.free && !r.unusable);
      if (tenant) rows = rows.filter((r) => r.tenant === tenant || r.unusable);
      if (ctx.json) {
        out(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      if (!rows.length) {
        out(o.free ? 'no free extensions\n' : 'no extensions (extensions.d/*.ini or [pbx] pjsip_conf)\n');
        return;
      }
      out(
        table(
          ['TENANT', 'EXTENSION', 'NAME', 'AUTH USER', 'HELD BY', 'SOURCE'],
          rows.map((r) => [
            r.tenant,
            r.number,
            r.name || '-',
            r.authUser || '-',
            r.unusable ? `cannot be assigned: ${r.unusable}` : r.holders.length ? r.holders.map((h) => `${macColon(h.mac as Mac)} line ${h.line}`).join(', ') : 'free',
            r.source,
          ]),
        ),
      );
    },
  },
  {
    name: 'device resync',
    usage: 'device resync <mac> [--reboot]\n                          tell the phone to fetch its files again ([resync] method: SIP NOTIFY with\n                          the vendor\'s event, or PJSIPNotify over AMI), sent from this process',
    options: { reboot: { type: 'boolean' } },
    async run(ctx, pos, o) {
      if (pos.length !== 1) usage('device resync takes one MAC');
      const mac = requireMac(pos[0]);
      const store = openStore(ctx);
      needDevice(store, mac);
      const r = await resync({ store, registry: ctx.registry, config: () => ctx.config, log: cliLogger(ctx, 'error') }, mac, { reboot: o.reboot === true });
      if (ctx.json) out(JSON.stringify(r) + '\n');
      else out(describeResync(mac, r) + '\n');
      return r.ok || r.method === 'none' ? 0 : 1;
    },
  },
];
