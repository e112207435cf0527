/**
 * Cisco (SPA and 3PCC MPP) and Fanvil phones boot against the real apsd: curl with each
 * phone's real User-Agent and tftp-hpa fetch every file the firmware asks for, in its order and
 * letter case; the file with secrets only with proof; the phone's own credentials written into
 * its file open it next time; an unknown MAC of each vendor gets no secret; the resync NOTIFY
 * carries the vendor's event; and the rendered files of the second model family of each vendor
 * match their golden files.
 */
import { readTsv } from './support/samples.js';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { APSCTL, curl, run, startDaemon, type Daemon } from './support/daemon.js';
import { GOLDEN_DIR, VENDORS_DIR } from './support/paths.js';
import { VendorRegistry, modelKey, refusedBy } from '../src/vendors/registry.js';
import { parseMac } from '../src/mac.js';

const CREDS = 'phones:Prov;Secret#1';
const UPDATE = process.env.UPDATE_GOLDEN === '1';

/** Phones with the User-Agent their firmware really sends (samples/user-agents.tsv). */
const SPA = { mac: '0002fdff2103', model: 'SPA508G', ua: 'Cisco/SPA508G-7.4.4 (0002FDFF2103)(CBT141400UK)' };
const MPP = { mac: '00562b043615', model: 'CP-7832-3PCC', ua: 'Cisco-CP-7832-3PCC/11.0.1 (00562b043615)' };
const FANVIL_NEW = { mac: '0c383e557eb1', model: 'X5U-V2', ua: 'Fanvil X5U-V2 2.12.16.17 0c383e557eb1' };
const FANVIL_OLD = { mac: '0c383e07e16c', model: 'X4', ua: 'Fanvil X4 2.10.2.6887 0c383e07e16c' };

let d: Daemon;
let tmp: string;
let base: string;

function tftpGet(file: string) {
  const out = path.join(tmp, `tftp-${Math.random().toString(36).slice(2)}`);
  const r = run('tftp', ['127.0.0.1', String(d.tftpPort), '-m', 'binary', '-c', 'get', file, out], { timeout: 15_000 });
  const body = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : null;
  return { status: r.status, body, out: r.text + r.stderr };
}

function lease(mac: string) {
  const db = new Database(path.join(d.stateDir, 'aps.db'));
  const now = Date.now();
  db.prepare('INSERT OR REPLACE INTO leases (mac, ip, interface, source, expires_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)').run(mac, '127.0.0.1', 'lo', 'test', now + 60_000, now);
  db.close();
}

function unlease(mac: string) {
  const db = new Database(path.join(d.stateDir, 'aps.db'));
  db.prepare('DELETE FROM leases WHERE mac = ?').run(mac);
  db.close();
}

function xmlOk(body: string, what: string) {
  const f = path.join(tmp, `x-${Math.random().toString(36).slice(2)}.xml`);
  fs.writeFileSync(f, body);
  const r = run('xmllint', ['--noout', f]);
  assert.is(r.status, 0, `${what} is not well-formed XML: ${r.stderr}`);
}

/** The golden copy of a device file: its own credentials (made per device, at random) as placeholders. */
function golden(rel: string, body: string, mac?: string) {
  if (mac) {
    const [u, p] = ownCredentials(mac).split(/:(.*)/s);
    body = body.split(u).join('{own-user}').split(p).join('{own-password}');
  }
  const file = path.join(GOLDEN_DIR, rel);
  if (UPDATE || !fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, body);
    if (!UPDATE) assert.unreachable(`golden file ${file} was missing and has been written: check it and commit it`);
  }
  assert.fixture(body, fs.readFileSync(file, 'utf8'), rel);
}

function ownCredentials(mac: string): string {
  const c = JSON.parse(d.ctl('--json', 'device', 'credentials', mac).stdout) as { username: string; password: string };
  return `${c.username}:${c.password}`;
}

/** apsctl without blocking this process, so that a socket here can answer while it runs. */
function ctlAsync(...args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [APSCTL, '--config', d.configDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => (out += b.toString()));
    p.on('exit', (status) => resolve({ status, out }));
  });
}

// ------------------------------------------------------------------------------------- the data

const registry = VendorRegistry.load(VENDORS_DIR);


/** How many rows of the team's peer samples (ua-samples, dhcp-classes oui, filenames) name each vendor: all are copied into vendors/<id>/samples. */
const PEER_ROWS: Record<string, { ua: number; oui: number; fn: number }> = {
  cisco: { ua: 9, oui: 39, fn: 50 },
  fanvil: { ua: 10, oui: 2, fn: 76 },
};

for (const id of ['cisco', 'fanvil']) {
  const v = registry.get(id)!;
  const dir = path.join(v.dir, 'samples');

  test(`${v.name}: every peer-sample User-Agent, option-60 class, OUI and file name of the vendor is copied into vendors/${id}/samples`, () => {
    assert.ok(readTsv(path.join(dir, 'user-agents.tsv')).length >= PEER_ROWS[id].ua, 'User-Agent rows');
    assert.ok(new Set(readTsv(path.join(dir, 'ouis.tsv')).map((r) => r.oui)).size >= PEER_ROWS[id].oui, 'OUI rows');
    assert.ok(new Set(readTsv(path.join(dir, 'filenames.tsv')).map((r) => r.filename)).size >= PEER_ROWS[id].fn, 'file name rows');
  });

  test(`${v.name}: every OUI sample identifies a MAC to ${v.name}, every User-Agent sample to its model and firmware`, () => {
    for (const s of readTsv(path.join(dir, 'ouis.tsv'))) {
      assert.equal(registry.identify({ mac: parseMac(s.oui + '123456')! }).map((i) => i.vendor), [id], s.oui);
    }
    for (const s of readTsv(path.join(dir, 'user-agents.tsv'))) {
      const ua = registry.identify({ userAgent: s.user_agent }).find((i) => i.by === 'userAgent')!;
      assert.is(ua.vendor, id);
      assert.is(modelKey(ua.model!), modelKey(s.model), s.user_agent);
      assert.ok(ua.version && s.user_agent.includes(ua.version), `${s.user_agent}: firmware ${ua.version}`);
    }
  });

  test(`${v.name}: every file name its phones ask for is served, or refused on purpose with the reason in the README`, () => {
    const readme = fs.readFileSync(path.join(v.dir, 'README.md'), 'utf8');
    const at = readme.indexOf('## Files asked for at boot that aps refuses on purpose');
    assert.ok(at >= 0, 'README has no section "Files asked for at boot that aps refuses on purpose"');
    const section = readme.slice(at, readme.indexOf('\n## ', at + 4) >>> 0);
    const mac = v.ouis[0] + 'a1b2c3';
    for (const s of readTsv(path.join(dir, 'filenames.tsv'))) {
      if (s.filename.includes('/') || s.filename.includes('$')) continue; // a rule of Wazo's, not a name a phone asks for
      const name = s.filename.replace('{mac}', mac).replace('{MAC}', mac.toUpperCase()).replace('{PSN}', '504G');
      const served = registry.matchFile(name).some((m) => m.file.vendor.id === id);
      const refused = refusedBy(registry, name).some((r) => r.vendor.id === id);
      assert.ok(served !== refused, `${s.filename} (${name}): served ${served}, refused ${refused}`);
    }
    for (const r of v.refused ?? []) {
      const shown = r.name.replace('{mac}', '<mac>').replace('{MAC}', '<MAC>');
      assert.ok(section.includes('`' + shown + '`'), `${r.name} is refused but the README section does not name ${shown}`);
      assert.ok(r.why.length > 20, `${r.name}: the reason is too short`);
    }
  });
}

let phoneSip: dgram.Socket;
const notifies: string[] = [];

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-fc-'));
  // a UDP socket stands in for the phones' SIP port: it answers every NOTIFY with 200 OK
  phoneSip = dgram.createSocket('udp4');
  phoneSip.on('message', (msg, rinfo) => {
    const text = msg.toString();
    if (!text.startsWith('NOTIFY ')) return;
    notifies.push(text);
    const head = text.split('\r\n');
    const keep = head.filter((l) => /^(Via|From|To|Call-ID|CSeq):/i.test(l));
    const to = keep.map((l) => (/^To:/i.test(l) && !/;tag=/.test(l) ? `${l};tag=phone` : l));
    phoneSip.send(['SIP/2.0 200 OK', ...to, 'Content-Length: 0', '', ''].join('\r\n'), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => phoneSip.bind(0, '127.0.0.1', () => r()));
  const sipPort = phoneSip.address().port;
  d = await startDaemon({
    setup: (cfg) => {
      const ini = path.join(cfg, 'aps.ini');
      fs.writeFileSync(ini, `${fs.readFileSync(ini, 'utf8')}\n[resync]\nport = ${sipPort}\n`);
      // one extension per phone: the fixture's 101 and 102, and two more
      fs.writeFileSync(path.join(cfg, 'extensions.d', 'more.ini'), '[201]\ntenant = acme\nsecret = "S3cr3t&<201>"\nname = Dora\n\n[202]\ntenant = acme\nsecret = "S3cr3t&<202>"\nname = Emil\n');
    },
  });
  base = `http://${d.http}`;
  for (const p of [SPA, MPP, FANVIL_NEW, FANVIL_OLD]) {
    const template = p === SPA || p === MPP ? 'cisco-full' : 'fanvil-full';
    const add = d.ctl('device', 'add', p.mac, '--tenant', 'acme', '--template', template, '--model', p.model, '--label', 'Reception');
    assert.is(add.status, 0, add.stderr);
    const ext = p === SPA ? '101' : p === MPP ? '102' : p === FANVIL_NEW ? '201' : '202';
    const line = d.ctl('line', 'set', p.mac, '1', '--extension', ext, '--label', 'Alice');
    assert.is(line.status, 0, line.stderr);
  }
});

test.after(async () => {
  phoneSip?.close();
  if (d) {
    await d.stop();
    d.cleanup();
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------- Cisco SPA

test('a Cisco SPA508G boots: TFTP /spa508G.cfg (default Profile_Rule /spa$PSN.cfg, upper-case G) names its MAC file', () => {
  const r = tftpGet('/spa508G.cfg');
  assert.is(r.status, 0, r.out);
  xmlOk(r.body!, 'spa508G.cfg');
  assert.match(r.body!, /<Profile_Rule_B>http:\/\/pbx\.example\.net:8080\/provisioning\/\$MA\.xml<\/Profile_Rule_B>/);
  assert.not.match(r.body!, /S3cr3t|Adm1n|Ld4p|Password/);
  // the same file over HTTP, with the phone's User-Agent, byte for byte
  const h = curl(['-A', SPA.ua, `${base}/spa508G.cfg`]);
  assert.is(h.status, 200);
  assert.is(h.body, r.body);
});

test('the SPA\'s MAC file (Profile_Rule_B $MA.xml) is refused without proof, over HTTP (401) and TFTP (error 2)', () => {
  const h = curl(['-A', SPA.ua, `${base}/provisioning/${SPA.mac}.xml`]);
  assert.is(h.status, 401);
  assert.not.match(h.body, /S3cr3t/);
  const t = tftpGet(`${SPA.mac}.xml`);
  assert.match(t.out, /Error code 2/i);
  assert.ok(!t.body || !t.body.includes('S3cr3t'));
});

test('with the site credentials the SPA gets its MAC file: line 1, SPA parameter names, its own credentials in Profile_Rule', () => {
  const h = curl(['-A', SPA.ua, '--digest', '-u', CREDS, `${base}/provisioning/${SPA.mac}.xml`]);
  assert.is(h.status, 200, h.body);
  xmlOk(h.body, `${SPA.mac}.xml`);
  assert.match(h.body, /<User_ID_1_>101<\/User_ID_1_>/);
  assert.match(h.body, /<Password_1_>S3cr3t&amp;&lt;101&gt;<\/Password_1_>/);
  assert.match(h.body, /<Admin_Passwd>/, 'SPA firmware names it Admin_Passwd');
  assert.not.match(h.body, /<Admin_Password>/);
  assert.match(h.body, /<Unit_1_Key_1>fnc=blf\+sd\+cp;sub=103@\$PROXY;nme=Carol<\/Unit_1_Key_1>/, 'SPA sidecar keys have no trailing _');
  assert.not.match(h.body, /Group_Paging_Script/, 'paging is left out on SPA');
  assert.match(h.body, /<Resync_From_SIP>Yes<\/Resync_From_SIP>/);
  const own = ownCredentials(SPA.mac).split(':');
  assert.ok(h.body.includes(`<Profile_Rule>[--uid ${own[0]} --pwd ${own[1]}]http://pbx.acme.example:8080/provisioning/$MA.xml</Profile_Rule>`), h.body);
  golden('cisco/spa/0002fdff2103.xml', h.body, SPA.mac);
});

test('at its next resync the SPA proves itself with the credentials its file gave it', () => {
  const h = curl(['-A', SPA.ua, '--digest', '-u', ownCredentials(SPA.mac), `${base}/provisioning/${SPA.mac}.xml`]);
  assert.is(h.status, 200);
  assert.match(h.body, /<User_ID_1_>101<\/User_ID_1_>/);
});

test('over TFTP the SPA gets its MAC file while it holds its DHCP lease', () => {
  lease(SPA.mac);
  try {
    const t = tftpGet(`${SPA.mac}.xml`);
    assert.is(t.status, 0, t.out);
    assert.match(t.body!, /<User_ID_1_>101<\/User_ID_1_>/);
  } finally {
    unlease(SPA.mac);
  }
});

test('apsctl device show lists the files a SPA508G and a 7832 ask for, and no file of the other family', () => {
  const spa = d.ctl('device', 'show', SPA.mac).stdout;
  assert.match(spa, /spa508G\.cfg +no secrets/);
  assert.match(spa, /0002fdff2103\.xml +holds secrets/);
  assert.not.match(spa, /^ +\.xml/m);
  const mpp = d.ctl('device', 'show', MPP.mac).stdout;
  assert.match(mpp, /7832\.xml +no secrets/);
  assert.not.match(mpp, /spa\S*\.cfg/);
  const names = (JSON.parse(d.ctl('--json', 'render', MPP.mac).stdout) as { name: string }[]).map((f) => f.name);
  assert.equal(names, ['7832.xml', '7832-3PCC.xml', '00562b043615.xml']);
});

// ------------------------------------------------------------------------------------- Cisco MPP

test('a Cisco 7832 (3PCC) boots: TFTP /7832.xml (default Profile_Rule /$PSN.xml) names its MAC file', () => {
  const r = tftpGet('/7832.xml');
  assert.is(r.status, 0, r.out);
  xmlOk(r.body!, '7832.xml');
  assert.match(r.body!, /<Profile_Rule_B ua="na">http:\/\/pbx\.example\.net:8080\/provisioning\/\$MA\.xml<\/Profile_Rule_B>/);
  assert.not.match(r.body!, /S3cr3t|Adm1n|Ld4p/);
  golden('cisco/mpp/7832.xml', r.body!);
});

test('the 3PCC phone gets its MAC file over HTTP with proof, with MPP parameter names, and its keys cut to its model', () => {
  assert.is(curl(['-A', MPP.ua, `${base}/provisioning/${MPP.mac}.xml`]).status, 401);
  const h = curl(['-A', MPP.ua, '--digest', '-u', CREDS, `${base}/provisioning/${MPP.mac}.xml`]);
  assert.is(h.status, 200, h.body);
  xmlOk(h.body, `${MPP.mac}.xml`);
  assert.match(h.body, /<User_ID_1_>102<\/User_ID_1_>/);
  assert.match(h.body, /<Admin_Password>/);
  assert.match(h.body, /<Group_Paging_Script>pggrp=224\.0\.1\.116:10000;name=All phones;listen=yes;<\/Group_Paging_Script>/);
  assert.not.match(h.body, /Extended_Function_2_/, 'a 7832 has no line keys');
  golden('cisco/mpp/00562b043615.xml', h.body, MPP.mac);
  const own = curl(['-A', MPP.ua, '--digest', '-u', ownCredentials(MPP.mac), `${base}/${MPP.mac}.xml`]);
  assert.is(own.status, 200);
});

test('apsctl config check names what the Cisco and Fanvil templates set but the phones cannot take', () => {
  const r = d.ctl('config', 'check');
  const text = r.stdout + r.stderr;
  assert.match(text, /cisco-full\.ini: DSS key 4: Cisco has no "transfer" key: left out/);
  assert.match(text, /cisco-full\.ini: progkeys: Cisco has no "progkeys" key: left out/);
  assert.match(text, /cisco-full\.ini: phone\.tone_country: Cisco has no "tone_country" key: left out/);
  assert.match(text, /fanvil-full\.ini: phone\.dial_plan: Fanvil has no "dial_plan" key: left out/);
});

test('apsctl device resync sends the SPA a NOTIFY with Event: resync', async () => {
  notifies.length = 0;
  lease(SPA.mac);
  const r = await ctlAsync('device', 'resync', SPA.mac);
  unlease(SPA.mac);
  assert.is(r.status, 0, r.out);
  assert.ok(notifies.length >= 1, `no NOTIFY reached the phone: ${r.out}`);
  assert.match(notifies[0], /\r\nEvent: resync\r\n/);
});

// ------------------------------------------------------------------------------------- Fanvil

test('a Fanvil X5U-V2 boots: its common file F0V5UV200000.cfg (letter case kept) over TFTP and HTTP names $mac.cfg', () => {
  const t = tftpGet('F0V5UV200000.cfg');
  assert.is(t.status, 0, t.out);
  xmlOk(t.body!, 'F0V5UV200000.cfg');
  assert.match(t.body!, /<FlashServerIP>http:\/\/pbx\.example\.net:8080\/provisioning\/<\/FlashServerIP>/);
  assert.match(t.body!, /<FlashFileName>\$mac\.cfg<\/FlashFileName>/);
  assert.not.match(t.body!, /S3cr3t|Adm1n|Ld4p|DefaultPassword/);
  const h = curl(['-A', FANVIL_NEW.ua, `${base}/F0V5UV200000.cfg`]);
  assert.is(h.status, 200);
  assert.is(h.body, t.body);
  assert.is(curl(['-A', FANVIL_NEW.ua, `${base}/fanvil_x5u_v2_hwv2_0.txt`]).status, 404, 'the firmware descriptor is refused on purpose');
  assert.match(tftpGet('fanvil_x5u_v2_hwv2_0.txt').out, /Error code 1/i);
});

test('the X5U-V2 gets $mac.cfg only with proof; then its own credentials (DefaultUsername/DefaultPassword) open it', () => {
  const url = `${base}/provisioning/${FANVIL_NEW.mac}.cfg`;
  const no = curl(['-A', FANVIL_NEW.ua, url]);
  assert.is(no.status, 401);
  assert.not.match(no.body, /S3cr3t/);
  const h = curl(['-A', FANVIL_NEW.ua, '--digest', '-u', CREDS, url]);
  assert.is(h.status, 200, h.body);
  xmlOk(h.body, `${FANVIL_NEW.mac}.cfg`);
  assert.match(h.body, /<sysConf>/);
  assert.match(h.body, /<RegisterPswd>S3cr3t&amp;&lt;201&gt;<\/RegisterPswd>/);
  assert.match(h.body, /<Value>102@1\/ba<\/Value>/, 'BLF key');
  const [u, p] = ownCredentials(FANVIL_NEW.mac).split(/:(.*)/s);
  assert.ok(h.body.includes(`<DefaultUsername>${u}</DefaultUsername>`) && h.body.includes(`<DefaultPassword>${p}</DefaultPassword>`));
  assert.is(curl(['-A', FANVIL_NEW.ua, '--digest', '-u', `${u}:${p}`, url]).status, 200);
  lease(FANVIL_NEW.mac);
  try {
    const t = tftpGet(`${FANVIL_NEW.mac}.cfg`);
    assert.is(t.status, 0, t.out);
    assert.is(t.body, h.body);
  } finally {
    unlease(FANVIL_NEW.mac);
  }
});

test('a Fanvil X4 (old firmware) boots: f0X4hw1.100.cfg, then $mac.cfg in the old <VOIP_CONFIG_FILE> format', () => {
  const c = tftpGet('f0X4hw1.100.cfg');
  assert.is(c.status, 0, c.out);
  xmlOk(c.body!, 'f0X4hw1.100.cfg');
  assert.match(c.body!, /<VOIP_CONFIG_FILE>/);
  assert.match(c.body!, /<Config_File_Name>\$mac\.cfg<\/Config_File_Name>/);
  golden('fanvil/oldxml/f0X4hw1.100.cfg', c.body!);
  const h = curl(['-A', FANVIL_OLD.ua, '--digest', '-u', CREDS, `${base}/${FANVIL_OLD.mac}.cfg`]);
  assert.is(h.status, 200, h.body);
  xmlOk(h.body, `${FANVIL_OLD.mac}.cfg`);
  assert.match(h.body, /<SIP_Line_List_Entry>\n<ID>SIP1<\/ID>\n<Phone_Number>202<\/Phone_Number>/);
  assert.match(h.body, /<Language>4<\/Language>/, 'old firmware numbers its languages: fr = 4');
  assert.match(h.body, /<ID>Fkey2<\/ID>/);
  golden('fanvil/oldxml/0c383e07e16c.cfg', h.body, FANVIL_OLD.mac);
});

test('apsctl device resync sends the Fanvil a NOTIFY with Event: check-sync', async () => {
  notifies.length = 0;
  lease(FANVIL_NEW.mac);
  const r = await ctlAsync('device', 'resync', FANVIL_NEW.mac);
  unlease(FANVIL_NEW.mac);
  assert.is(r.status, 0, r.out);
  assert.ok(notifies.length >= 1, `no NOTIFY reached the phone: ${r.out}`);
  assert.match(notifies[0], /\r\nEvent: check-sync\r\n/);
});

// ------------------------------------------------------------------------------------- unknown MACs

test('an unknown Cisco MAC fetching a file over HTTP gets the same 401 as a known one and no secret (test/sightings.test.ts: then it is a sighting)', () => {
  const mac = '0002fd00ee01';
  const h = curl(['-A', `Cisco/SPA508G-7.4.4 (${mac.toUpperCase()})(CBT141400UK)`, `${base}/provisioning/${mac}.xml`]);
  assert.is(h.status, 401);
  assert.not.match(h.body, /S3cr3t|flat-profile/);
});

test('an unknown Fanvil MAC fetching its file over HTTP gets 401 and no secret (test/sightings.test.ts: then it is a sighting)', () => {
  const mac = '0c383e00ee01';
  const ua = `Fanvil X5U-V2 2.12.16.17 ${mac}`;
  const h = curl(['-A', ua, `${base}/${mac}.cfg`]);
  assert.is(h.status, 401);
  assert.not.match(h.body, /S3cr3t|sysConf/);
});

test.run();
