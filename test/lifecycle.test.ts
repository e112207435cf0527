/**
 * A phone's life after its first fetch, against the built apsd with real clients: every fetch
 * is an observation (last contact, address, firmware, the model it names), an unknown MAC that
 * fetches becomes a sighting under the [discovery] rules, resync finds a phone by its lease,
 * its last fetch or its SIP contact through AMI, an administrator changes, disables and enables
 * a phone, templates inherit, BLF keys take the extension's name, and apsctl says when apsd
 * runs an older configuration than the files.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ctlAsync, curl, run, startDaemon, type Daemon } from './support/daemon.js';
import { fakeManager, udpPhone } from './support/pin-peers.js';
import { getHeader } from '../src/wire/sip.js';

const UA = (mac: string) => `Yealink SIP-T46S 66.86.0.15 ${mac.match(/../g)!.join(':')}`;
const SITE = ['--digest', '-u', 'phones:Prov;Secret#1'];
let d: Daemon;
let phonePort = 0;
let ami: Awaited<ReturnType<typeof fakeManager>>;

test.before(async () => {
  ami = await fakeManager({
    events: (a) => {
      const ep = a.find(([k]) => k === 'Endpoint')?.[1];
      if (a.find(([k]) => k === 'Action')?.[1] !== 'PJSIPShowEndpoint') return null;
      return ep === 'unprov-805ec0c0ffee' ? [['Event: EndpointDetail', `ObjectName: ${ep}`], ['Event: ContactStatusDetail', `AOR: ${ep}`, `URI: sip:${ep}@127.0.0.61:${phonePort};ob`, 'Status: Reachable']] : [['Event: EndpointDetail', `ObjectName: ${ep}`]];
    },
  });
  const phone = await udpPhone({ bind: '127.0.0.61' });
  phonePort = phone.port;
  await phone.close();
  d = await startDaemon({
    setup: (configDir) => {
      fs.appendFileSync(path.join(configDir, 'aps.ini'), `\n[discovery]\ntenant = acme\ntemplate = yealink-full\n\n[resync]\nport = ${phonePort}\nami_host = 127.0.0.1\nami_port = ${ami.port}\nami_user = aps\nami_secret = amipass\n`);
      fs.writeFileSync(path.join(configDir, 'templates.d', 'lobby.ini'), '[template]\nextends = yealink-full\n\n[server]\nexpires = 600\n\n[dsskeys]\nkey2 = blf:102\n');
    },
  });
  await d.waitLog(/apsd ready/);
});

test.after(async () => {
  await d?.stop();
  d?.cleanup();
  await ami?.close();
});

const ctl = (...a: string[]) => d.ctl(...a);
const json = (...a: string[]) => {
  const r = ctl('--json', ...a);
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
};
const base = () => `http://${d.http}/provisioning`;

async function until<T>(what: string, f: () => T | undefined | null | false, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('an unknown Yealink fetching over HTTP appears as a T46S from its User-Agent, with last contact, address and firmware', async () => {
  const mac = '805ec0a10001';
  const r = curl(['--interface', '127.0.0.51', '-A', UA(mac), `${base()}/${mac}.cfg`]);
  assert.is(r.status, 401, 'no proof: no secrets');
  const dev = await until('the device', () => json('device', 'list').find((x: { mac: string }) => x.mac === mac));
  assert.is(dev.model, 'T46S');
  assert.is(dev.state, 'unprovisioned');
  assert.is(dev.lastIp, '127.0.0.51');
  assert.is(dev.firmware, '66.86.0.15');
  const list = ctl('device', 'list');
  assert.match(list.stdout, /LAST SEEN\s+ADDRESS\s+FIRMWARE/);
  assert.match(list.stdout, new RegExp(`80:5e:c0:a1:00:01 .* 127\\.0\\.0\\.51 +66\\.86\\.0\\.15`));
  const sightings = json('sighting', 'list');
  assert.ok(sightings.some((s: { mac: string; source: string }) => s.mac === mac && s.source === 'http'), JSON.stringify(sightings));
});

test('device show lists the recent fetches with protocol, file, answer, proof and address, and holds no secret', async () => {
  const mac = '805ec0a10001';
  const ok = curl(['--interface', '127.0.0.51', '-A', UA(mac), ...SITE, `${base()}/${mac}.cfg`]);
  assert.is(ok.status, 200);
  const show = await until('two fetches', () => {
    const j = json('device', 'show', mac);
    return j.fetches.length >= 2 && j;
  });
  assert.equal(show.fetches.map((f: { answer: string }) => f.answer).slice(0, 2), ['200', '401']);
  assert.equal(show.fetches[0], { ...show.fetches[0], proto: 'http', file: `${mac}.cfg`, proof: 'credentials', ip: '127.0.0.51', vendor: 'yealink', model: 'T46S', firmware: '66.86.0.15' });
  const text = ctl('device', 'show', mac).stdout;
  assert.match(text, /recent fetches \(\d+ kept, newest first\)/);
  assert.match(text, /http +805ec0a10001\.cfg +200 +credentials +127\.0\.0\.51/);
  // what is stored holds no password: the proof is its kind, never the credential
  const db = fs.readFileSync(path.join(d.stateDir, 'aps.db')).toString('latin1') + (fs.existsSync(path.join(d.stateDir, 'aps.db-wal')) ? fs.readFileSync(path.join(d.stateDir, 'aps.db-wal')).toString('latin1') : '');
  assert.not.ok(db.includes('Prov;Secret#1'), 'the site password is not in the state database');
});

test('a phone discovered over TFTP with an assumed model is corrected by the model-common file it asks for next', async () => {
  const mac = '805ec0a10002';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-tftp-'));
  try {
    const get = (f: string) => run('tftp', ['127.0.0.1', String(d.tftpPort), '-m', 'binary', '-c', 'get', f, path.join(dir, f)], { timeout: 15_000 });
    get(`${mac}.boot`);
    const first = await until('the device', () => json('device', 'list').find((x: { mac: string }) => x.mac === mac));
    assert.is(first.model, 'T46S', 'no evidence of a model: the [discovery] template model');
    // the template gives T46S; make it a T18 the phone is not, as a DHCP-only discovery would
    assert.is(ctl('device', 'set', mac, '--model', 'T18').status, 0);
    get(`${mac}.boot`);
    get('y000000000066.cfg');
    const fixed = await until('the model from y000000000066.cfg', () => {
      const x = json('device', 'list').find((y: { mac: string }) => y.mac === mac);
      return x?.model === 'T46S' && x;
    });
    assert.is(fixed.lastProto, 'tftp');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('resync finds the phone by the address of its last fetch, else by its SIP contact through AMI, and says what it tried', async () => {
  const mac = '805ec0a10003';
  const phone = await udpPhone({ bind: '127.0.0.52', port: phonePort });
  try {
    curl(['--interface', '127.0.0.52', '-A', UA(mac), `${base()}/${mac}.cfg`]);
    await until('the device', () => json('device', 'list').find((x: { mac: string; lastIp: string }) => x.mac === mac && x.lastIp === '127.0.0.52'));
    const r = await ctlAsync(d.configDir, ['device', 'resync', mac]);
    assert.is(r.status, 0, r.stdout + r.stderr);
    await phone.waitFor(1);
    assert.match(getHeader(phone.requests[0], 'Event') ?? '', /check-sync/);
  } finally {
    await phone.close();
  }
  // never fetched, no lease: the PBX knows where it registered
  const far = await udpPhone({ bind: '127.0.0.61', port: phonePort });
  try {
    assert.is(ctl('device', 'add', '805ec0c0ffee', '--tenant', 'acme', '--template', 'yealink-full').status, 0);
    const r = await ctlAsync(d.configDir, ['device', 'resync', '805ec0c0ffee']);
    assert.is(r.status, 0, r.stdout + r.stderr);
    await far.waitFor(1);
    assert.ok(ami.actions.some((a) => a.some(([k, v]) => k === 'Action' && v === 'PJSIPShowEndpoint')));
  } finally {
    await far.close();
  }
  assert.is(ctl('device', 'add', '805ec0c0ff00', '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  const none = await ctlAsync(d.configDir, ['device', 'resync', '805ec0c0ff00']);
  assert.is.not(none.status, 0);
  assert.match(none.stdout + none.stderr, /no DHCP lease, no fetch seen, no SIP contact of unprov-805ec0c0ff00 through AMI \(the endpoint has no contact/);
});

test('a phone added without a line boots unprovisioned; a line provisions it, removing it returns it; disabled it gets nothing of value', async () => {
  const mac = '805ec0a10004';
  assert.is(ctl('device', 'add', mac, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  let show = json('device', 'show', mac);
  assert.is(show.state, 'unprovisioned');
  assert.match(show.stage, /own unprov account/);
  let cfg = curl(SITE.concat(`${base()}/${mac}.cfg`));
  assert.is(cfg.status, 200);
  assert.match(cfg.body, /unprov-805ec0a10004/);
  assert.match(cfg.body, /UNPROV/);
  assert.is(ctl('line', 'set', mac, '1', '--extension', '104').status, 1, 'no such extension yet');
  const set = ctl('line', 'set', mac, '1', '--extension', '101');
  assert.is(set.status, 0, set.stderr);
  assert.is(json('device', 'show', mac).state, 'provisioned');
  cfg = curl(SITE.concat(`${base()}/${mac}.cfg`));
  assert.match(cfg.body, /S3cr3t/, 'the line\'s SIP password');
  assert.is(ctl('device', 'disable', mac).status, 0);
  cfg = curl(SITE.concat(`${base()}/${mac}.cfg`));
  assert.is(cfg.status, 200);
  assert.not.match(cfg.body, /S3cr3t|unprov-805ec0a10004|Adm1n|Ld4p/, 'disabled: no account, no unprov account, no admin or LDAP password');
  assert.match(ctl('device', 'show', mac).stdout, /state: +disabled/);
  assert.is(ctl('device', 'enable', mac).status, 0);
  assert.match(curl(SITE.concat(`${base()}/${mac}.cfg`)).body, /S3cr3t/);
  assert.is(ctl('line', 'remove', mac, '1').status, 0);
  show = json('device', 'show', mac);
  assert.is(show.state, 'unprovisioned');
  assert.match(curl(SITE.concat(`${base()}/${mac}.cfg`)).body, /unprov-805ec0a10004/);
});

test('device set changes template, model and label with the checks of device add, and the next fetch has them', () => {
  const mac = '805ec0a10005';
  assert.is(ctl('device', 'add', mac, '--tenant', 'acme', '--template', 'yealink-full', '--label', 'Old').status, 0);
  assert.is(ctl('line', 'set', mac, '1', '--extension', '102').status, 0);
  const r = ctl('device', 'set', mac, '--template', 'lobby', '--label', 'Lobby phone');
  assert.is(r.status, 0, r.stderr);
  const j = json('device', 'show', mac);
  assert.equal([j.template, j.label, j.model], ['lobby', 'Lobby phone', 'T46S']);
  assert.match(curl(SITE.concat(`${base()}/${mac}.cfg`)).body, /account\.1\.sip_server\.1\.expires = 600/);
  assert.match(ctl('device', 'set', mac, '--model', 'X9').stderr, /Yealink has no model "X9"/);
  assert.match(ctl('device', 'set', mac, '--template', 'nope').stderr, /no template "nope"/);
  assert.match(ctl('device', 'set', mac, '--tenant', 'default').stderr, /has lines of tenant acme: remove them first/);
  assert.is(ctl('device', 'set', mac).status, 2, 'nothing to set is a usage error');
});

test('a template extends another: the child\'s keys win, template show names the file of each key, and a BLF key without a label shows the extension\'s name', () => {
  const s = ctl('template', 'show', 'lobby');
  assert.is(s.status, 0, s.stderr);
  assert.match(s.stdout, /extends yealink-full/);
  assert.match(s.stdout, /\[server\] +expires +600 +templates\.d\/lobby\.ini:5/);
  assert.match(s.stdout, /\[server\] +registrar +\S+ +templates\.d\/yealink-full\.ini:\d+/);
  assert.match(s.stdout, /\[security\] +admin_password +\(set\)/, 'secrets are not printed');
  const mac = '805ec0a10005';
  const body = curl(SITE.concat(`${base()}/${mac}.cfg`)).body;
  assert.match(body, /linekey\.2\.label = Bob Example/);
});

test('an extension added to extensions.d reaches the phone after a reload, and apsctl says so until then', async () => {
  const mac = '805ec0a10006';
  fs.appendFileSync(path.join(d.configDir, 'extensions.d', 'acme.ini'), '\n[104]\ntenant = acme\nsecret = dave-s3cret-104\nname = Dave\n');
  assert.is(ctl('device', 'add', mac, '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  const set = ctl('line', 'set', mac, '1', '--extension', '104');
  assert.is(set.status, 0, set.stderr);
  assert.match(set.stderr, /run "systemctl reload apsd" \(or kill -HUP \d+\) so that phones get this change/);
  const before = curl(SITE.concat(`${base()}/${mac}.cfg`)).body;
  assert.not.match(before, /dave-s3cret-104/, 'apsd still runs the old catalogue');
  const n = d.logs.filter((l) => l.includes('configuration reloaded')).length;
  d.proc.kill('SIGHUP');
  await until('the reload', () => d.logs.filter((l) => l.includes('configuration reloaded')).length > n);
  assert.match(curl(SITE.concat(`${base()}/${mac}.cfg`)).body, /dave-s3cret-104/);
  const again = ctl('line', 'set', mac, '1', '--extension', '104');
  assert.not.match(again.stderr, /systemctl reload/, 'nothing to say once apsd runs the files');
});

test('a template that extends a missing one, or templates in a circle, are refused with file and line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-ext-'));
  try {
    fs.cpSync(d.configDir, dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'templates.d', 'a.ini'), '[template]\nextends = b\n');
    fs.writeFileSync(path.join(dir, 'templates.d', 'b.ini'), '; b\n[template]\nextends = a\n');
    let r = run(process.execPath, [path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'dist/src/daemon.js'), '--config', dir, '--check']);
    assert.is(r.status, 1);
    assert.match(r.stderr + r.text, /templates\.d\/[ab]\.ini:[23]: \[template\] extends: templates extend each other in a circle: (a → b → a|b → a → b)/);
    fs.writeFileSync(path.join(dir, 'templates.d', 'b.ini'), '[template]\nextends = nowhere\n');
    r = run(process.execPath, [path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'dist/src/daemon.js'), '--config', dir, '--check']);
    assert.match(r.stderr + r.text, /templates\.d\/b\.ini:2: \[template\] extends: no template \\?"nowhere\\?" to extend/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
