/**
 * PIN registration end to end, as a site runs it: apsd with FastAGI, the accounts file and
 * the HTTP API; an Asterisk that calls FastAGI exactly as res_agi does; curl fetching the
 * phone's config with digest; a phone listening for SIP NOTIFY on UDP 127.0.0.2:5060; apsctl
 * for the CLI adapter; a fake Asterisk manager for resync over AMI.
 *
 * apsd is the built daemon when it runs the PIN service (its "apsd ready" line names agi=);
 * until the service is wired into src/app.ts, the same App runs in this process with the
 * service added, which is what apsd will do.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { memoryLogger } from '../src/log.js';
import type { Mac } from '../src/mac.js';
import { parsePjsip } from '../src/config/pjsip.js';
import { hashPin } from '../src/pin/pinhash.js';
import { pinApi, PIN_API_PATH } from '../src/servers/api.js';
import { getHeader } from '../src/wire/sip.js';
import { Store } from '../src/store/index.js';
import { APSCTL, ctlAsync, startDaemon, type Daemon } from './support/daemon.js';
import { agiCall, fakeManager, udpPhone, type UdpPhone } from './support/pin-peers.js';

const PIN = '582914';
const TOKEN = 'tok-3f9c2a7b1e5d8c4a6b0f';
const CREDS = 'phones:Prov;Secret#1';
const A = '805ec0000101' as Mac; // Yealink T46S, unprovisioned, template yealink-full (it has an admin and an LDAP password)
const B = '805ec0000102' as Mac; // Yealink, provisioned as acme/102
const C = '000413000103' as Mac; // Snom D735, unprovisioned
const D = '805ec0000104' as Mac; // unprovisioned, for the failures
const F = '805ec0000106' as Mac; // unprovisioned, for an extension of the PBX's pjsip.conf

/** The PBX's pjsip.conf: 200 can be assigned, 209 keeps only an md5 hash. */
const PJSIP_CONF = `[phone](!)
type = endpoint
context = from-internal
allow = ulaw

[200](phone)
auth = 200
aors = 200
callerid = "Gina PBX" <200>
[200]
type = auth
auth_type = userpass
username = gina200
password = g1na\\;pbx\\;200
[200]
type = aor
max_contacts = 1

[209](phone)
auth = 209
[209]
type = auth
auth_type = md5
username = 209
md5_cred = 0b5c4d2f4e3bd7e2ba1c45f0aa4e8f1c
`;
const PJSIP_201 = `
[201](phone)
auth = 201
[201]
type = auth
username = 201
password = h4nk-201-pbx
`;

interface Running {
  http: string;
  agiPort: number;
  configDir: string;
  stateDir: string;
  accountsFile: string;
  logs: () => string[];
  ctl: (...args: string[]) => { status: number | null; stdout: string; stderr: string };
  ctlIn: (input: string, ...args: string[]) => { status: number | null; stdout: string; stderr: string };
  /** SIGHUP (apsd) or App.reload (in process); resolves once the new configuration runs */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

let r: Running;
let phone: UdpPhone; // the phones' default SIP port, on a loopback address of their own
let dir: string;

function ctlWith(configDir: string, input: string | undefined, args: string[]) {
  const x = spawnSync(process.execPath, [APSCTL, '--config', configDir, ...args], { encoding: 'utf8', timeout: 40_000, input });
  return { status: x.status, stdout: x.stdout, stderr: x.stderr };
}

function setup(configDir: string, stateDir: string, pinHash: string, accountsFile: string): void {
  const ini = path.join(configDir, 'aps.ini');
  let t = fs.readFileSync(ini, 'utf8');
  t = t.replace('[provisioning]\n', `[provisioning]\npin_hash = ${pinHash}\n`);
  const pjsipConf = path.join(path.dirname(accountsFile), 'pjsip.conf');
  fs.writeFileSync(pjsipConf, PJSIP_CONF);
  t += `\n[pin]\nagi_listen = 127.0.0.1:0\n\n[pbx]\naccounts_file = ${accountsFile}\npjsip_conf = ${pjsipConf}\n\n[api]\ntoken = ${TOKEN}\n`;
  fs.writeFileSync(ini, t);
  const store = Store.open(stateDir);
  store.addDevice({ mac: A, tenant: 'default', vendor: 'yealink', model: 'T46S', template: 'yealink-full', state: 'unprovisioned', source: 'dhcp' });
  store.addDevice({ mac: B, tenant: 'acme', vendor: 'yealink', model: 'T46S', template: 'yealink-full', state: 'provisioned' });
  store.setLine({ mac: B, idx: 1, extension: '102', label: '', cid_source: 'from', local_port: '', srtp: false });
  store.addDevice({ mac: C, tenant: 'default', vendor: 'snom', model: 'D735', template: null, state: 'unprovisioned', source: 'dhcp' });
  store.addDevice({ mac: D, tenant: 'default', vendor: 'yealink', model: 'T46S', template: null, state: 'unprovisioned', source: 'dhcp' });
  store.addDevice({ mac: F, tenant: 'default', vendor: 'yealink', model: 'T46S', template: null, state: 'unprovisioned', source: 'dhcp' });
  store.close();
  fs.appendFileSync(path.join(configDir, 'extensions.d', 'acme.ini'), '\n[104]\ntenant = acme\nsecret = dave-s3cret-104\nname = Dave\n\n[105]\ntenant = acme\nsecret = erin-s3cret-105\nname = Erin\n');
}

/** The built apsd with the PIN service (FastAGI, accounts file, API). */
async function start(): Promise<Running> {
  const pinHash = await hashPin(PIN);
  let accountsFile = '';
  let d: Daemon | null = await startDaemon({
    setup: (configDir, stateDir) => {
      accountsFile = path.join(path.dirname(configDir), 'asterisk', 'aps-unprov.conf');
      fs.mkdirSync(path.dirname(accountsFile));
      setup(configDir, stateDir, pinHash, accountsFile);
    },
  });
  const ready = await d.waitLog(/apsd ready/);
  const agi = /agi=127\.0\.0\.1:(\d+)/.exec(ready);
  if (!agi) throw new Error(`apsd did not start FastAGI: ${ready}`);
  {
    const daemon = d;
    return {
      http: d.http,
      agiPort: Number(agi[1]),
      configDir: d.configDir,
      stateDir: d.stateDir,
      accountsFile,
      logs: () => daemon.logs,
      ctl: (...a) => ctlWith(daemon.configDir, undefined, a),
      ctlIn: (input, ...a) => ctlWith(daemon.configDir, input, a),
      async reload() {
        const n = daemon.logs.filter((l) => l.includes('configuration reloaded')).length;
        daemon.proc.kill('SIGHUP');
        const deadline = Date.now() + 10_000;
        while (daemon.logs.filter((l) => l.includes('configuration reloaded')).length === n) {
          if (Date.now() > deadline) throw new Error('apsd did not reload');
          await new Promise((res) => setTimeout(res, 20));
        }
      },
      async stop() {
        await daemon.stop();
        daemon.cleanup();
      },
    };
  }
}

/** A UDP socket on 127.0.0.N:5060 (the default SIP port on an address no one else uses). */
async function phoneOn5060(): Promise<{ phone: UdpPhone; ip: string }> {
  for (let n = 2; n < 40; n++) {
    const ip = `127.0.0.${n}`;
    const probe = dgram.createSocket('udp4');
    const free = await new Promise<boolean>((res) => {
      probe.once('error', () => res(false));
      probe.bind(5060, ip, () => res(true));
    });
    await new Promise<void>((res) => probe.close(() => res()));
    if (free) return { phone: await udpPhone({ bind: ip, port: 5060 }), ip };
  }
  throw new Error('no loopback address with UDP 5060 free');
}

let phoneIp = '';
const unprovSecrets: string[] = [];

test.before(async () => {
  r = await start();
  dir = path.dirname(r.configDir);
  const p = await phoneOn5060();
  phone = p.phone;
  phoneIp = p.ip;
});

test.after(async () => {
  await phone?.close();
  await r?.stop();
});

const base = () => `http://${r.http}`;
const macFile = (mac: string) => `${base()}/provisioning/${mac}.cfg`;

function accountsOf(text: string) {
  const conf = parsePjsip(text, r.accountsFile);
  return new Map(conf.endpoints().map((e) => [e.name, e]));
}

/** Waits until the accounts file satisfies cond; bounded. */
async function accountsFileWhere(cond: (names: Map<string, unknown>) => boolean, ms = 12_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = fs.existsSync(r.accountsFile) ? fs.readFileSync(r.accountsFile, 'utf8') : '';
    if (text && cond(accountsOf(text))) return text;
    if (Date.now() > deadline) throw new Error(`the accounts file never got there:\n${text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

// ---------------------------------------------------------------- the unprovisioned stage

test('apsd writes the accounts file at start: one endpoint per unprovisioned phone, in the unprov context, parsing as pjsip.conf', async () => {
  const text = await accountsFileWhere((m) => m.size === 4);
  const eps = accountsOf(text);
  assert.equal([...eps.keys()].sort(), [`unprov-${C}`, `unprov-${A}`, `unprov-${D}`, `unprov-${F}`].sort());
  for (const e of eps.values()) {
    const ep = e as { context: string; credential: string; authUser: string; name: string; password: string };
    assert.is(ep.context, 'aps-unprov');
    assert.is(ep.credential, 'password');
    assert.is(ep.authUser, ep.name);
  }
  unprovSecrets.push(...[...eps.values()].map((e) => (e as { password: string }).password));
  assert.is(new Set(unprovSecrets).size, 4, 'each phone has its own secret');
  assert.is(fs.statSync(r.accountsFile).mode & 0o007, 0, 'the file holds secrets: no access for others');
  const printed = r.ctl('pbx', 'accounts', '--format', 'pjsip');
  assert.is(printed.status, 0, printed.stderr);
  assert.is(printed.stdout, text, 'apsctl pbx accounts prints what the file holds');
});

test('an unprovisioned phone\'s config registers as its own unprov account, shows UNPROV, and carries none of the template\'s secrets', async () => {
  const secret = (accountsOf(fs.readFileSync(r.accountsFile, 'utf8')).get(`unprov-${A}`) as { password: string }).password;
  const c = await curl(['--digest', '-u', CREDS, macFile(A)]);
  assert.is(c.status, 200, c.stderr);
  const body = c.body;
  assert.match(body, `account.1.user_name = unprov-${A}`);
  assert.match(body, `account.1.auth_name = unprov-${A}`);
  assert.match(body, `account.1.password = ${secret}`);
  assert.match(body, 'account.1.label = UNPROV');
  assert.match(body, 'account.1.display_name = UNPROV');
  assert.match(body, 'account.1.sip_server.1.address = pbx.example.net', '[provisioning] sip_server (1.1.1.1, mapped to its FQDN)');
  assert.not.match(body, /account\.2\./);
  for (const s of ['Adm1n', 'Ld4p', 'linekey.', 'expansion_module.', 'S3cr3t', 'bobsecret']) assert.not.ok(body.includes(s), `${s} is in the unprovisioned config`);
});

test('the accounts file is rewritten atomically when a device appears: every read sees a whole file', async () => {
  const before = fs.statSync(r.accountsFile).ino;
  const reads: string[] = [];
  let stop = false;
  const reader = (async () => {
    while (!stop) {
      try {
        reads.push(fs.readFileSync(r.accountsFile, 'utf8'));
      } catch (e) {
        reads.push(`error ${(e as NodeJS.ErrnoException).code}`);
      }
      await new Promise((res) => setTimeout(res, 2));
    }
  })();
  const store = Store.open(r.stateDir);
  store.addDevice({ mac: '805ec0000105' as Mac, tenant: 'default', vendor: 'yealink', model: 'T46S', template: null, state: 'unprovisioned', source: 'dhcp' });
  store.close();
  const t0 = Date.now();
  await accountsFileWhere((m) => m.has('unprov-805ec0000105'));
  const ms = Date.now() - t0;
  stop = true;
  await reader;
  assert.ok(ms < 7000, `seen after ${ms} ms (poll every 5 s)`);
  assert.is.not(fs.statSync(r.accountsFile).ino, before, 'replaced by rename, not rewritten in place');
  for (const t of reads) {
    assert.ok(t.endsWith('\n') && !t.startsWith('error'), 'a whole file');
    const n = Number(/; (\d+) accounts?/.exec(t)?.[1]);
    assert.is(accountsOf(t).size, n, 'as many endpoints as the header says');
  }
  // the last write names as many accounts as the file holds: every unprovisioned device's
  const last = fs.readFileSync(r.accountsFile, 'utf8');
  const written = r.logs().filter((l) => /msg="pbx accounts file written"/.test(l)).pop() ?? '';
  assert.match(written, new RegExp(`accounts=${accountsOf(last).size}(\\s|$)`));
});

// ---------------------------------------------------------------- FastAGI

test('FastAGI register with the right PIN and a free extension: APS_RESULT OK, the config carries the extension, the phone gets NOTIFY check-sync', async () => {
  const before = phone.requests.length;
  const call = await agiCall(r.agiPort, { endpoint: `unprov-${A}`, args: [PIN, '101'], vars: { 'CHANNEL(pjsip,remote_addr)': `${phoneIp}:5060` } });
  assert.is(call.vars.get('APS_RESULT'), 'OK', call.commands.join('\n'));
  assert.ok(call.commands.includes('GET VARIABLE CHANNEL(pjsip,remote_addr)'));
  assert.ok(call.commands.includes('SET VARIABLE APS_RESULT "OK"'));
  const [n] = (await phone.waitFor(before + 1)).slice(before);
  assert.is(n.method, 'NOTIFY');
  assert.is(getHeader(n, 'Event'), 'check-sync');
  assert.is(n.uri, `sip:unprov-${A}@${phoneIp}:5060`);
  const c = await curl(['--digest', '-u', CREDS, macFile(A)]);
  assert.is(c.status, 200);
  assert.match(c.body, 'account.1.user_name = 101');
  assert.match(c.body, 'account.1.auth_name = acme101');
  assert.match(c.body, 'account.1.password = S3cr3t&<101>');
  assert.match(c.body, 'static.security.user_password = admin:Adm1n<&>Pass', 'provisioned: the template\'s settings apply again');
  const show = JSON.parse(r.ctl('device', 'show', A, '--json').stdout);
  assert.equal([show.state, show.tenant, show.lines[0].extension], ['provisioned', 'acme', '101']);
  await accountsFileWhere((m) => !m.has(`unprov-${A}`));
});

test('FastAGI: every failure result reaches the dialplan in APS_RESULT', async () => {
  const call = (endpoint: string, args: string[], callerid?: string) => agiCall(r.agiPort, { endpoint, args, callerid });
  assert.is((await call('101', [PIN, '103'])).vars.get('APS_RESULT'), 'UNKNOWN', 'an extension calling in is no unprovisioned phone');
  assert.is((await call(`unprov-${D}`, [PIN, '999'])).vars.get('APS_RESULT'), 'NOEXT');
  assert.is((await call(`unprov-${D}`, [PIN, '101'])).vars.get('APS_RESULT'), 'TAKEN', '101 is A\'s now');
  assert.is((await call(`unprov-${D}`, ['000001', '103'])).vars.get('APS_RESULT'), 'BADPIN');
  assert.is((await call(`unprov-${D}`, ['000002', '103'])).vars.get('APS_RESULT'), 'BADPIN');
  assert.is((await call(`unprov-${D}`, ['000003', '103'])).vars.get('APS_RESULT'), 'BADPIN');
  assert.is((await call(`unprov-${D}`, [PIN, '103'])).vars.get('APS_RESULT'), 'LOCKED');
  assert.is((await call('trunk', [PIN, '103'], 'unknown')).vars.get('APS_RESULT'), 'UNKNOWN');
  const byMac = await agiCall(r.agiPort, { endpoint: '101', args: [PIN, '103', '00:04:13:00:01:03'] });
  assert.is(byMac.vars.get('APS_RESULT'), 'OK', 'an explicit MAC argument names the device');
  const unlocked = r.ctl('pin', 'unlock', D);
  assert.is(unlocked.status, 0, unlocked.stderr);
  assert.match(unlocked.stdout, 'unlocked 80:5e:c0:00:01:04');
});

// ---------------------------------------------------------------- HTTP

function post(body: string, headers: Record<string, string> = {}, method = 'POST') {
  return new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
    const [host, port] = r.http.split(':');
    const rq = http.request({ host, port: Number(port), path: PIN_API_PATH, method, headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: b, headers: res.headers }));
    });
    rq.on('error', reject);
    rq.end(method === 'GET' ? undefined : body);
  });
}
const auth = { Authorization: `Bearer ${TOKEN}` };

test('HTTP: POST /api/v1/pin-register answers 200 with the result, for every result', async () => {
  const res = async (o: object) => {
    const x = await post(JSON.stringify(o), auth);
    assert.is(x.status, 200, x.body);
    return JSON.parse(x.body).result;
  };
  assert.is(await res({ mac: '80:5e:c0:99:99:99', pin: PIN, extension: '102' }), 'UNKNOWN');
  assert.is(await res({ mac: D, pin: PIN, extension: '4242' }), 'NOEXT');
  assert.is(await res({ mac: D, pin: PIN, extension: '101' }), 'TAKEN');
  assert.is(await res({ account: `unprov-${D}`, pin: '111111', extension: '102' }), 'BADPIN');
  assert.is(await res({ account: `unprov-${D}`, pin: '111112', extension: '102' }), 'BADPIN');
  assert.is(await res({ account: `unprov-${D}`, pin: '111113', extension: '102' }), 'BADPIN');
  assert.is(await res({ account: `unprov-${D}`, pin: PIN, extension: 102 }), 'LOCKED');
  assert.is(r.ctl('pin', 'unlock', D).status, 0);
  const ok = await post(JSON.stringify({ mac: D, pin: PIN, extension: 104 }), auth);
  assert.is(ok.status, 200);
  assert.equal(JSON.parse(ok.body), { result: 'OK', mac: D, extension: '104', tenant: 'acme' });
});

test('HTTP: no token or a wrong one is 401, another method 405, bad JSON 400, a body over 4 KB 413', async () => {
  const body = JSON.stringify({ mac: D, pin: PIN, extension: '103' });
  let x = await post(body);
  assert.is(x.status, 401);
  assert.match(String(x.headers['www-authenticate']), /^Bearer/);
  x = await post(body, { Authorization: `Bearer ${TOKEN}x` });
  assert.is(x.status, 401);
  x = await post(body, { Authorization: `Basic ${Buffer.from('a:' + TOKEN).toString('base64')}` });
  assert.is(x.status, 401);
  x = await post('', auth, 'GET');
  assert.is(x.status, 405);
  assert.is(x.headers.allow, 'POST');
  for (const bad of ['{', '[]', '"x"', JSON.stringify({ pin: PIN, extension: '1' }), JSON.stringify({ mac: 'nope', pin: PIN, extension: '1' }), JSON.stringify({ mac: D, account: 'x', pin: PIN, extension: '1' }), JSON.stringify({ mac: D, pin: [1], extension: '1' })]) {
    x = await post(bad, auth);
    assert.is(x.status, 400, bad);
    assert.ok(JSON.parse(x.body).error);
  }
  x = await post(JSON.stringify({ mac: D, pin: PIN, extension: '103', pad: 'x'.repeat(5000) }), auth);
  assert.is(x.status, 413);
  const c = await curl(['-H', `Authorization: Bearer ${TOKEN}`, '-H', 'Transfer-Encoding: chunked', '--data-binary', JSON.stringify({ pad: 'y'.repeat(6000) }), `${base()}${PIN_API_PATH}`]);
  assert.is(c.status, 413, 'also when the length is not declared');
  assert.is((await curl([`${base()}/api/v1/other`])).status, 404);
  assert.ok(r.logs().some((l) => /security event=auth-failed .*ip=127\.0\.0\.1/.test(l)), 'refused tokens reach the security channel');
});

test('HTTP: with [api] token empty the API is off (404)', async () => {
  const srv = http.createServer((req, res) => {
    const handled = pinApi({ settings: () => ({ api: { token: '' }, provisioning: { pinHash: 'x', pin: '' } }) as never, log: memoryLogger(), register: async () => ({ result: 'OK' }) })(req, res, { ip: '127.0.0.1', reqId: 't', proto: 'http' });
    if (!handled) res.writeHead(500).end();
  });
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
  try {
    const port = (srv.address() as { port: number }).port;
    const x = await curl(['-H', `Authorization: Bearer ${TOKEN}`, '--data', '{}', `http://127.0.0.1:${port}${PIN_API_PATH}`]);
    assert.is(x.status, 404);
  } finally {
    await new Promise<void>((res) => srv.close(() => res()));
  }
});

// ---------------------------------------------------------------- CLI

test('apsctl pin register prints the result and exits with its own code; the PIN can come from standard input', () => {
  const E = '805ec0000105';
  const codes: [string[], string, number][] = [
    [['--mac', '805ec0999999', '--pin', PIN, '--extension', '103'], 'UNKNOWN', 14],
    [['--mac', E, '--pin', PIN, '--extension', '777'], 'NOEXT', 12],
    [['--mac', E, '--pin', PIN, '--extension', '103'], 'TAKEN', 13],
    [['--mac', E, '--pin', '123123', '--extension', '103'], 'BADPIN', 10],
    [['--mac', E, '--pin', '123124', '--extension', '103'], 'BADPIN', 10],
    [['--mac', E, '--pin', '123125', '--extension', '103'], 'BADPIN', 10],
    [['--mac', E, '--pin', PIN, '--extension', '105'], 'LOCKED', 11],
  ];
  for (const [args, result, code] of codes) {
    const x = r.ctl('pin', 'register', ...args, '--no-resync');
    assert.is(x.stdout, `${result}\n`, args.join(' ') + x.stderr);
    assert.is(x.status, code);
  }
  assert.is(r.ctl('pin', 'unlock', E).status, 0);
  const ok = r.ctlIn(`${PIN}\n`, 'pin', 'register', '--account', `unprov-${E}`, '--pin', '-', '--extension', '105', '--no-resync', '--json');
  assert.is(ok.status, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout), { result: 'OK', mac: E, extension: '105', tenant: 'acme' });
  assert.is(r.ctl('pin', 'register', '--pin', PIN, '--extension', '103').status, 2, 'no device named: usage');
  const list = r.ctl('extension', 'list', '--json');
  const rows = JSON.parse(list.stdout) as { number: string; holders: { mac: string }[] }[];
  assert.equal(rows.filter((x) => x.number === '105')[0].holders.map((h) => h.mac), [E]);
  assert.equal((JSON.parse(r.ctl('extension', 'list', '--free', '--tenant', 'acme', '--json').stdout) as unknown[]).length, 0, 'acme 101 to 105 all held now');
});

test('apsctl device resync sends NOTIFY to the lease address on the SIP port, and PJSIPNotify through AMI with method = ami', async () => {
  const store = Store.open(r.stateDir);
  const now = Date.now();
  store.putLease({ mac: B, ip: phoneIp, interface: 'lo', source: 'test', expires_at: now + 60_000, seen_at: now });
  store.close();
  const before = phone.requests.length;
  const x = await ctlAsync(r.configDir, ['device', 'resync', B, '--reboot']);
  assert.is(x.status, 0, x.stdout + x.stderr);
  assert.match(x.stdout, `resync 80:5e:c0:00:01:02: NOTIFY check-sync;reboot=true to ${phoneIp}:5060: answered 200`);
  const n = phone.requests[before];
  assert.is(getHeader(n, 'Event'), 'check-sync;reboot=true');
  assert.is(n.uri, `sip:102@${phoneIp}:5060`);
  // AMI: the same state, a config that says method = ami
  const m = await fakeManager();
  try {
    const amiDir = path.join(dir, 'etc-ami');
    fs.cpSync(r.configDir, amiDir, { recursive: true });
    fs.appendFileSync(path.join(amiDir, 'aps.ini'), `\n[resync]\nmethod = ami\nami_host = 127.0.0.1\nami_port = ${m.port}\nami_user = aps\nami_secret = amipass\n`);
    const y = await ctlAsync(amiDir, ['device', 'resync', B]);
    assert.is(y.status, 0, y.stdout + y.stderr);
    assert.match(y.stdout, 'PJSIPNotify check-sync');
    assert.equal(m.recorded(), [[['Action', 'PJSIPNotify'], ['Endpoint', '102'], ['Variable', 'Event=check-sync']]]);
  } finally {
    await m.close();
  }
});

/** curl without blocking this process (apsd may run in it): status and body. */
function curl(args: string[]): Promise<{ status: number; body: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('curl', ['-sS', '--max-time', '10', '-o', '-', '-w', '\n__STATUS__%{http_code}', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', () => {
      const i = out.lastIndexOf('\n__STATUS__');
      resolve({ status: Number(out.slice(i + 11)), body: out.slice(0, i), stderr });
    });
  });
}


test('apsctl pin hash prints a pin_hash line that verifies the PIN, and refuses a weak PIN; pbx dialplan calls the FastAGI URL', async () => {
  const h = r.ctlIn('739154\n', 'pin', 'hash');
  assert.is(h.status, 0, h.stderr);
  const m = /^pin_hash = (scrypt\$\S+)\n$/.exec(h.stdout);
  assert.ok(m, h.stdout);
  const { verifyPinHash } = await import('../src/pin/pinhash.js');
  assert.ok(await verifyPinHash('739154', m![1]));
  assert.not.ok(h.stdout.includes('739154') || h.stderr.includes('739154'), 'the PIN itself is never printed');
  for (const weak of ['12345', '111111', '123456', '121212']) {
    const w = r.ctlIn(`${weak}\n`, 'pin', 'hash');
    assert.is(w.status, 1, weak);
    assert.match(w.stderr, /APS_ERR_PIN: refused: .*(short|guessable)/);
  }
  const dp = r.ctl('pbx', 'dialplan', '--pbx', 'asterisk', '--agi', '127.0.0.1:4573');
  assert.is(dp.status, 0, dp.stderr);
  assert.match(dp.stdout, 'exten => s,n,AGI(agi://127.0.0.1:4573/register,${PIN},${EXTEN_WANTED})');
  assert.match(dp.stdout, '[aps-unprov]');
  const noAgi = r.ctl('pbx', 'dialplan', '--pbx', 'freeswitch');
  assert.is(noAgi.status, 2);
});

// ---------------------------------------------------------------- the PBX's pjsip.conf

test('[pbx] pjsip_conf: its endpoints are extensions (md5 ones listed with the reason), a phone registers to one, and a new endpoint counts after a reload', async () => {
  const list = r.ctl('extension', 'list');
  assert.is(list.status, 0, list.stderr);
  assert.match(list.stdout, /default\s+200\s+Gina PBX\s+gina200\s+free\s+\S+pjsip\.conf:\d+/);
  assert.match(list.stdout, /209 .*cannot be assigned: auth_type md5/);
  let x = await post(JSON.stringify({ mac: F, pin: PIN, extension: '201' }), auth);
  assert.equal(JSON.parse(x.body), { result: 'NOEXT' }, '201 is not in pjsip.conf yet');
  fs.appendFileSync(r.configDir.replace(/etc$/, 'asterisk/pjsip.conf'), PJSIP_201);
  await r.reload();
  x = await post(JSON.stringify({ mac: F, pin: PIN, extension: '201' }), auth);
  assert.equal(JSON.parse(x.body), { result: 'OK', mac: F, extension: '201', tenant: 'default' });
  const c = await curl(['--digest', '-u', CREDS, macFile(F)]);
  assert.is(c.status, 200);
  assert.match(c.body, 'account.1.user_name = 201');
  assert.match(c.body, 'account.1.password = h4nk-201-pbx');
  x = await post(JSON.stringify({ account: `unprov-${F}`, pin: PIN, extension: '200' }), auth);
  assert.equal(JSON.parse(x.body).result, 'OK', 'the phone moves to 200');
  const again = await curl(['--digest', '-u', CREDS, macFile(F)]);
  assert.match(again.body, 'account.1.auth_name = gina200');
  assert.match(again.body, 'account.1.password = g1na;pbx;200');
});

// ---------------------------------------------------------------- secrets

test('(security f) 100,000 fuzzed AGI lines leave the FastAGI server up, and a real session still registers', async () => {
  let seed = 0xa61;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const pieces = ['agi_network: yes', 'agi_network_script: register', 'agi_arg_1: ', 'agi_arg_2: 101', 'agi_callerid: ', 'agi_channel: PJSIP/', '200 result=1', '510 Invalid', 'HANGUP', '520-Invalid', '520 End', ':', '\x00', '\xff', 'A'.repeat(300), '"', '\\', ' ', '\r'];
  let lines = 0;
  const deadline = Date.now() + 120_000;
  const one = (payload: string) => new Promise<void>((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port: r.agiPort });
    sock.on('error', () => resolve());
    sock.on('close', () => resolve());
    sock.on('data', () => {});
    sock.setTimeout(3000, () => sock.destroy());
    sock.on('connect', () => sock.end(payload, 'latin1'));
  });
  const perConn = 50;
  let next = 0;
  await Promise.all(Array.from({ length: 20 }, async () => {
    while (next < 100_000 / perConn && Date.now() < deadline) {
      next++;
      let payload = '';
      for (let k = 0; k < perConn; k++) {
        let line = '';
        const n = 1 + Math.floor(rnd() * 4);
        for (let j = 0; j < n; j++) line += pieces[Math.floor(rnd() * pieces.length)];
        payload += line + (rnd() < 0.1 ? '\n\n' : '\n');
        lines++;
      }
      await one(payload);
    }
  }));
  assert.ok(lines >= 100_000, `only ${lines} AGI lines within the time bound`);
  const call = await agiCall(r.agiPort, { endpoint: 'unprov-nobody', args: ['000000', '101'] });
  assert.is(call.vars.get('APS_RESULT'), 'UNKNOWN', 'a real session still gets its answer');
});

test('no PIN, unprov secret or extension password appears in any log line', () => {
  const text = r.logs().join('\n');
  for (const s of [PIN, '000001', '111111', '123123', 'S3cr3t', 'bobsecret102', 'carolsecret103', 'dave-s3cret', 'erin-s3cret', 'h4nk-201', 'g1na;pbx', ...unprovSecrets]) {
    const i = text.indexOf(s);
    assert.is(i, -1, `"${s}" appears in a log: …${text.slice(Math.max(0, i - 80), i + 40)}…`);
  }
  assert.ok(/security event=pin-attempt result=OK mac=805ec0000101/.test(text));
});

test.run();

