/**
 * SIP plug-and-play as a phone fresh out of the box sees it: it multicasts a SUBSCRIBE
 * (Event: ua-profile) to 224.0.1.75:5060 on its link and gets 200 OK, then a NOTIFY whose body
 * is the provisioning URL; apsd records what it saw. The phones here are small UDP programs
 * (and sipp) in a peer namespace; apsd's PnP service runs in the host namespace on the veth.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { copyFixtureConfig, ctl } from './support/daemon.js';
import { canUseNetns, cleanupAll, createLink, waitUntil, which, type Link, type NsProcess } from '../scripts/lib/netns.js';
import { ROOT } from './support/paths.js';
import { contactTarget, macFromSipUser, readPnpSubscribe, responsePort, sipUser } from '../src/wire/pnp.js';
import { parseSip, type SipRequest } from '../src/wire/sip.js';
import { Store } from '../src/store/index.js';

const support = canUseNetns();
if (!support.ok) console.log(`pnp tests in namespaces SKIPPED: ${support.why}`);
const tn = support.ok ? test : test.skip;

const NET = '10.199.32';
const PHONE = `${NET}.2`;
const URL_ACME = 'http://pbx.acme.example:8080/provisioning/';

let link: Link | undefined;
let cfg: ReturnType<typeof copyFixtureConfig> | undefined;
let apsd: NsProcess | undefined;

/** The built apsd in the host namespace with [pnp] on the veth. */
async function setUp(): Promise<{ link: Link; cfg: ReturnType<typeof copyFixtureConfig>; apsd: NsProcess }> {
  if (link && cfg && apsd) return { link, cfg, apsd };
  cfg = copyFixtureConfig();
  link = await createLink({ name: 'pnp', hostIp: `${NET}.1`, peerIp: PHONE, prefix: 24 });
  fs.appendFileSync(path.join(cfg.configDir, 'aps.ini'), `\n[pnp]\nenabled = true\ninterface = ${link.hostIf}\n\n[discovery]\ntenant = acme\n`);
  apsd = link.spawn('host', process.execPath, [path.join(ROOT, 'dist/src/daemon.js'), '--config', cfg.configDir, '--http-listen', '', '--tftp-listen', ''], { env: { ...process.env, JOURNAL_STREAM: '' } });
  await apsd.waitFor(/apsd ready.*pnp=224\.0\.1\.75:5060@/, 15_000);
  return { link, cfg, apsd };
}

test.after(async () => {
  await apsd?.stop();
  await cleanupAll();
  if (cfg) fs.rmSync(cfg.dir, { recursive: true, force: true });
});

/** A phone in the peer namespace: multicasts `send`, answers NOTIFYs 200 (unless told not to), prints what it received. */
const PHONE_JS = `
  import dgram from 'node:dgram';
  const cfg = JSON.parse(process.argv[1]);
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const got = [];
  sock.on('message', (b, r) => {
    const t = b.toString('latin1');
    got.push({ from: r.address + ':' + r.port, at: Date.now(), text: t });
    if (t.startsWith('NOTIFY ') && cfg.answerNotify) {
      const h = (n) => (t.match(new RegExp('^' + n + ':.*$', 'mi')) || [''])[0];
      sock.send(['SIP/2.0 200 OK', h('Via'), h('From'), h('To'), h('Call-ID'), h('CSeq'), 'Content-Length: 0', '', ''].join('\\r\\n'), r.port, r.address);
    }
  });
  sock.bind(5060, cfg.ip, () => {
    sock.setMulticastInterface(cfg.ip);
    cfg.send.forEach((m, i) => setTimeout(() => sock.send(Buffer.from(m, 'latin1'), 5060, '224.0.1.75'), i * (cfg.gapMs ?? 100)));
    setTimeout(() => { process.stdout.write(JSON.stringify(got)); sock.close(); }, cfg.waitMs);
  });
`;

interface Got { from: string; at: number; text: string }

async function phone(l: Link, send: string[], opts: { answerNotify?: boolean; waitMs?: number; gapMs?: number } = {}): Promise<Got[]> {
  const r = await l.exec('peer', process.execPath, ['--input-type=module', '-e', PHONE_JS, JSON.stringify({ ip: PHONE, send, answerNotify: opts.answerNotify ?? true, waitMs: opts.waitMs ?? 1500, gapMs: opts.gapMs })], { timeoutMs: 20_000 });
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Got[];
}

function subscribe(o: { user: string; event: string; ua?: string; callId?: string; branch?: string; contact?: boolean }): string {
  const branch = o.branch ?? `z9hG4bK${randomBytes(6).toString('hex')}`;
  return [
    'SUBSCRIBE sip:224.0.1.75:5060 SIP/2.0',
    `Via: SIP/2.0/UDP ${PHONE}:5060;branch=${branch}`,
    'Max-Forwards: 70',
    `From: <sip:${o.user}@224.0.1.75>;tag=${randomBytes(4).toString('hex')}`,
    `To: <sip:${o.user}@224.0.1.75>`,
    `Call-ID: ${o.callId ?? randomBytes(8).toString('hex')}@${PHONE}`,
    'CSeq: 1 SUBSCRIBE',
    ...(o.contact === false ? [] : [`Contact: <sip:${o.user}@${PHONE}:5060>`]),
    `Event: ${o.event}`,
    'Accept: application/url',
    'Expires: 0',
    ...(o.ua ? [`User-Agent: ${o.ua}`] : []),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

const req = (g: Got): SipRequest => {
  const p = parseSip(Buffer.from(g.text, 'latin1'));
  if (!p.ok) throw new Error(p.reason);
  return p.msg as SipRequest;
};
const header = (text: string, name: string) => new RegExp(`^${name}: *(.*)$`, 'mi').exec(text)?.[1]?.trim();
const hex6 = () => randomBytes(3).toString('hex');

function sightingOf(stateDir: string, mac: string): { source: string; status: string; vendor: string | null; reason: string } | undefined {
  const s = Store.open(stateDir);
  try {
    return s.db.prepare('SELECT * FROM sightings WHERE mac = ?').get(mac) as never;
  } finally {
    s.close();
  }
}

test('the MAC is read from the From user in the forms phones use, and the Event parameters are read', () => {
  assert.is(macFromSipUser(sipUser('<sip:MAC%3a7C2F80E0D605@224.0.1.75>;tag=1')), '7c2f80e0d605');
  assert.is(macFromSipUser(sipUser('"Phone" <sip:mac:001565AABBCC@224.0.1.75>')), '001565aabbcc');
  assert.is(macFromSipUser(sipUser('sip:805ec0123456@224.0.1.75;tag=9')), '805ec0123456');
  assert.is(macFromSipUser(sipUser('<sip:anonymous@224.0.1.75>')), null);
  const r = parseSip(Buffer.from(subscribe({ user: 'MAC%3a805EC0123456', event: 'ua-profile;profile-type="device";vendor="Yealink";model="SIP-T46S";version="66.86.0.15"' })));
  assert.ok(r.ok);
  const s = readPnpSubscribe((r as { msg: SipRequest }).msg);
  assert.equal([s.event, s.profileType, s.vendor, s.model, s.version, s.mac], ['ua-profile', 'device', 'Yealink', 'SIP-T46S', '66.86.0.15', '805ec0123456']);
  assert.equal(contactTarget('<sip:x@10.0.0.2:5062;transport=udp>'), { host: '10.0.0.2', port: 5062, uri: 'sip:x@10.0.0.2:5062;transport=udp' });
  assert.is(contactTarget('<sip:x@phone.example>'), null);
  assert.is(responsePort('SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK1', 40000), 5062);
  assert.is(responsePort('SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1', 40000), 5060);
  assert.is(responsePort('SIP/2.0/UDP 10.0.0.2:5062;rport;branch=z9hG4bK1', 40000), 40000);
});

tn('a Yealink that multicasts a SUBSCRIBE gets 200 OK, then a NOTIFY with its provisioning URL, and becomes an unprovisioned device', async () => {
  const { link: l, cfg: c, apsd: d } = await setUp();
  const mac = `805ec0${hex6()}`;
  const sub = subscribe({ user: `MAC%3a${mac.toUpperCase()}`, event: 'ua-profile;profile-type="device";vendor="Yealink";model="SIP-T46S";version="66.86.0.15"', ua: 'Yealink SIP-T46S 66.86.0.15' });
  const got = await phone(l, [sub]);
  assert.is(got.length, 2, JSON.stringify(got));
  const [ok, notify] = got;
  // 200 OK to the phone's port 5060, with a To tag and our Contact
  assert.match(ok.text, /^SIP\/2\.0 200 OK\r\n/);
  assert.is(ok.from, `${NET}.1:5060`);
  const toTag = /;tag=([^;\s]+)/.exec(header(ok.text, 'To')!)?.[1];
  assert.ok(toTag);
  assert.is(header(ok.text, 'Expires'), '0');
  assert.match(header(ok.text, 'Contact')!, new RegExp(`<sip:aps@${NET}\\.1:5060>`));
  // then the NOTIFY in the same dialog: body only the URL (the tenant's IP/DNS map applied)
  const n = req(notify);
  assert.is(n.method, 'NOTIFY');
  assert.is(n.uri, `sip:MAC%3a${mac.toUpperCase()}@${PHONE}:5060`);
  assert.is(header(notify.text, 'Content-Type'), 'application/url');
  assert.is(header(notify.text, 'Subscription-State'), 'terminated;reason=timeout');
  assert.is(header(notify.text, 'Event'), 'ua-profile;profile-type="device";vendor="Yealink";model="SIP-T46S";version="66.86.0.15"');
  assert.is(header(notify.text, 'Call-ID'), header(sub, 'Call-ID'));
  assert.is(header(notify.text, 'To'), header(sub, 'From'));
  assert.match(header(notify.text, 'From')!, new RegExp(`;tag=${toTag}$`));
  assert.is(n.body.toString(), URL_ACME);
  assert.ok(notify.at >= ok.at);
  // apsd saw its NOTIFY answered, logged the subscribe, and the inventory made the device
  await d.waitFor(new RegExp(`pnp notify answered.* mac=${mac} ip=${PHONE.replace(/\./g, '\\.')} port=5060 status=200 attempts=1`), 5000);
  assert.match(d.output(), new RegExp(`pnp subscribe answered.* mac=${mac} ip=${PHONE.replace(/\./g, '\\.')} vendor=yealink model=T46S version=66.86.0.15`));
  const dev = (JSON.parse(ctl(c.configDir, 'device', 'list', '--json').stdout) as { mac: string; state: string; source: string; tenant: string; vendor: string; model: string; lastIp: string }[]).find((x) => x.mac === mac);
  assert.equal([dev?.state, dev?.source, dev?.tenant, dev?.vendor, dev?.model, dev?.lastIp], ['unprovisioned', 'pnp', 'acme', 'yealink', 'T46S', PHONE]);
  assert.equal(sightingOf(c.stateDir, mac)?.source, 'pnp');
});

tn('a From user in the MAC%3a… form of a vendor aps does not serve is answered and recorded as a sighting, not a device', async () => {
  const { link: l, cfg: c } = await setUp();
  // an OUI no vendor of vendors/ claims (IEEE: a NIC maker, not a phone)
  const mac = `00155d${hex6()}`;
  const got = await phone(l, [subscribe({ user: `MAC%3a${mac.toUpperCase()}`, event: 'ua-profile;profile-type="device";vendor="Acme";model="Door 1";version="1.0"' })]);
  assert.equal(got.map((g) => g.text.split('\r\n')[0]), ['SIP/2.0 200 OK', `NOTIFY sip:MAC%3a${mac.toUpperCase()}@${PHONE}:5060 SIP/2.0`]);
  // a quoted model with spaces: the NOTIFY still names the package and profile type
  assert.is(header(got[1].text, 'Event'), 'ua-profile;profile-type="device"');
  assert.is(req(got[1]).body.toString(), URL_ACME);
  await waitUntil(() => sightingOf(c.stateDir, mac) !== undefined, 5000, 'the sighting');
  const s = sightingOf(c.stateDir, mac)!;
  assert.equal([s.source, s.status], ['pnp', 'ignored']);
  assert.ok(!JSON.parse(ctl(c.configDir, 'device', 'list', '--json').stdout).some((x: { mac: string }) => x.mac === mac));
});

tn('a phone already known gets the URL of its own tenant', async () => {
  const { link: l, cfg: c } = await setUp();
  const mac = `805ec0${hex6()}`;
  fs.writeFileSync(path.join(c.dir, 'one.txt'), mac + '\n');
  assert.is(ctl(c.configDir, 'import', path.join(c.dir, 'one.txt'), '--tenant', 'default', '--model', 'T46S').status, 0);
  const got = await phone(l, [subscribe({ user: mac, event: 'ua-profile;profile-type="device"' })]);
  assert.is(req(got[1]).body.toString(), 'http://pbx.example.net:8080/provisioning/');
});

tn('a SUBSCRIBE for another event gets 489 Bad Event and no NOTIFY', async () => {
  const { link: l, apsd: d } = await setUp();
  const got = await phone(l, [subscribe({ user: `805ec0${hex6()}`, event: 'presence' })], { waitMs: 1200 });
  assert.equal(got.map((g) => g.text.split('\r\n')[0]), ['SIP/2.0 489 Bad Event']);
  assert.is(header(got[0].text, 'Allow-Events'), 'ua-profile');
  assert.match(d.output(), /pnp subscribe refused: not ua-profile.* ip=10\.199\.32\.2 event=presence/);
});

tn('garbage and other SIP on the group are dropped without an answer, and the next SUBSCRIBE is answered', async () => {
  const { link: l, apsd: d } = await setUp();
  const mac = `805ec0${hex6()}`;
  const options = subscribe({ user: mac, event: 'ua-profile' }).replace(/SUBSCRIBE/g, 'OPTIONS');
  const got = await phone(l, ['\x00\x01garbage\r\n\r\n', 'SUBSCRIBE sip:224.0.1.75 SIP/2.0\r\nVia: broken\r\n\r\n', options, subscribe({ user: mac, event: 'ua-profile' })]);
  assert.equal(got.map((g) => g.text.split('\r\n')[0]), ['SIP/2.0 200 OK', `NOTIFY sip:${mac}@${PHONE}:5060 SIP/2.0`]);
  assert.match(d.output(), /pnp datagram dropped.* ip=10\.199\.32\.2 reason=/);
  assert.match(d.output(), /pnp: not a SUBSCRIBE, ignored.* ip=10\.199\.32\.2 what=OPTIONS/);
});

tn('a SUBSCRIBE repeated (AudioCodes repeats it for about 5 s) gets the same 200 OK each time and one NOTIFY', async () => {
  const { link: l } = await setUp();
  const sub = subscribe({ user: `00908f${hex6()}`, event: 'ua-profile;profile-type="device";vendor="AudioCodes";model="440HD"', branch: 'z9hG4bKrepeat' + hex6() });
  const got = await phone(l, [sub, sub, sub], { gapMs: 200 });
  const oks = got.filter((g) => g.text.startsWith('SIP/2.0 200'));
  const notifies = got.filter((g) => g.text.startsWith('NOTIFY'));
  assert.is(oks.length, 3);
  assert.is(new Set(oks.map((o) => o.text)).size, 1);
  assert.is(notifies.length, 1);
});

tn('a NOTIFY nobody answers is sent again on the RFC 3261 timers (0.5 s, then 1 s, …)', async () => {
  const { link: l } = await setUp();
  const got = await phone(l, [subscribe({ user: `805ec0${hex6()}`, event: 'ua-profile' })], { answerNotify: false, waitMs: 2000 });
  const notifies = got.filter((g) => g.text.startsWith('NOTIFY'));
  assert.ok(notifies.length >= 3, `${notifies.length} NOTIFYs`);
  assert.is(new Set(notifies.map((x) => x.text)).size, 1);
  const gaps = notifies.slice(1).map((x, i) => x.at - notifies[i].at);
  assert.ok(gaps[0] >= 400 && gaps[0] <= 800, `first gap ${gaps[0]} ms`);
  assert.ok(gaps[1] >= 850 && gaps[1] <= 1300, `second gap ${gaps[1]} ms`);
});

const sipp = which('sipp');
if (!sipp) console.log('pnp sipp test SKIPPED: sipp is not installed (apt-get install sip-tester)');
(support.ok && sipp ? test : test.skip)('sipp as a phone: SUBSCRIBE to the group, 200 OK, NOTIFY with the URL, 200 back', async () => {
  const { link: l } = await setUp();
  await l.exec('peer', 'ip', ['route', 'replace', '224.0.0.0/4', 'dev', l.peerIf], { check: true });
  const mac = `805ec0${hex6()}`.toUpperCase();
  const scenario = l.file('pnp.xml', `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="PnP phone">
  <send>
    <![CDATA[
SUBSCRIBE sip:224.0.1.75:5060 SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
Max-Forwards: 70
From: <sip:MAC%3a${mac}@224.0.1.75>;tag=[pid]SIPpTag00[call_number]
To: <sip:MAC%3a${mac}@224.0.1.75>
Call-ID: [call_id]
CSeq: 1 SUBSCRIBE
Contact: <sip:MAC%3a${mac}@[local_ip]:[local_port]>
Event: ua-profile;profile-type="device";vendor="Yealink";model="SIP-T46S";version="66.86.0.15"
Accept: application/url
Expires: 0
Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
  <recv request="NOTIFY">
    <action>
      <ereg regexp="application/url" search_in="hdr" header="Content-Type:" check_it="true" assign_to="ct" />
      <ereg regexp="^${URL_ACME.replace(/\./g, '\\.')}$" search_in="body" check_it="true" assign_to="url" />
      <log message="NOTIFY [$ct] [$url]" />
    </action>
  </recv>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
</scenario>
`);
  const r = await l.exec('peer', 'sipp', ['-sf', scenario, '-i', PHONE, '-p', '5060', '-m', '1', '-timeout', '10s', '-timeout_error', '-nostdin', '224.0.1.75:5060'], { timeoutMs: 20_000 });
  assert.is(r.code, 0, `sipp exit ${r.code}: ${r.stdout.slice(-1500)} ${r.stderr}`);
});

/** 100,000 fuzzed SIP datagrams from the peer namespace: mutated SUBSCRIBEs and garbage. */
const FUZZ_JS = `
  import dgram from 'node:dgram';
  const cfg = JSON.parse(process.argv[1]);
  let seed = 0x51f;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const base = Buffer.from(cfg.base, 'latin1');
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  sock.bind(0, cfg.ip, async () => {
    sock.setMulticastInterface(cfg.ip);
    let sent = 0;
    const deadline = Date.now() + 120000;
    for (let i = 0; i < cfg.n && Date.now() < deadline; i++) {
      let b;
      const k = rnd();
      if (k < 0.3) { b = Buffer.alloc(1 + Math.floor(rnd() * 1400)); for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256); }
      else {
        b = Buffer.from(base);
        const flips = 1 + Math.floor(rnd() * 8);
        for (let f = 0; f < flips; f++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
        if (rnd() < 0.3) b = b.subarray(0, Math.floor(rnd() * b.length));
        if (rnd() < 0.1) b = Buffer.concat([b, Buffer.alloc(Math.floor(rnd() * 3000), 0x41)]);
      }
      sock.send(b, 5060, '224.0.1.75');
      sent++;
      if (i % 200 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    setTimeout(() => { process.stdout.write(String(sent)); sock.close(); }, 200);
  });
`;

tn('(security f) 100,000 fuzzed SIP datagrams leave the plug-and-play responder up and answering', async () => {
  const { link: l, apsd: d } = await setUp();
  const base = subscribe({ user: 'MAC%3a805EC0FFFF01', event: 'ua-profile;profile-type="device";vendor="Yealink";model="SIP-T46S"' });
  const r = await l.exec('peer', process.execPath, ['--input-type=module', '-e', FUZZ_JS, JSON.stringify({ ip: PHONE, base, n: 100_000 })], { timeoutMs: 180_000 });
  assert.is(r.code, 0, r.stderr);
  assert.ok(Number(r.stdout) >= 100_000, `sent ${r.stdout}`);
  assert.ok(d.running, 'apsd is still running');
  const mac = `805ec0${hex6()}`;
  const got = await phone(l, [subscribe({ user: `MAC%3a${mac.toUpperCase()}`, event: 'ua-profile;profile-type="device"' })], { waitMs: 3000 });
  assert.ok(got.some((g) => g.text.startsWith('SIP/2.0 200 OK')), JSON.stringify(got.map((g) => g.text.split('\r\n')[0])));
  assert.ok(got.some((g) => g.text.startsWith('NOTIFY ')));
});

test.run();
