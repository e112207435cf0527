/**
 * An interface is not the daemon (issue 14, point 1): DHCP capture, the built-in DHCP server and
 * SIP PnP on a veth that is set down, deleted and re-created under a running apsd, while curl and
 * tftp keep getting files from the same process; a capture interface missing at start-up is a
 * warning and a wait, not a refusal; `apsctl status` says what waits and why.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { APSD, copyFixtureConfig, ctl, curl, run, startDaemon } from './support/daemon.js';
import { canUseNetns, cleanupAll, createLink, waitUntil, which, type Link, type NsProcess } from '../scripts/lib/netns.js';

const support = canUseNetns();
if (!support.ok) console.log(`interfaces: the network-namespace cases are SKIPPED: ${support.why}`);
const tn = support.ok && which('dhclient') && which('tftp') ? test : test.skip;

const cleanups: (() => void | Promise<void>)[] = [];
test.after(async () => {
  for (const c of cleanups.reverse()) await c();
  await cleanupAll();
});

const FW = Buffer.alloc(300_000, 0x5a);

interface Status { pid: number; services: { service: string; interface?: string; state: string; since: string; lastError?: string }[] }
const status = (configDir: string): Status => {
  const r = ctl(configDir, '--json', 'status');
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Status;
};

test('a capture interface missing at start-up is a warning: apsd serves, and apsctl status says it waits for it', async () => {
  const d = await startDaemon({
    setup: (configDir, stateDir) => {
      fs.appendFileSync(path.join(configDir, 'aps.ini'), '\n[dhcp]\ncapture = nope0\n');
      fs.mkdirSync(path.join(stateDir, 'firmware'), { recursive: true });
      fs.writeFileSync(path.join(stateDir, 'firmware', 'fw.rom'), FW);
    },
  });
  cleanups.push(() => d.cleanup());
  await d.waitLog(/level=warn msg="dhcp capture waiting for its interface[^"]*" service=dhcp-capture interface=nope0 why="no interface nope0"/);
  assert.is(curl([`http://${d.http}/fw.rom`]).body.length, FW.length);
  const st = status(d.configDir);
  assert.is(st.pid, d.proc.pid);
  assert.equal(st.services.map((s) => [s.service, s.interface, s.state, s.lastError]), [['dhcp-capture', 'nope0', 'waiting', 'no interface nope0']]);
  const text = d.ctl('status');
  assert.match(text.stdout, /dhcp-capture +nope0 +waiting +\S+ +no interface nope0/);
  assert.is(await d.stop(), 0);
});

test('a name in [dhcp] capture that cannot be an interface is still refused at start-up, naming file, line and key', () => {
  const { dir, configDir } = copyFixtureConfig();
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.appendFileSync(path.join(configDir, 'aps.ini'), '\n[dhcp]\ncapture = not an interface!\n');
  const r = run(process.execPath, [APSD, '--config', configDir, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0']);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /APS_ERR_CONFIG: [^ ]*aps\.ini:\d+: \[dhcp\] capture: \\"not an interface!\\" is not an interface name/);
});

// ---------------------------------------------------------------------- the veth comes and goes

const NET = '10.197.44';
const MAC = '80:5e:c0:44:00:01';

interface Aps { proc: NsProcess; configDir: string; stateDir: string; http: string; tftpPort: number }

async function startAps(l: Link): Promise<Aps> {
  const { dir, configDir, stateDir } = copyFixtureConfig();
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.appendFileSync(path.join(configDir, 'aps.ini'), [
    '', '[dhcp]', `capture = ${l.hostIf}`,
    '', '[dhcp_server]', 'enabled = true', `interface = ${l.hostIf}`, `range = ${NET}.100-${NET}.150`, 'netmask = 255.255.255.0',
    '', '[pnp]', 'enabled = true', `interface = ${l.hostIf}`, '',
  ].join('\n'));
  fs.mkdirSync(path.join(stateDir, 'firmware'), { recursive: true });
  fs.writeFileSync(path.join(stateDir, 'firmware', 'fw.rom'), FW);
  const proc = l.spawn('host', process.execPath, [APSD, '--config', configDir, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0'], { env: { ...process.env, JOURNAL_STREAM: '' } });
  cleanups.push(() => proc.stop(5000));
  const ready = await proc.waitFor(/apsd ready/, 15_000);
  return { proc, configDir, stateDir, http: /http=([0-9.:]+)/.exec(ready)![1]!, tftpPort: Number(/tftp=[0-9.]+:(\d+)/.exec(ready)![1]) };
}

/** curl and tftp-hpa, run in apsd's namespace, fetch the firmware image whole from the same process. */
async function filesStillServed(l: Link, a: Aps, what: string): Promise<void> {
  const h = await l.exec('host', 'curl', ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `http://${a.http}/fw.rom`]);
  assert.is(h.stdout, `200 ${FW.length}`, `HTTP ${what}: ${h.stderr}`);
  const out = l.file(`tftp-${randomBytes(3).toString('hex')}.rom`);
  const t = await l.exec('host', 'tftp', ['127.0.0.1', String(a.tftpPort), '-m', 'octet', '-c', 'get', 'fw.rom', out], { timeoutMs: 20_000 });
  assert.is(fs.statSync(out).size, FW.length, `TFTP ${what}: ${t.stdout}${t.stderr}`);
  fs.rmSync(out);
  assert.ok(a.proc.running, `apsd is still the same process ${what}`);
}

async function waitStates(a: Aps, state: string, ms = 10_000): Promise<Status> {
  let st: Status | undefined;
  await waitUntil(() => {
    st = status(a.configDir);
    return st.services.length === 3 && st.services.every((s) => s.state === state);
  }, ms, `every service ${state}: ${JSON.stringify(st?.services)}`, 200);
  return st!;
}

/** dhclient in the peer namespace gets an address from apsd's DHCP server, and the capture records the exchange. */
async function phoneGetsLease(l: Link, a: Aps, tag: string): Promise<string> {
  await l.setMac('peer', MAC);
  const conf = l.file(`${tag}.conf`, 'send vendor-class-identifier "yealink";\nrequest subnet-mask, routers, tftp-server-name;\ntimeout 15;\n');
  const hook = l.file(`${tag}.sh`, `#!/bin/sh\n[ "$reason" = BOUND ] && echo "$new_ip_address" > "${l.dir}/${tag}.ip.tmp" && mv "${l.dir}/${tag}.ip.tmp" "${l.dir}/${tag}.ip"\nexit 0\n`, 0o755);
  const p = l.spawn('peer', 'dhclient', ['-d', '-1', '-v', '-cf', conf, '-sf', hook, '-lf', l.file(`${tag}.leases`), '-pf', l.file(`${tag}.pid`), l.peerIf]);
  try {
    await waitUntil(() => fs.existsSync(l.file(`${tag}.ip`)), 25_000, `dhclient (${tag}) bound by apsd`);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- dhclient:\n${p.output()}\n--- apsd:\n${a.proc.output().slice(-3000)}`);
  } finally {
    await p.stop(1000);
  }
  const ip = fs.readFileSync(l.file(`${tag}.ip`), 'utf8').trim();
  await waitUntil(() => {
    const r = ctl(a.configDir, '--json', 'sighting', 'list');
    return r.status === 0 && r.stdout.includes('805ec0440001');
  }, 5000, 'the capture to record the phone', 200);
  return ip;
}

/** A phone's PnP SUBSCRIBE on the veth is answered 200 by apsd. */
async function pnpAnswers(l: Link, peerIp: string): Promise<boolean> {
  // the dhclient hook only records the lease: the phone takes its address here
  await l.exec('peer', 'ip', ['addr', 'replace', `${peerIp}/24`, 'dev', l.peerIf], { check: true });
  await l.exec('peer', 'ip', ['route', 'replace', '224.0.0.0/4', 'dev', l.peerIf], { check: true });
  const js = `
    import dgram from 'node:dgram';
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    let ok = false;
    s.on('message', (b) => { if (b.toString().startsWith('SIP/2.0 200')) ok = true; });
    s.bind(5060, ${JSON.stringify(peerIp)}, () => {
      s.setMulticastInterface(${JSON.stringify(peerIp)});
      const m = ['SUBSCRIBE sip:224.0.1.75:5060 SIP/2.0', 'Via: SIP/2.0/UDP ${peerIp}:5060;branch=z9hG4bK' + Date.now(), 'From: <sip:MAC%3a805EC0440001@224.0.1.75>;tag=1',
        'To: <sip:MAC%3a805EC0440001@224.0.1.75>', 'Call-ID: ' + Date.now() + '@x', 'CSeq: 1 SUBSCRIBE', 'Event: ua-profile;profile-type="device";vendor="Yealink";model="T46S";version="1"',
        'Accept: application/url', 'Expires: 0', 'Content-Length: 0', '', ''].join('\\r\\n');
      s.send(m, 5060, '224.0.1.75');
      setTimeout(() => { process.stdout.write(ok ? 'answered' : 'silent'); s.close(); }, 1500);
    });`;
  const r = await l.exec('peer', process.execPath, ['--input-type=module', '-e', js], { timeoutMs: 10_000 });
  return r.stdout === 'answered';
}

tn('a veth set down, deleted and re-created under apsd: capture, DHCP server and PnP wait and resume, HTTP and TFTP never stop', async () => {
  const l = await createLink({ name: 'ifc', hostIp: `${NET}.1`, prefix: 24 });
  const a = await startAps(l);
  await waitStates(a, 'running');
  const ip1 = await phoneGetsLease(l, a, 'first');
  assert.ok(await pnpAnswers(l, ip1), 'PnP answers before the interface goes');
  await filesStillServed(l, a, 'with the interface up');

  // down: the capture library aborts its child process; apsd itself keeps serving
  await l.exec('host', 'ip', ['link', 'set', l.hostIf, 'down'], { check: true });
  const down = await waitStates(a, 'waiting');
  for (const s of down.services) assert.match(s.lastError ?? '', new RegExp(`${l.hostIf}.*down|down.*${l.hostIf}`), s.service);
  await filesStillServed(l, a, 'with the interface down');
  await l.exec('host', 'ip', ['link', 'set', l.hostIf, 'up'], { check: true });
  await waitStates(a, 'running');
  const ip2 = await phoneGetsLease(l, a, 'after-up');
  assert.ok(await pnpAnswers(l, ip2), 'PnP answers after the interface came back up');

  // deleted, then a new veth of the same name (another ifindex)
  await l.exec('host', 'ip', ['link', 'del', l.hostIf], { check: true });
  const gone = await waitStates(a, 'waiting');
  assert.ok(gone.services.some((s) => /no interface/.test(s.lastError ?? '')), JSON.stringify(gone.services));
  await filesStillServed(l, a, 'with the interface deleted');
  await l.exec('host', 'ip', ['link', 'add', l.hostIf, 'type', 'veth', 'peer', 'name', l.peerIf, 'netns', l.peerNs], { check: true });
  await l.exec('host', 'ip', ['addr', 'add', `${NET}.1/24`, 'dev', l.hostIf], { check: true });
  await l.exec('host', 'ip', ['link', 'set', l.hostIf, 'up'], { check: true });
  await l.exec('peer', 'ip', ['link', 'set', l.peerIf, 'up'], { check: true });
  await waitStates(a, 'running', 40_000);
  const ip3 = await phoneGetsLease(l, a, 'recreated');
  assert.ok(await pnpAnswers(l, ip3), 'PnP answers on the re-created interface');
  await filesStillServed(l, a, 'after the interface was re-created');

  // each change logged once per service, and never a crash of apsd
  const log = a.proc.output();
  assert.is(log.match(/dhcp capture waiting for its interface/g)?.length, 2, log);
  assert.is(log.match(/DHCP server waiting for its interface/g)?.length, 2, log);
  assert.is(log.match(/pnp waiting for its interface/g)?.length, 2, log);
  assert.not.match(log, /uncaught|Assertion/);
});

test.run();
