/**
 * Firmware: the catalogue (apsctl firmware add|list|remove), the image a phone's config names,
 * what each phone runs (firmware status), images over HTTP with Range and conditional GETs,
 * and rollouts in waves driven by apsd with real clients: curl with Yealink User-Agents that
 * report the old and then the new version, and a SIP peer that receives the NOTIFYs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { copyFixtureConfig, ctl, ctlAsync, curl, startDaemon, type Daemon } from './support/daemon.js';
import { udpPhone, type UdpPhone } from './support/pin-peers.js';
import { getHeader } from '../src/wire/sip.js';

const AUTH = ['--digest', '-u', 'phones:Prov;Secret#1'];
const OLD = '66.86.0.15';
const NEW = '66.86.0.20';
const ua = (mac: string, version: string) => `Yealink SIP-T46S ${version} ${mac.match(/../g)!.join(':')}`;

/** curl without blocking this process (the SIP peer answers from it). */
function curlAsync(args: string[]): Promise<{ status: number; body: string; headers: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', '-D', '-', '-o', '-', '-w', '\n__STATUS__%{http_code}', ...args], { encoding: 'latin1', maxBuffer: 64 << 20 }, (_e, stdout) => {
      const i = stdout.lastIndexOf('\n__STATUS__');
      const all = stdout.slice(0, i);
      const h = all.indexOf('\r\n\r\n');
      resolve({ status: Number(stdout.slice(i + 11)), headers: all.slice(0, h), body: all.slice(h + 4) });
    });
  });
}

function images(dir: string): { old: string; neu: string; t48: string } {
  const mk = (name: string, size: number) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, crypto.randomBytes(size));
    return p;
  };
  return { old: mk(`T46S-${OLD}.rom`, 50_000), neu: mk(`T46S-${NEW}.rom`, 300_000), t48: mk('T48S-66.86.0.20.rom', 1000) };
}

const TEMPLATE = (firmware: string) => `[template]\nvendor = yealink\nmodel = T46S\ntenant = acme\nfirmware = ${firmware}\n`;

function fetchCfg(d: Daemon, mac: string, version: string) {
  return curlAsync([...AUTH, '-A', ua(mac, version), `http://${d.http}/provisioning/${mac}.cfg`]);
}

const firmwareLine = (body: string) => /^static\.firmware\.url = (.*)$/m.exec(body)?.[1] ?? null;

async function until<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function status(d: Daemon) {
  const r = await ctlAsync(d.configDir, ['--json', 'firmware', 'rollout', 'status']);
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { id: number; state: string; reason: string | null; wave: number; waves: { phones: number; upgraded: number; failed: number; sent: number }[]; phones: { mac: string; wave: number; state: string; started: string | null; reports: string | null }[] };
}

/** Distinct NOTIFYs (retransmissions counted once) to each phone account. */
const notifies = (p: UdpPhone) => new Set(p.requests.filter((r) => r.method === 'NOTIFY').map((r) => getHeader(r, 'call-id'))).size;

test('firmware add copies the image atomically, list shows templates and phones, other bytes under the same name and removal in use are refused', () => {
  const { dir, configDir } = copyFixtureConfig();
  try {
    const img = images(dir);
    fs.writeFileSync(path.join(configDir, 'templates.d/fw.ini'), TEMPLATE(OLD));
    let r = ctl(configDir, 'firmware', 'add', img.old, '--vendor', 'yealink', '--models', 'T46S,t46u', '--version', OLD);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`added T46S-${OLD}.rom: yealink T46S,T46U version ${OLD}, 50000 bytes, sha256 [0-9a-f]{64}`));
    const stateFw = path.join(dir, 'state/firmware');
    assert.ok(fs.readFileSync(path.join(stateFw, `T46S-${OLD}.rom`)).equals(fs.readFileSync(img.old)));
    assert.equal(fs.readdirSync(stateFw).filter((n) => n.endsWith('.tmp')), [], 'no temporary file is left');
    // the same file again is fine; other bytes under that name are not
    assert.is(ctl(configDir, 'firmware', 'add', img.old, '--vendor', 'yealink', '--models', 'T46S,T46U', '--version', OLD).status, 0);
    const other = path.join(os.tmpdir(), `aps-fw-${process.pid}`);
    fs.mkdirSync(other, { recursive: true });
    fs.writeFileSync(path.join(other, `T46S-${OLD}.rom`), 'other bytes');
    r = ctl(configDir, 'firmware', 'add', path.join(other, `T46S-${OLD}.rom`), '--vendor', 'yealink', '--models', 'T46S', '--version', OLD);
    fs.rmSync(other, { recursive: true, force: true });
    assert.is(r.status, 1);
    assert.match(r.stderr, /APS_ERR_FIRMWARE: .*T46S-66\.86\.0\.15\.rom exists with other bytes/);
    r = ctl(configDir, 'firmware', 'add', img.t48, '--vendor', 'yealink', '--models', 'T99', '--version', NEW);
    assert.is(r.status, 1);
    assert.match(r.stderr, /Yealink has no model "T99"/);
    assert.is(ctl(configDir, 'firmware', 'add', img.t48, '--vendor', 'yealink', '--models', 'T48S', '--version', NEW).status, 0);

    assert.is(ctl(configDir, 'device', 'add', '805ec0000101', '--tenant', 'acme', '--template', 'fw').status, 0);
    r = ctl(configDir, 'firmware', 'list');
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /T46S-66\.86\.0\.15\.rom\s+yealink\s+T46S,T46U\s+66\.86\.0\.15\s+50000\s+[0-9a-f]{16}\s+fw,yealink-child,yealink-full,yealink-v70\s+0/);
    assert.match(r.stdout, /T48S-66\.86\.0\.20\.rom\s+yealink\s+T48S\s+66\.86\.0\.20\s+1000\s+[0-9a-f]{16}\s+-\s+0/);

    r = ctl(configDir, 'firmware', 'remove', `T46S-${OLD}.rom`);
    assert.is(r.status, 1);
    assert.match(r.stderr, /firmware T46S-66\.86\.0\.15\.rom \(version 66\.86\.0\.15\) is in use by templates fw, yealink-child, yealink-full, yealink-v70/);
    // a version whose image is for other models: config check names the file and line
    fs.writeFileSync(path.join(configDir, 'templates.d/fw.ini'), TEMPLATE(NEW));
    r = ctl(configDir, 'config', 'check');
    assert.is(r.status, 1);
    assert.match(r.stdout, /error: .*templates\.d\/fw\.ini:5: \[template\] firmware: firmware version 66\.86\.0\.20 has no image for model T46S \(T48S-66\.86\.0\.20\.rom: T48S\)/);
    // the fixture's yealink templates name the old file by its name: still in use
    assert.is(ctl(configDir, 'firmware', 'remove', `T46S-${OLD}.rom`).status, 1);
    fs.writeFileSync(path.join(configDir, 'templates.d/fw.ini'), TEMPLATE(OLD));
    r = ctl(configDir, 'firmware', 'remove', 'T48S-66.86.0.20.rom');
    assert.is(r.status, 0, r.stderr);
    assert.not.ok(fs.existsSync(path.join(stateFw, 'T48S-66.86.0.20.rom')));
    assert.not.match(ctl(configDir, 'firmware', 'list').stdout, /T48S/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a template firmware version becomes the URL of the image for the phone\'s model; a phone that reports it is not told again; firmware status lists the ones behind', async () => {
  let d: Daemon | undefined;
  try {
    d = await startDaemon({
      setup: (configDir) => fs.writeFileSync(path.join(configDir, 'templates.d/fw.ini'), TEMPLATE(NEW)),
    });
    const img = images(d.dir);
    assert.is(d.ctl('firmware', 'add', img.old, '--vendor', 'yealink', '--models', 'T46S', '--version', OLD).status, 0);
    assert.is(d.ctl('firmware', 'add', img.neu, '--vendor', 'yealink', '--models', 'T46S', '--version', NEW).status, 0);
    assert.is(d.ctl('device', 'add', '805ec0000201', '--tenant', 'acme', '--template', 'fw').status, 0);
    assert.is(d.ctl('device', 'add', '805ec0000202', '--tenant', 'acme', '--template', 'fw').status, 0);
    let r = await fetchCfg(d, '805ec0000201', OLD);
    assert.is(r.status, 200);
    assert.is(firmwareLine(r.body), `http://pbx.acme.example:8080/provisioning/T46S-${NEW}.rom`);
    await fetchCfg(d, '805ec0000202', NEW);
    const s = await until('both versions in firmware status', () => {
      const x = d!.ctl('firmware', 'status', '--vendor', 'yealink');
      return /66\.86\.0\.15\s+1/.test(x.stdout) && /66\.86\.0\.20\s+1/.test(x.stdout) && x.stdout;
    });
    assert.match(s, /1 behind, 0 ahead, 0 not reporting/);
    assert.match(s, /80:5e:c0:00:02:01\s+yealink\s+T46S\s+fw\s+66\.86\.0\.15\s+66\.86\.0\.20\s+behind/);
    assert.not.match(s, /80:5e:c0:00:02:02/);
    // the phone that runs the version gets no firmware setting
    r = await fetchCfg(d, '805ec0000202', NEW);
    assert.is(r.status, 200);
    assert.is(firmwareLine(r.body), null);
    assert.match(d.ctl('device', 'list').stdout, /80:5e:c0:00:02:02 .* 66\.86\.0\.20/);
    assert.match(d.ctl('firmware', 'list').stdout, /T46S-66\.86\.0\.20\.rom .* fw\s+1\n/);
  } finally {
    await d?.stop();
    d?.cleanup();
  }
});

test('a firmware image over HTTP answers Range requests, resumes with curl -C -, and answers conditional GETs with 304', async () => {
  let d: Daemon | undefined;
  try {
    d = await startDaemon();
    const fwDir = path.join(d.stateDir, 'firmware');
    fs.mkdirSync(fwDir, { recursive: true });
    const data = crypto.randomBytes(1_000_000);
    fs.writeFileSync(path.join(fwDir, 'image.rom'), data);
    const url = `http://${d.http}/provisioning/image.rom`;
    let r = await curlAsync(['-r', '100-199', url]);
    assert.is(r.status, 206);
    assert.match(r.headers, /Content-Range: bytes 100-199\/1000000/i);
    assert.ok(Buffer.from(r.body, 'latin1').equals(data.subarray(100, 200)));
    r = await curlAsync(['-r', '-10', url]);
    assert.is(r.status, 206);
    assert.ok(Buffer.from(r.body, 'latin1').equals(data.subarray(999_990)));
    r = await curlAsync(['-r', '2000000-', url]);
    assert.is(r.status, 416);
    assert.match(r.headers, /Content-Range: bytes \*\/1000000/i);
    // an interrupted download resumes where it stopped
    const part = path.join(d.dir, 'image.part');
    fs.writeFileSync(part, data.subarray(0, 123_456));
    const c = await new Promise<number>((res) => execFile('curl', ['-sS', '-C', '-', '-o', part, '-w', '%{http_code}', url], (_e, out) => res(Number(out))));
    assert.is(c, 206);
    assert.ok(fs.readFileSync(part).equals(data), 'the resumed file is the image');
    // conditional GETs
    r = await curlAsync(['-I', url]);
    const etag = /^ETag: (.*)$/im.exec(r.headers)![1].trim();
    const lastModified = /^Last-Modified: (.*)$/im.exec(r.headers)![1].trim();
    assert.match(r.headers, /Accept-Ranges: bytes/i);
    r = await curlAsync(['-H', `If-None-Match: ${etag}`, url]);
    assert.is(r.status, 304);
    assert.is(r.body, '');
    r = await curlAsync(['-H', `If-Modified-Since: ${lastModified}`, url]);
    assert.is(r.status, 304);
    r = await curlAsync(['-H', 'If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT', url]);
    assert.is(r.status, 200);
    assert.is(r.body.length, 1_000_000);
    // a range against a changed file (If-Range no longer matches) gets the whole new file
    r = await curlAsync(['-r', '0-9', '-H', 'If-Range: "0-0"', url]);
    assert.is(r.status, 200);
  } finally {
    await d?.stop();
    d?.cleanup();
  }
});

const MACS = ['805ec0000301', '805ec0000302', '805ec0000303', '805ec0000304'];

async function rolloutDaemon(phone: UdpPhone, reuse?: Daemon) {
  return startDaemon({
    reuse: reuse && { dir: reuse.dir, configDir: reuse.configDir, stateDir: reuse.stateDir },
    setup: reuse
      ? undefined
      : (configDir) => {
          fs.writeFileSync(path.join(configDir, 'templates.d/fw.ini'), TEMPLATE(OLD));
          const ini = path.join(configDir, 'aps.ini');
          fs.appendFileSync(ini, `\n[firmware]\ncheck_every = 1s\n\n[resync]\nmethod = notify\nport = ${phone.port}\n`);
        },
  });
}

async function prepareRollout(d: Daemon, macs: string[]) {
  const img = images(d.dir);
  for (const [f, v] of [[img.old, OLD], [img.neu, NEW]]) assert.is((await ctlAsync(d.configDir, ['firmware', 'add', f, '--vendor', 'yealink', '--models', 'T46S', '--version', v])).status, 0);
  for (const m of macs) {
    assert.is((await ctlAsync(d.configDir, ['device', 'add', m, '--tenant', 'acme', '--template', 'fw'])).status, 0);
    const r = await fetchCfg(d, m, OLD);
    assert.is(r.status, 200);
    assert.is(firmwareLine(r.body), `http://pbx.acme.example:8080/provisioning/T46S-${OLD}.rom`, 'a phone that has reported nothing yet is pointed at its template\'s image');
  }
  await until('every phone reports the old version', async () => (await ctlAsync(d.configDir, ['--json', 'device', 'list'])).stdout.split(OLD).length - 1 === macs.length);
  for (const m of macs) assert.is(firmwareLine((await fetchCfg(d, m, OLD)).body), null, 'a phone on the template\'s version gets no firmware setting');
}

/** A phone upgrades: fetches its config (which names the new image), downloads it, and comes back reporting the new version. */
async function upgrade(d: Daemon, mac: string) {
  const r = await fetchCfg(d, mac, OLD);
  const url = firmwareLine(r.body);
  assert.is(url, `http://pbx.acme.example:8080/provisioning/T46S-${NEW}.rom`);
  const img = await curlAsync(['-A', ua(mac, OLD), `http://${d.http}/provisioning/T46S-${NEW}.rom`]);
  assert.is(img.status, 200);
  assert.is(img.body.length, 300_000);
  assert.is((await fetchCfg(d, mac, NEW)).status, 200);
  await until(`${mac} reports ${NEW}`, async () => (JSON.parse((await ctlAsync(d.configDir, ['--json', 'device', 'show', mac])).stdout) as { firmware: string }).firmware === NEW);
  assert.is(firmwareLine((await fetchCfg(d, mac, NEW)).body), null, 'the upgraded phone is not told to upgrade again');
}

test('a rollout moves wave by wave: a good wave proceeds, a wave with a phone that does not come back halts it and says why, rollback points the phones back', async () => {
  const phone = await udpPhone();
  let d: Daemon | undefined;
  try {
    d = await rolloutDaemon(phone);
    await prepareRollout(d, MACS);
    const start = await ctlAsync(d.configDir, ['firmware', 'rollout', 'start', NEW, '--models', 'T46S', '--waves', '25%,100%', '--max-failed', '0%', '--soak', '1s', '--upgrade-limit', '4s']);
    assert.is(start.status, 0, start.stderr);
    assert.match(start.stdout, /rollout 1 started: 4 phones in 2 waves \(1, 3\)/);
    // wave 1: the first phone is told to resync, and upgrades
    await until('the NOTIFY of wave 1', () => notifies(phone) >= 1);
    let s = await status(d);
    assert.is(s.state, 'running');
    assert.equal(s.phones.map((p) => [p.wave, p.state]), [[1, 'sent'], [2, 'pending'], [2, 'pending'], [2, 'pending']]);
    // a phone of wave 2 fetching now is not pointed at the new image yet
    assert.is(firmwareLine((await fetchCfg(d, MACS[1], OLD)).body), null);
    await upgrade(d, MACS[0]);
    // wave 1 good: after the soak, wave 2 starts (three more NOTIFYs)
    await until('the NOTIFYs of wave 2', () => notifies(phone) >= 4);
    s = await status(d);
    assert.is(s.wave, 2);
    assert.equal(s.phones.map((p) => p.state), ['upgraded', 'sent', 'sent', 'sent']);
    await upgrade(d, MACS[1]);
    await upgrade(d, MACS[2]);
    // the fourth phone never comes back: past the upgrade limit the rollout halts by itself
    s = await until('the halt', async () => { const x = await status(d!); return x.state === 'halted' && x; });
    assert.match(s.reason!, /^wave 2 of 2 \(100%\): 1 of 3 phones failed, more than --max-failed 0% allows \(0\): 805ec0000304 not back after \d+s$/);
    assert.equal(s.phones.map((p) => p.state), ['upgraded', 'upgraded', 'upgraded', 'failed']);
    const text = await ctlAsync(d.configDir, ['firmware', 'rollout', 'status']);
    assert.match(text.stdout, /rollout 1: yealink T46S to 66\.86\.0\.20: halted/);
    assert.match(text.stdout, /80:5e:c0:00:03:04\s+2\s+failed\s+T46S\s+66\.86\.0\.15\s+66\.86\.0\.15/);
    await d.waitLog(/rollout halted/);
    // rollback: every phone it reached is pointed back at the image it ran before, and told so
    const before = notifies(phone);
    const rb = await ctlAsync(d.configDir, ['firmware', 'rollout', 'rollback']);
    assert.is(rb.status, 0, rb.stderr);
    await until('the NOTIFYs of the rollback', () => notifies(phone) >= before + 4);
    for (const m of MACS.slice(0, 3)) assert.is(firmwareLine((await fetchCfg(d, m, NEW)).body), `http://pbx.acme.example:8080/provisioning/T46S-${OLD}.rom`);
    assert.is(firmwareLine((await fetchCfg(d, MACS[3], OLD)).body), null, 'the phone that kept the old version is told nothing');
    s = await status(d);
    assert.is(s.state, 'rolledback');
    // an image still used by a rollback cannot be removed; the new one can now
    assert.is((await ctlAsync(d.configDir, ['firmware', 'remove', `T46S-${NEW}.rom`])).status, 0);
  } finally {
    await phone.close();
    await d?.stop();
    d?.cleanup();
  }
});

test('a rollout survives a kill -9 of apsd mid-wave: the wave is not repeated, and the rollout finishes after the restart', async () => {
  const phone = await udpPhone();
  let d: Daemon | undefined;
  try {
    d = await rolloutDaemon(phone);
    await prepareRollout(d, MACS.slice(0, 2));
    const start = await ctlAsync(d.configDir, ['firmware', 'rollout', 'start', NEW, '--models', 'T46S', '--waves', '50%,100%', '--max-failed', '0%', '--soak', '0', '--upgrade-limit', '60s']);
    assert.is(start.status, 0, start.stderr);
    await until('the NOTIFY of wave 1', () => notifies(phone) >= 1);
    const before = await status(d);
    assert.equal(before.phones.map((p) => p.state), ['sent', 'pending']);
    assert.is(await d.stop('SIGKILL'), null);
    const again = await rolloutDaemon(phone, d);
    d = again;
    await new Promise((r) => setTimeout(r, 2500));
    let s = await status(d);
    assert.is(s.state, 'running');
    assert.is(s.wave, 1);
    assert.equal(s.phones.map((p) => [p.state, p.started]), before.phones.map((p) => [p.state, p.started]), 'wave 1 is neither lost nor started again');
    assert.is(notifies(phone), 1, 'the phone of wave 1 is not told twice');
    await upgrade(d, MACS[0]);
    await until('the NOTIFY of wave 2', () => notifies(phone) >= 2);
    await upgrade(d, MACS[1]);
    s = await until('the end', async () => { const x = await status(d!); return x.state === 'done' && x; });
    assert.equal(s.phones.map((p) => p.state), ['upgraded', 'upgraded']);
    assert.is(notifies(phone), 2);
  } finally {
    await phone.close();
    await d?.stop();
    d?.cleanup();
  }
});

test('rollout start checks its waves, window, share and phones; pause, resume and abort change its state', () => {
  const { dir, configDir } = copyFixtureConfig();
  try {
    const img = images(dir);
    fs.writeFileSync(path.join(configDir, 'templates.d/fw.ini'), TEMPLATE(OLD));
    assert.is(ctl(configDir, 'firmware', 'add', img.neu, '--vendor', 'yealink', '--models', 'T46S', '--version', NEW).status, 0);
    let r = ctl(configDir, 'firmware', 'rollout', 'start', NEW, '--models', 'T46S', '--waves', '5%,25%,100%');
    assert.is(r.status, 1);
    assert.match(r.stderr, /no phone of yealink T46S/);
    for (const m of ['805ec0000401', '805ec0000402', '805ec0000403']) assert.is(ctl(configDir, 'device', 'add', m, '--tenant', 'acme', '--template', 'fw').status, 0);
    for (const [args, msg] of [
      [['--waves', '50%,25%'], /--waves "50%,25%" is not a list of rising shares ending at 100%/],
      [['--waves', '100%', '--window', '25:00-03:00'], /--window "25:00-03:00" is not a time window \(expected HH:MM-HH:MM/],
      [['--waves', '100%', '--max-failed', '150%'], /--max-failed "150%" is not a share/],
      [['--waves', '100%', '--soak', 'soon'], /--soak "soon" is not a duration/],
    ] as [string[], RegExp][]) {
      r = ctl(configDir, 'firmware', 'rollout', 'start', NEW, '--models', 'T46S', ...args);
      assert.is(r.status, 2, r.stderr);
      assert.match(r.stderr, msg);
    }
    r = ctl(configDir, 'firmware', 'rollout', 'start', OLD, '--models', 'T46S', '--waves', '100%');
    assert.match(r.stderr, /no image of version 66\.86\.0\.15 in the firmware catalogue/);
    r = ctl(configDir, 'firmware', 'rollout', 'start', NEW, '--models', 'T46S', '--waves', '5%,25%,100%', '--window', '22:00-04:00', '--max-failed', '2%', '--soak', '30m');
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /rollout 1 started: 3 phones in 3 waves \(1, 0, 2\)/);
    r = ctl(configDir, 'firmware', 'rollout', 'start', NEW, '--models', 'T46S', '--waves', '100%');
    assert.is(r.status, 1);
    assert.match(r.stderr, /device 805ec0000401 is already in rollout 1/);
    r = ctl(configDir, 'firmware', 'rollout', 'status');
    assert.match(r.stdout, /rollout 1: yealink T46S to 66\.86\.0\.20: running, wave 1 of 3\nwindow 22:00-04:00, max failed 2% per wave, soak 1800s, upgrade limit 1200s/);
    assert.is(ctl(configDir, 'firmware', 'rollout', 'pause').stdout, 'rollout 1: paused\n');
    assert.match(ctl(configDir, 'firmware', 'rollout', 'pause').stderr, /rollout 1 is paused, not running/);
    assert.is(ctl(configDir, 'firmware', 'rollout', 'resume', '1').stdout, 'rollout 1: running\n');
    r = ctl(configDir, 'firmware', 'remove', `T46S-${NEW}.rom`);
    assert.match(r.stderr, /is in use by rollout 1/);
    assert.is(ctl(configDir, 'firmware', 'rollout', 'abort').stdout, 'rollout 1: aborted\n');
    assert.is(ctl(configDir, 'firmware', 'remove', `T46S-${NEW}.rom`).status, 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
