/**
 * apsctl scan as an administrator runs it: nmap sweeps a range over a veth into a namespace
 * full of "phones" (a Yealink on the veth itself, a Polycom, a second Yealink and a PC as
 * macvlan interfaces beside it), and the phones appear as unprovisioned devices. Everything
 * runs inside namespaces made for this file; nothing touches the machine's own network.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { APSCTL, copyFixtureConfig, ctl } from './support/daemon.js';
import { canUseNetns, cleanupAll, createLink, which, type Link } from '../scripts/lib/netns.js';
import { parseNmapXml, parseScanRange } from '../src/inventory/scan.js';

const support = canUseNetns();
if (!support.ok) console.log(`scan tests in namespaces SKIPPED: ${support.why}`);
const nmapThere = which('nmap') !== null;
if (!nmapThere) console.log('scan tests with nmap SKIPPED: nmap is not installed (apt-get install nmap)');
const tn = support.ok && nmapThere ? test : test.skip;

const NET = '10.199.31';
const hex3 = () => randomBytes(3).toString('hex').match(/../g)!.join(':');
const YEALINK = `80:5e:c0:${hex3()}`;
const YEALINK_KNOWN = `00:15:65:${hex3()}`;
const POLYCOM = `00:04:f2:${hex3()}`;
const PC = `00:1b:21:${hex3()}`; // an Intel NIC: not a phone

let link: Link | undefined;
let cfg: ReturnType<typeof copyFixtureConfig> | undefined;

async function setUp(): Promise<{ link: Link; cfg: ReturnType<typeof copyFixtureConfig> }> {
  if (link && cfg) return { link, cfg };
  cfg = copyFixtureConfig();
  link = await createLink({ name: 'scan', hostIp: `${NET}.1`, peerIp: `${NET}.2`, prefix: 24, peerMac: YEALINK });
  const ip = (...a: string[]) => link!.exec('peer', 'ip', a, { check: true });
  // each interface answers ARP only for its own address (otherwise the veth answers for all)
  await link.exec('peer', 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce'], { check: true });
  const extra: [string, string, string][] = [['mvp', POLYCOM, `${NET}.3`], ['mvk', YEALINK_KNOWN, `${NET}.4`], ['mvc', PC, `${NET}.5`]];
  for (const [name, mac, addr] of extra) {
    await ip('link', 'add', name, 'link', link.peerIf, 'address', mac, 'type', 'macvlan', 'mode', 'bridge');
    await ip('addr', 'add', `${addr}/24`, 'dev', name);
    await ip('link', 'set', 'dev', name, 'up');
  }
  return { link, cfg };
}

test.after(async () => {
  await cleanupAll();
  if (cfg) fs.rmSync(cfg.dir, { recursive: true, force: true });
});

function scanIn(l: Link, configDir: string, ...args: string[]) {
  return l.exec('host', process.execPath, [APSCTL, '--config', configDir, 'scan', ...args], { timeoutMs: 60_000 });
}

test('a range is turned into nmap targets per /24, and bad ranges are refused with an example', () => {
  assert.equal(parseScanRange('10.0.0.10-10.0.0.50').targets, ['10.0.0.10-50']);
  assert.equal(parseScanRange('10.0.0.10-50').targets, ['10.0.0.10-50']);
  assert.equal(parseScanRange('10.0.0.200-10.0.2.5').targets, ['10.0.0.200-255', '10.0.1.0-255', '10.0.2.0-5']);
  assert.is(parseScanRange('10.0.0.200-10.0.2.5').count, 56 + 256 + 6);
  assert.equal(parseScanRange('10.0.0.7').targets, ['10.0.0.7']);
  assert.throws(() => parseScanRange('10.0.0.50-10.0.0.1'), /ends before it starts/);
  assert.throws(() => parseScanRange('10.0.0.1-10.2.0.1'), /more than 65536/);
  assert.throws(() => parseScanRange('10.0.0.300-301'), /not an IPv4 address/);
  assert.throws(() => parseScanRange('eth0'), /not an address range/);
});

test('nmap XML is read: live hosts with the MAC that answered, escaped text decoded', () => {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<!-- Nmap 7.93 scan initiated as: nmap -sn -&#45;stats-every 1s 10.0.0.1-3 -->
<nmaprun scanner="nmap" args="nmap -sn -&#45;stats-every 1s">
<taskprogress task="ARP Ping Scan" time="1" percent="50.00" remaining="1" etc="2"/>
<host><status state="up" reason="arp-response" reason_ttl="0"/>
<address addr="10.0.0.2" addrtype="ipv4"/>
<address addr="80:5E:C0:12:34:56" addrtype="mac" vendor="Yealink(Xiamen) Network Technology"/>
<hostnames>
</hostnames>
</host>
<host><status state="down" reason="no-response"/><address addr="10.0.0.3" addrtype="ipv4"/></host>
<host><status state="up" reason="localhost-response"/><address addr="10.0.0.1" addrtype="ipv4"/></host>
<host><status state="up"/><address addr="10.0.0.9" addrtype="ipv4"/><address addr="00:1B:21:00:00:01" addrtype="mac" vendor="Intel &amp; Co &gt; &#65;"/></host>
<runstats><finished time="1" exit="success" elapsed="0.5"/></runstats>
</nmaprun>`;
  const hosts = parseNmapXml(xml);
  assert.equal(hosts.map((h) => [h.ip, h.mac, h.macVendor]), [
    ['10.0.0.2', '805ec0123456', 'Yealink(Xiamen) Network Technology'],
    ['10.0.0.1', null, ''],
    ['10.0.0.9', '001b21000001', 'Intel & Co > A'],
  ]);
});

test('without nmap the scan says how to install it, and sends nothing', () => {
  const c = copyFixtureConfig();
  try {
    const r = spawnSync(process.execPath, [APSCTL, '--config', c.configDir, 'scan', '10.199.31.1-20', '--interface', 'lo', '--tenant', 'acme'], {
      encoding: 'utf8', timeout: 20_000, env: { ...process.env, PATH: '/nonexistent' },
    });
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /APS_ERR_USAGE: nmap is not installed: apt-get install nmap/);
  } finally {
    fs.rmSync(c.dir, { recursive: true, force: true });
  }
});

test('scan needs an interface and a tenant, and refuses an unknown tenant', () => {
  const c = copyFixtureConfig();
  try {
    let r = ctl(c.configDir, 'scan', '10.199.31.1-20', '--tenant', 'acme');
    assert.is(r.status, 2);
    assert.match(r.stderr, /scan needs --interface IF/);
    r = ctl(c.configDir, 'scan', '10.199.31.1-20', '--interface', 'lo');
    assert.match(r.stderr, /scan needs --tenant T/);
    r = ctl(c.configDir, 'scan', '10.199.31.1-20', '--interface', 'lo', '--tenant', 'nobody');
    assert.match(r.stderr, /no tenant "nobody"/);
  } finally {
    fs.rmSync(c.dir, { recursive: true, force: true });
  }
});

tn('a range off the interface\'s subnet, or an interface that does not exist, is refused before nmap runs', async () => {
  const { link: l, cfg: c } = await setUp();
  let r = await scanIn(l, c.configDir, '10.199.99.1-20', '--interface', l.hostIf, '--tenant', 'acme');
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`not on the subnet of ${l.hostIf} \\(${NET}\\.1/24\\): ARP reaches only the local link`));
  r = await scanIn(l, c.configDir, `${NET}.1-20`, '--interface', 'nosuch0', '--tenant', 'acme');
  assert.is(r.code, 1);
  assert.match(r.stderr, /no network interface nosuch0 \(expected one of /);
});

tn('a dry run shows the phones it would add and writes nothing', async () => {
  const { link: l, cfg: c } = await setUp();
  const r = await scanIn(l, c.configDir, `${NET}.1-${NET}.20`, '--interface', l.hostIf, '--tenant', 'acme', '--dry-run');
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`${NET}\\.2 +${YEALINK} +Yealink .* would be added`));
  assert.match(r.stdout, /dry run: nothing written/);
  assert.is(ctl(c.configDir, 'device', 'list').stdout, 'no devices\n');
});

tn('scan adds un-configured phones of supported vendors as unprovisioned, leaves known ones and PCs alone', async () => {
  const { link: l, cfg: c } = await setUp();
  assert.is(ctl(c.configDir, 'device', 'add', YEALINK_KNOWN, '--tenant', 'acme', '--template', 'yealink-full', '--model', 'T48S').status, 0);
  const r = await scanIn(l, c.configDir, `${NET}.1-${NET}.20`, '--interface', l.hostIf, '--tenant', 'acme', '--template', 'polycom-full', '--sip-server', `${NET}.1`);
  assert.is(r.code, 0, r.stderr);
  // progress while nmap runs, on stderr
  assert.match(r.stderr, new RegExp(`scanning ${NET}\\.1-${NET}\\.20 \\(20 addresses\\) on ${l.hostIf} with nmap \\(ARP\\)`));
  assert.match(r.stderr, new RegExp(`up: ${NET}\\.2 ${YEALINK} \\(Yealink\\)`));
  // the table at the end
  const row = (ip: string) => r.stdout.split('\n').find((x) => x.startsWith(ip + ' ')) ?? '';
  assert.match(row(`${NET}.2`), new RegExp(`${YEALINK} +Yealink +T18 \\(assumed\\) +- +added`));
  assert.match(row(`${NET}.3`), new RegExp(`${POLYCOM} +Polycom +VVX411 +polycom-full +added`));
  assert.match(row(`${NET}.4`), new RegExp(`${YEALINK_KNOWN} +Yealink +T48S +yealink-full +already known`));
  assert.match(row(`${NET}.5`), new RegExp(`${PC} +\\(.*\\) +- +- +not a phone`));
  assert.match(r.stdout, /scanned 20 addresses in [\d.]+ s: 4 up, 3 phones, 2 added, 1 already known/);
  // --sip-server differs from [provisioning] sip_server: said, not silently used
  assert.match(r.stderr, new RegExp(`note: unprovisioned phones register at \\[provisioning\\] sip_server = 1\\.1\\.1\\.1 .*not ${NET}\\.1`));

  const devices = JSON.parse(ctl(c.configDir, 'device', 'list', '--json').stdout) as { mac: string; state: string; source: string; lastIp: string; model: string; tenant: string }[];
  const by = new Map(devices.map((d) => [d.mac, d]));
  const mac = (s: string) => s.replace(/:/g, '');
  assert.is(devices.length, 3);
  assert.equal(
    [by.get(mac(YEALINK))?.state, by.get(mac(YEALINK))?.source, by.get(mac(YEALINK))?.lastIp, by.get(mac(YEALINK))?.tenant],
    ['unprovisioned', 'scan', `${NET}.2`, 'acme'],
  );
  assert.equal([by.get(mac(POLYCOM))?.state, by.get(mac(POLYCOM))?.source, by.get(mac(POLYCOM))?.lastIp], ['unprovisioned', 'scan', `${NET}.3`]);
  assert.equal([by.get(mac(YEALINK_KNOWN))?.state, by.get(mac(YEALINK_KNOWN))?.source, by.get(mac(YEALINK_KNOWN))?.model], ['unprovisioned', 'cli', 'T48S']); // added without a line: unprovisioned, and left so
  assert.is(by.get(mac(PC)), undefined);

  // a second scan finds nothing new
  const again = await scanIn(l, c.configDir, `${NET}.1-${NET}.20`, '--interface', l.hostIf, '--tenant', 'acme', '--json');
  assert.is(again.code, 0, again.stderr);
  const j = JSON.parse(again.stdout) as { hosts: { ip: string; status: string }[] };
  assert.equal(j.hosts.filter((h) => h.status === 'added'), []);
  assert.is(j.hosts.filter((h) => h.status === 'already known').length, 3);
});

test.run();
