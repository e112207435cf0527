/**
 * The built-in DHCP server ([dhcp_server]) end to end: apsd runs inside the server namespace of
 * a veth link with the DHCP server on its end of the link; real dhclient runs in the client
 * namespace, and hand-made messages (encoded with the project's codec) come from a bare UDP
 * socket there (test/support/dhcp-udp-client.ts) for the exchanges dhclient cannot be asked
 * to make: a REQUEST naming another server, an INIT-REBOOT for a wrong address, DECLINE,
 * RELEASE, INFORM, a relayed request and garbage.
 *
 * apsd is the built daemon (dist/src/daemon.js) in the server namespace. The vendors are the real ones plus the
 * fixture vendor ciscofix (asks for option 150). Needs iproute2 and isc-dhcp-client, and root;
 * skipped, with the reason printed, only where network namespaces cannot be made.
 */
import { dhclientHex, dhclientOnce } from './support/peers.js';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeDhcp, encodeDhcp, parseSubOptions, type DhcpEncodeInput, type DhcpMessage } from '../src/wire/dhcp.js';
import { LeasePool } from '../src/dhcp/pool.js';
import { decideLetGo, decideRequest } from '../src/dhcp/exchange.js';
import type { DhcpLeaseRow } from '../src/store/dhcp-leases.js';
import type { Mac } from '../src/mac.js';
import { copyFixtureConfig, ctl, run } from './support/daemon.js';
import { canUseNetns, cleanupAll, createLink, waitUntil, which, type Link, type NsProcess } from '../scripts/lib/netns.js';
import { ROOT, VENDORS_DIR } from './support/paths.js';

const RUNNER = path.join(ROOT, 'dist/src/daemon.js');
const UDP_CLIENT = path.join(ROOT, 'dist/test/support/dhcp-udp-client.js');
const SERVER_IP = '10.197.0.1';
const PEER_IP = '10.197.0.9';
const RANGE = ['10.197.0.100', '10.197.0.150'] as const;
const inRange = (ip: string | undefined) => !!ip && /^10\.197\.0\.(1[0-4]\d|150)$/.test(ip);
/** [provisioning] url is a dummy IP that the IP/DNS maps turn into the PBX's name. */
const URL_GLOBAL = 'http://pbx.example.net:8080/provisioning/';
const URL_ACME = 'http://pbx.acme.example:8080/provisioning/';

const YEALINK_ACME = '80:5e:c0:aa:00:01'; // a device of tenant acme
const YEALINK_NEW = '80:5e:c0:aa:00:02'; // not in the inventory: [discovery] tenant = default
const AASTRA = '00:08:5d:aa:00:03';
const CISCOFIX = '02:00:00:aa:01:50';
const NOT_A_PHONE = '02:00:00:aa:00:05';
const CISCO_SPA = '02:00:00:aa:05:04'; // known by its class "Cisco SPA504G" only
const FANVIL = '0c:38:3e:aa:00:07';

const support = canUseNetns();
if (!support.ok) console.log(`dhcp-server tests SKIPPED: ${support.why}`);
const t = support.ok ? test : test.skip;

interface World {
  link: Link;
  site: { dir: string; configDir: string; stateDir: string };
  vendorsDir: string;
  server?: NsProcess;
}
let w: World | undefined;

// ------------------------------------------------------------------------------- helpers

function iniFor(link: Link, extra: { mode?: 'full' | 'inform'; url?: boolean } = {}): string {
  return [
    '[server]',
    `state_dir = ${w!.site.stateDir}`,
    'log_level = debug',
    '[http]',
    'listen = 0.0.0.0:8080',
    'alias = provisioning',
    '[tftp]',
    'listen = 0.0.0.0:69',
    '[provisioning]',
    ...(extra.url === false ? [] : ['url = http://1.1.1.1:8080/provisioning/']),
    '[security]',
    'tftp_secrets = lease',
    '[ip_dns_map]',
    '1.1.1.1 = pbx.example.net',
    '[dhcp_server]',
    'enabled = true',
    `mode = ${extra.mode ?? 'full'}`,
    `interface = ${link.ifname('host')}`,
    `range = ${RANGE[0]}-${RANGE[1]}`,
    'netmask = 255.255.255.0',
    `router = ${SERVER_IP}`,
    `dns = ${SERVER_IP}`,
    'ntp = 10.197.0.2',
    'domain = voice.example',
    'lease_time = 10m',
    '',
  ].join('\n');
}

async function startServer(ini: string): Promise<NsProcess> {
  fs.writeFileSync(path.join(w!.site.configDir, 'aps.ini'), ini);
  const p = w!.link.spawn('host', process.execPath, [RUNNER, '--config', w!.site.configDir, '--vendors', w!.vendorsDir], { env: { ...process.env, JOURNAL_STREAM: '' } });
  w!.server = p;
  await p.waitFor(/apsd ready/, 20_000);
  return p;
}

async function stopServer(): Promise<void> {
  const p = w!.server;
  if (!p) return;
  await p.stop(5000);
  w!.server = undefined;
  // like every apsd of the suite, its log goes to the last suite, which looks for leaked secrets
  if (process.env.APS_TEST_LOG_DIR) {
    fs.mkdirSync(process.env.APS_TEST_LOG_DIR, { recursive: true });
    fs.writeFileSync(path.join(process.env.APS_TEST_LOG_DIR, `apsd-dhcp-${p.pid}.log`), p.output());
  }
}

function serverLog(): string {
  return w!.server?.output() ?? '';
}

/** Client namespace ready for the bare UDP client: its MAC, its address, a route for broadcasts. */
async function peerReady(link: Link, mac?: string): Promise<void> {
  if (mac) await link.setMac('peer', mac);
  await link.exec('peer', 'ip', ['route', 'replace', 'default', 'dev', link.ifname('peer')], { check: true });
}

interface Got {
  msg: DhcpMessage;
  from: string;
  port: number;
}

/** Sends the datagrams from the client namespace; returns the DHCP replies that arrived. */
async function udp(link: Link, sends: (Buffer | { buf: Buffer; to: string; port: number })[], opts: { listenMs?: number; until?: number; bind?: number } = {}): Promise<Got[]> {
  const plan = {
    bind: opts.bind,
    sends: sends.map((s) => (Buffer.isBuffer(s) ? { hex: s.toString('hex') } : { hex: s.buf.toString('hex'), to: s.to, port: s.port })),
    listenMs: opts.listenMs ?? 3000,
    until: opts.until,
  };
  const r = await link.exec('peer', process.execPath, [UDP_CLIENT, JSON.stringify(plan)], { timeoutMs: 40_000 });
  assert.is(r.code, 0, `udp client failed: ${r.stderr}`);
  const list = JSON.parse(r.stdout.trim() || '[]') as { hex: string; from: string; port: number }[];
  return list.map((g) => {
    const d = decodeDhcp(Buffer.from(g.hex, 'hex'));
    assert.ok(d.ok, `the server sent something that does not decode: ${d.ok ? '' : d.reason}`);
    return { msg: (d as { msg: DhcpMessage }).msg, from: g.from, port: g.port };
  });
}

const xid = () => randomBytes(4).readUInt32BE(0);

/** A client message with the broadcast flag set (so that the reply reaches a client with no address). */
function msg(type: DhcpEncodeInput['type'], mac: string, extra: Partial<DhcpEncodeInput> = {}): Buffer {
  return encodeDhcp({ xid: xid(), chaddr: mac, flags: 0x8000, type, paramList: [1, 3, 6, 15, 42, 43, 66, 150], ...extra });
}

/** One reply of this type, or fail saying what came instead. */
function one(got: Got[], type: string): DhcpMessage {
  const m = got.filter((g) => g.msg.type === type);
  assert.is(m.length, 1, `expected one DHCP${type}, got ${got.map((g) => g.msg.type).join(', ') || 'nothing'}\nserver log:\n${serverLog().slice(-3000)}`);
  return m[0]!.msg;
}

/** DISCOVER → OFFER → REQUEST → ACK from the bare client; returns the address bound. */
async function dora(link: Link, mac: string, extra: Partial<DhcpEncodeInput> = {}): Promise<{ ip: string; offer: DhcpMessage; ack: DhcpMessage }> {
  const offer = one(await udp(link, [msg('DISCOVER', mac, extra)], { until: 1 }), 'OFFER');
  const ack = one(await udp(link, [msg('REQUEST', mac, { ...extra, serverId: SERVER_IP, requestedIp: offer.yiaddr })], { until: 1 }), 'ACK');
  assert.is(ack.yiaddr, offer.yiaddr);
  return { ip: ack.yiaddr, offer, ack };
}

function dhclientConf(vendorClass?: string): string[] {
  return [
    'option tftp150 code 150 = array of ip-address;',
    ...(vendorClass ? [`send vendor-class-identifier "${vendorClass}";`] : []),
    'request subnet-mask, routers, domain-name-servers, domain-name, ntp-servers, tftp-server-name, tftp150, vendor-encapsulated-options;',
  ];
}

/** Runs dhclient once as this MAC (a fresh lease file); returns its environment on BOUND. */
function dhclient(link: Link, mac: string, vendorClass?: string): Promise<Map<string, string>> {
  return dhclientOnce(link, { mac, conf: dhclientConf(vendorClass), context: () => `server log:\n${serverLog().slice(-3000)}` });
}

const PROVISIONING_VARS = ['new_tftp_server_name', 'new_tftp150', 'new_vendor_encapsulated_options'];
function provisioning(env: Map<string, string>): string[] {
  return PROVISIONING_VARS.filter((k) => env.has(k));
}


interface LeaseJson {
  mac: string;
  ip: string;
  source: string;
  state: string;
  active: boolean;
}
function leaseList(): LeaseJson[] {
  const r = ctl(w!.site.configDir, '--json', 'lease', 'list');
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as LeaseJson[];
}
const hex = (mac: string) => mac.replace(/:/g, '');

// ------------------------------------------------------------------------------- the pool (no network)

function pool(start = '10.0.0.1', end = '10.0.0.6', reserved: string[] = ['10.0.0.2']): LeasePool {
  const p = new LeasePool();
  p.configure({ start, end, netmask: '255.255.255.0', reserved });
  return p;
}
function row(ip: string, mac: string, state: DhcpLeaseRow['state'], expires_at: number): DhcpLeaseRow {
  return { ip, mac: mac as Mac, state, expires_at, client_id: null, hostname: null, vendor_class: null, updated_at: 0 };
}

test('the pool hands out the client\'s current address, else its previous one, else the requested one, else a new one', () => {
  const now = 1_000_000;
  const p = pool();
  p.put(row('10.0.0.5', 'aa', 'bound', now + 1000));
  assert.is(p.choose('aa', '10.0.0.4', now), '10.0.0.5', 'current');
  p.put(row('10.0.0.5', 'aa', 'released', now));
  assert.is(p.choose('aa', '10.0.0.4', now), '10.0.0.5', 'previous, released');
  p.put(row('10.0.0.5', 'bb', 'bound', now + 1000));
  assert.is(p.choose('aa', '10.0.0.4', now), '10.0.0.4', 'requested, the previous one being taken');
  assert.is(p.choose('aa', '10.0.0.99', now), '10.0.0.1', 'a new one: the requested one is outside the range');
});

test('the pool never hands out the network, broadcast, server or router address', () => {
  const p = pool('10.0.0.0', '10.0.0.255', ['10.0.0.1', '10.0.0.254']);
  const got = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const ip = p.choose(`m${i}`, undefined, 0);
    if (!ip) break;
    p.put(row(ip, `m${i}`, 'bound', 1000));
    got.add(ip);
  }
  assert.is(got.size, 252);
  for (const ip of ['10.0.0.0', '10.0.0.1', '10.0.0.254', '10.0.0.255']) assert.not.ok(got.has(ip), ip);
});

test('a REQUEST is answered by RFC 2131 §4.3.2: SELECTING, INIT-REBOOT and RENEWING, and a RELEASE or DECLINE only of what the client holds', () => {
  const now = 1_000_000;
  const p = pool('10.0.0.10', '10.0.0.20', []);
  const dec = (type: DhcpEncodeInput['type'], mac: string, extra: Partial<DhcpEncodeInput>): DhcpMessage => {
    const r = decodeDhcp(encodeDhcp({ xid: 1, chaddr: mac, type, ...extra }));
    if (!r.ok) throw new Error(r.reason);
    return r.msg;
  };
  const req = (mac: string, extra: Partial<DhcpEncodeInput>) => decideRequest(dec('REQUEST', mac, extra), p, '10.0.0.1', true, now);
  p.put(row('10.0.0.11', '02aa00000001', 'offered', now + 1000));
  assert.equal(req('02:aa:00:00:00:01', { serverId: '10.0.0.9', requestedIp: '10.0.0.11' }), { kind: 'other-server' });
  assert.equal(req('02:aa:00:00:00:01', { serverId: '10.0.0.1', requestedIp: '10.0.0.11' }), { kind: 'ack', ip: '10.0.0.11' });
  assert.equal(req('02:aa:00:00:00:02', { serverId: '10.0.0.1', requestedIp: '10.0.0.11' }).kind, 'nak', 'offered to another client');
  p.put(row('10.0.0.11', '02aa00000001', 'bound', now + 1000));
  assert.equal(req('02:aa:00:00:00:01', { requestedIp: '10.0.0.11' }), { kind: 'ack', ip: '10.0.0.11' }, 'INIT-REBOOT of its own');
  assert.equal(req('02:aa:00:00:00:01', { requestedIp: '192.168.9.9' }), { kind: 'nak', ip: '192.168.9.9', why: 'the address is on another network' });
  assert.equal(req('02:aa:00:00:00:03', { requestedIp: '10.0.0.11' }), { kind: 'nak', ip: '10.0.0.11', why: 'the address belongs to another client' });
  assert.equal(req('02:aa:00:00:00:04', { requestedIp: '10.0.0.15' }), { kind: 'silent', ip: '10.0.0.15', state: 'init-reboot' }, 'no record of it: silence');
  assert.equal(req('02:aa:00:00:00:01', { ciaddr: '10.0.0.11' }), { kind: 'ack', ip: '10.0.0.11' }, 'RENEWING');
  assert.equal(req('02:aa:00:00:00:01', {}).kind, 'ignore', 'neither a requested address nor ciaddr');
  const letGo = (type: 'RELEASE' | 'DECLINE', mac: string, extra: Partial<DhcpEncodeInput>) => decideLetGo(dec(type, mac, extra), p, '10.0.0.1');
  assert.equal(letGo('RELEASE', '02:aa:00:00:00:01', { ciaddr: '10.0.0.11' }), { kind: 'let-go', ip: '10.0.0.11' });
  assert.equal(letGo('RELEASE', '02:aa:00:00:00:03', { ciaddr: '10.0.0.11' }).kind, 'ignore', 'not its address');
  assert.equal(letGo('DECLINE', '02:aa:00:00:00:01', { requestedIp: '10.0.0.11', serverId: '10.0.0.1' }), { kind: 'let-go', ip: '10.0.0.11' });
  assert.equal(letGo('DECLINE', '02:aa:00:00:00:01', { requestedIp: '10.0.0.11', serverId: '10.0.0.9' }).kind, 'ignore', 'meant for another server');
});

test('a full pool reuses the address that expired longest ago, and offers nothing while every lease runs', () => {
  const now = 1_000_000;
  const p = pool('10.0.0.1', '10.0.0.3', []);
  p.put(row('10.0.0.1', 'a', 'bound', now + 1));
  p.put(row('10.0.0.2', 'b', 'bound', now + 1));
  p.put(row('10.0.0.3', 'c', 'bound', now + 1));
  assert.is(p.choose('d', undefined, now), null);
  assert.is(p.choose('d', undefined, now + 10), '10.0.0.1', 'all expired at the same time: the first');
  p.put(row('10.0.0.2', 'b', 'bound', now - 50));
  p.put(row('10.0.0.3', 'c', 'released', now - 10));
  assert.is(p.choose('d', undefined, now), '10.0.0.2');
});

test('a declined address stays out of the pool until its hold ends, even for the client that declined it', () => {
  const now = 1_000_000;
  const p = pool('10.0.0.1', '10.0.0.2', []);
  p.put(row('10.0.0.1', 'a', 'declined', now + 60_000));
  assert.is(p.addressOf('a'), undefined);
  assert.is(p.choose('a', '10.0.0.1', now), '10.0.0.2');
  assert.not.ok(p.freeFor(ipn('10.0.0.1'), 'a', now));
  assert.ok(p.freeFor(ipn('10.0.0.1'), 'a', now + 60_000));
});
const ipn = (ip: string) => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);

test('a [dhcp_server] interface that does not exist yet is a warning: apsd starts, serves, and says the DHCP server waits for it', async () => {
  const site = copyFixtureConfig();
  try {
    fs.appendFileSync(path.join(site.configDir, 'aps.ini'), '\n[dhcp_server]\nenabled = true\ninterface = aps-nope0\nrange = 10.197.9.10-10.197.9.20\n');
    const p = spawn(process.execPath, [RUNNER, '--config', site.configDir, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, JOURNAL_STREAM: '' } });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    try {
      await waitUntil(() => /apsd ready/.test(out), 15_000, 'apsd ready');
      assert.match(out, /level=warn msg="DHCP server waiting for its interface[^"]*" iface=aps-nope0 why="no interface aps-nope0"/);
      await waitUntil(() => fs.existsSync(path.join(site.stateDir, 'apsd-status.json')), 5000, 'the status file');
      const st = JSON.parse(fs.readFileSync(path.join(site.stateDir, 'apsd-status.json'), 'utf8')) as { services: { service: string; state: string }[] };
      assert.equal(st.services.map((s) => [s.service, s.state]), [['dhcp-server', 'waiting']]);
    } finally {
      p.kill('SIGTERM');
    }
    assert.is(await exited, 0, out);
  } finally {
    fs.rmSync(site.dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------- setup

test.before(async () => {
  if (!support.ok) return;
  for (const [bin, pkg] of [['dhclient', 'isc-dhcp-client'], ['tftp', 'tftp-hpa'], ['tcpdump', 'tcpdump'], ['dnsmasq', 'dnsmasq-base']] as const) {
    if (!which(bin)) throw new Error(`${bin} is not installed: apt-get install -y --no-install-recommends ${pkg}`);
  }
  assert.ok(fs.existsSync(RUNNER), `${RUNNER} is missing: npm run build first (node scripts/run-tests.mjs does)`);
  const link = await createLink({ name: 'dsrv', hostIp: SERVER_IP, peerIp: PEER_IP, prefix: 24 });
  const site = copyFixtureConfig();
  // the real vendors plus the option-150 fixture vendor
  const vendorsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-dhcp-vendors-'));
  for (const id of fs.readdirSync(VENDORS_DIR)) fs.symlinkSync(path.join(VENDORS_DIR, id), path.join(vendorsDir, id));
  fs.symlinkSync(path.join(ROOT, 'test/fixtures/vendors-dhcp/ciscofix'), path.join(vendorsDir, 'ciscofix'));
  w = { link, site, vendorsDir };
  fs.writeFileSync(path.join(site.configDir, 'aps.ini'), iniFor(link));
  const add = ctl(site.configDir, 'device', 'add', YEALINK_ACME, '--tenant', 'acme', '--template', 'yealink-full');
  assert.is(add.status, 0, add.stderr);
  await startServer(iniFor(link));
});

test.after(async () => {
  if (!w) return;
  await stopServer().catch(() => {});
  await cleanupAll();
  fs.rmSync(w.site.dir, { recursive: true, force: true });
  fs.rmSync(w.vendorsDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------- vendors

t('a Yealink phone gets an address from the range and option 66 = the provisioning URL, mapped by its tenant\'s IP/DNS map', async () => {
  const env = await dhclient(w!.link, YEALINK_ACME, 'yealink SIP-T46S');
  assert.ok(inRange(env.get('new_ip_address')), `address ${env.get('new_ip_address')}`);
  assert.is(env.get('new_tftp_server_name'), URL_ACME);
  assert.equal(provisioning(env), ['new_tftp_server_name']);
  assert.is(env.get('new_dhcp_server_identifier'), SERVER_IP);
  assert.is(env.get('new_routers'), SERVER_IP);
  assert.is(env.get('new_subnet_mask'), '255.255.255.0');
  assert.is(env.get('new_domain_name_servers'), SERVER_IP);
  assert.is(env.get('new_domain_name'), 'voice.example');
  assert.is(env.get('new_ntp_servers'), '10.197.0.2');
  assert.is(env.get('new_dhcp_lease_time'), '600');
});

t('a Yealink phone that is not in the inventory gets the URL mapped by the global IP/DNS map ([discovery] tenant)', async () => {
  const env = await dhclient(w!.link, YEALINK_NEW);
  assert.ok(inRange(env.get('new_ip_address')));
  assert.is(env.get('new_tftp_server_name'), URL_GLOBAL);
});

t('an Aastra phone (class AastraIPPhone6867i) gets option 43 with sub-option 2 = the URL, and option 66', async () => {
  const env = await dhclient(w!.link, AASTRA, 'AastraIPPhone6867i');
  assert.ok(inRange(env.get('new_ip_address')));
  const subs = parseSubOptions(dhclientHex(env.get('new_vendor_encapsulated_options') ?? ''));
  assert.ok(subs, 'option 43 does not parse as sub-options');
  assert.equal(subs!.map((s) => [s.code, s.data.toString('latin1')]), [[2, URL_GLOBAL]]);
  assert.is(env.get('new_tftp_server_name'), URL_GLOBAL);
  assert.equal(provisioning(env), ['new_tftp_server_name', 'new_vendor_encapsulated_options']);
});

t('a phone of a vendor whose data asks for option 150 (fixture vendor ciscofix) gets 150 = the server address', async () => {
  const env = await dhclient(w!.link, CISCOFIX, 'Fixture150 phone');
  assert.ok(inRange(env.get('new_ip_address')));
  assert.is(env.get('new_tftp150'), SERVER_IP);
  assert.equal(provisioning(env), ['new_tftp150']);
});

t('a Cisco SPA504G (class "Cisco SPA504G") gets option 66 = the provisioning host (TFTP) and option 150 = the server address', async () => {
  const env = await dhclient(w!.link, CISCO_SPA, 'Cisco SPA504G');
  assert.ok(inRange(env.get('new_ip_address')));
  assert.is(env.get('new_tftp_server_name'), new URL(URL_GLOBAL).hostname);
  assert.is(env.get('new_tftp150'), SERVER_IP);
  assert.equal(provisioning(env), ['new_tftp_server_name', 'new_tftp150']);
});

t('a Fanvil phone (MAC 0c:38:3e:…, no class) gets option 66 = the provisioning URL + $mac.cfg', async () => {
  const env = await dhclient(w!.link, FANVIL);
  assert.ok(inRange(env.get('new_ip_address')));
  // dhclient hands its script a shell-safe value: the $ comes as \$
  assert.is(env.get('new_tftp_server_name')?.replace(/\\\$/g, '$'), `${URL_GLOBAL}$mac.cfg`);
  assert.equal(provisioning(env), ['new_tftp_server_name']);
});

t('a client that is no phone gets an address and the subnet basics, and no provisioning option', async () => {
  const env = await dhclient(w!.link, NOT_A_PHONE);
  assert.ok(inRange(env.get('new_ip_address')));
  assert.is(env.get('new_routers'), SERVER_IP);
  assert.equal(provisioning(env), []);
});

t('a client that does not list option 55 entries gets no NTP, but a phone gets its provisioning option anyway', async () => {
  await peerReady(w!.link);
  const plain = one(await udp(w!.link, [msg('DISCOVER', '02:00:00:aa:05:05', { paramList: [1, 3] })], { until: 1 }), 'OFFER');
  assert.not.ok(plain.options.has(42), 'NTP was not asked for');
  assert.ok(plain.options.has(6), 'DNS is one of the basics');
  const phone = one(await udp(w!.link, [msg('DISCOVER', '80:5e:c0:aa:05:06', { paramList: [1, 3] })], { until: 1 }), 'OFFER');
  assert.is(phone.tftpServer, URL_GLOBAL);
});

// ------------------------------------------------------------------------------- RFC 2131

t('a DHCPREQUEST naming another server\'s id gets no answer, and the offer is withdrawn', async () => {
  const mac = '02:00:00:aa:00:10';
  await peerReady(w!.link);
  const offer = one(await udp(w!.link, [msg('DISCOVER', mac)], { until: 1 }), 'OFFER');
  assert.ok(inRange(offer.yiaddr));
  const got = await udp(w!.link, [msg('REQUEST', mac, { serverId: '10.197.0.254', requestedIp: offer.yiaddr })], { listenMs: 2000 });
  assert.equal(got.map((g) => g.msg.type), [], 'the server answered a REQUEST meant for another server');
  const mine = leaseList().filter((l) => l.mac === hex(mac));
  assert.equal(mine, [], 'the withdrawn offer is still listed');
});

t('an INIT-REBOOT REQUEST for an address that is not the client\'s gets a DHCPNAK; its own address gets an ACK', async () => {
  const mac = '02:00:00:aa:00:11';
  await peerReady(w!.link);
  const { ip } = await dora(w!.link, mac);
  const other = ip === RANGE[1] ? RANGE[0] : RANGE[1];
  const nak = one(await udp(w!.link, [msg('REQUEST', mac, { requestedIp: other })], { until: 1 }), 'NAK');
  assert.is(nak.yiaddr, '0.0.0.0');
  assert.is(nak.serverId, SERVER_IP);
  const wrongNet = one(await udp(w!.link, [msg('REQUEST', mac, { requestedIp: '192.168.77.5' })], { until: 1 }), 'NAK');
  assert.is(wrongNet.type, 'NAK');
  const ack = one(await udp(w!.link, [msg('REQUEST', mac, { requestedIp: ip })], { until: 1 }), 'ACK');
  assert.is(ack.yiaddr, ip);
  assert.is(ack.leaseTime, 600);
});

t('a client unknown to the server asking for an address by INIT-REBOOT gets silence (RFC 2131 4.3.2)', async () => {
  await peerReady(w!.link);
  const got = await udp(w!.link, [msg('REQUEST', '02:00:00:aa:00:12', { requestedIp: '10.197.0.140' })], { listenMs: 1500 });
  assert.equal(got.map((g) => g.msg.type), []);
});

t('DHCPRELEASE frees the address: the lease ends and another client may have it', async () => {
  const mac = '02:00:00:aa:00:13';
  await peerReady(w!.link);
  const { ip } = await dora(w!.link, mac);
  assert.ok(leaseList().some((l) => l.mac === hex(mac) && l.ip === ip && l.active));
  const got = await udp(w!.link, [msg('RELEASE', mac, { ciaddr: ip, serverId: SERVER_IP, flags: 0, paramList: undefined })], { listenMs: 1000 });
  assert.equal(got, [], 'a RELEASE is not answered');
  await waitUntil(() => !leaseList().some((l) => l.mac === hex(mac) && l.active), 5000, 'the lease to end');
  const offer = one(await udp(w!.link, [msg('DISCOVER', '02:00:00:aa:00:14', { requestedIp: ip })], { until: 1 }), 'OFFER');
  assert.is(offer.yiaddr, ip, 'the released address was not offered to the next client asking for it');
});

t('DHCPDECLINE takes the address out of the pool: the client gets a different address next time, and so does anyone else asking for it', async () => {
  const mac = '02:00:00:aa:00:15';
  await peerReady(w!.link);
  const { ip } = await dora(w!.link, mac);
  const got = await udp(w!.link, [msg('DECLINE', mac, { requestedIp: ip, serverId: SERVER_IP, paramList: undefined })], { listenMs: 1000 });
  assert.equal(got, []);
  const again = one(await udp(w!.link, [msg('DISCOVER', mac)], { until: 1 }), 'OFFER');
  assert.ok(inRange(again.yiaddr));
  assert.is.not(again.yiaddr, ip, 'the declined address was offered again');
  const other = one(await udp(w!.link, [msg('DISCOVER', '02:00:00:aa:00:16', { requestedIp: ip })], { until: 1 }), 'OFFER');
  assert.is.not(other.yiaddr, ip);
  assert.match(serverLog(), new RegExp(`address declined by the client[^\\n]*ip=${ip.replace(/\./g, '\\.')}`));
});

t('a returning client gets its previous address back (sticky per MAC)', async () => {
  const mac = '02:00:00:aa:00:17';
  await peerReady(w!.link);
  const clientId = `01${hex(mac)}`;
  const first = await dora(w!.link, mac, { clientId });
  assert.is(first.offer.clientId, clientId, 'the client identifier is echoed (RFC 6842)');
  assert.is(first.ack.clientId, clientId);
  const second = one(await udp(w!.link, [msg('DISCOVER', mac)], { until: 1 }), 'OFFER');
  assert.is(second.yiaddr, first.ip);
});

t('a unicast renewal (RENEWING, ciaddr set) gets its ACK unicast to ciaddr, and no ICMP port-unreachable from the server', async () => {
  const link = w!.link;
  const mac = '02:00:00:aa:00:22';
  await peerReady(link);
  const { ip } = await dora(link, mac);
  await link.exec('peer', 'ip', ['addr', 'add', `${ip}/24`, 'dev', link.ifname('peer')], { check: true });
  const dump = link.spawn('peer', 'tcpdump', ['-n', '-l', '-i', link.ifname('peer'), 'icmp']);
  try {
    await dump.waitFor(/listening on/, 10_000);
    const renew = msg('REQUEST', mac, { ciaddr: ip, flags: 0 });
    const got = await udp(link, [{ buf: renew, to: SERVER_IP, port: 67 }], { until: 1 });
    const ack = one(got, 'ACK');
    assert.is(ack.yiaddr, ip);
    assert.is(ack.ciaddr, ip);
    await new Promise((r) => setTimeout(r, 500));
    assert.not.match(dump.output(), /unreachable/, `the server host sent ICMP:\n${dump.output()}`);
  } finally {
    await dump.stop();
    await link.exec('peer', 'ip', ['addr', 'del', `${ip}/24`, 'dev', link.ifname('peer')]);
  }
});

t('a relayed DISCOVER (giaddr set) is answered to the relay, on port 67', async () => {
  await peerReady(w!.link);
  const relayed = msg('DISCOVER', '02:00:00:aa:00:18', { giaddr: PEER_IP, hops: 1, flags: 0, relayAgent: { circuitId: '0a14' } });
  const got = await udp(w!.link, [{ buf: relayed, to: SERVER_IP, port: 67 }], { bind: 67, until: 1 });
  const offer = one(got, 'OFFER');
  assert.is(got[0]!.port, 67);
  assert.is(got[0]!.from, SERVER_IP);
  assert.is(offer.giaddr, PEER_IP);
  assert.ok(inRange(offer.yiaddr));
  assert.is(offer.relayAgent?.circuitId, '0a14', 'the relay agent information is echoed (RFC 3046)');
});

t('malformed datagrams are dropped and counted, and the server keeps serving', async () => {
  await peerReady(w!.link);
  const good = msg('DISCOVER', '02:00:00:aa:00:19');
  const badCookie = Buffer.from(good);
  badCookie.writeUInt32BE(0xdeadbeef, 236);
  const badLength = Buffer.from(good);
  badLength[241] = 250; // the length of the first option (53) runs past the end
  const got = await udp(w!.link, [randomBytes(40), badCookie, badLength, good], { until: 1 });
  assert.ok(inRange(one(got, 'OFFER').yiaddr));
  await waitUntil(() => /malformed DHCP datagram dropped[^\n]*dropped=3/.test(serverLog()), 5000, 'the third malformed datagram to be counted');
  assert.match(serverLog(), /malformed DHCP datagram dropped[^\n]*reason="too short: 40 bytes/);
  assert.ok(w!.server!.running);
});

// ------------------------------------------------------------------------------- state

t('a restart keeps every lease: apsctl lease list shows it, and the phone gets the same address again', async () => {
  const before = leaseList().find((l) => l.mac === hex(YEALINK_ACME) && l.source === 'dhcp-server' && l.state === 'bound');
  assert.ok(before, `no bound lease for ${YEALINK_ACME}: ${JSON.stringify(leaseList())}`);
  await stopServer();
  await startServer(iniFor(w!.link));
  const after = leaseList().find((l) => l.mac === hex(YEALINK_ACME) && l.state === 'bound');
  assert.is(after?.ip, before!.ip);
  assert.match(serverLog(), /DHCP server listening[^\n]*leases=[1-9]/);
  const env = await dhclient(w!.link, YEALINK_ACME);
  assert.is(env.get('new_ip_address'), before!.ip);
});

t('with tftp_secrets = lease, the phone fetches its secret file over TFTP from its leased address, and not from another', async () => {
  const link = w!.link;
  const lease = leaseList().find((l) => l.mac === hex(YEALINK_ACME) && l.source === 'dhcp-server' && l.active);
  assert.ok(lease, 'no lease');
  await link.setMac('peer', YEALINK_ACME);
  const file = `${hex(YEALINK_ACME)}.cfg`;
  const fetch = async (from: string) => {
    await link.exec('peer', 'ip', ['addr', 'flush', 'dev', link.ifname('peer')], { check: true });
    await link.exec('peer', 'ip', ['addr', 'add', `${from}/24`, 'dev', link.ifname('peer')], { check: true });
    const dest = link.file(`tftp-${from}`);
    fs.rmSync(dest, { force: true });
    const r = await link.exec('peer', 'tftp', ['-m', 'binary', SERVER_IP, '-c', 'get', file, dest], { timeoutMs: 20_000 });
    return { r, body: fs.existsSync(dest) ? fs.readFileSync(dest, 'utf8') : '' };
  };
  try {
    const ok = await fetch(lease!.ip);
    assert.match(ok.body, /account\.1\.|#!version/, `no config from the leased address: ${ok.r.stdout}${ok.r.stderr}`);
    const refused = await fetch(PEER_IP);
    assert.is(refused.body.length, 0, 'a secret file was served to an address without the lease');
    assert.match(refused.r.stdout + refused.r.stderr, /access violation/i);
  } finally {
    await link.exec('peer', 'ip', ['addr', 'flush', 'dev', link.ifname('peer')]);
    await link.exec('peer', 'ip', ['addr', 'add', `${PEER_IP}/24`, 'dev', link.ifname('peer')], { check: true });
  }
});

t('the server never answers on another interface: a client on a second link of the same host gets nothing', async () => {
  const a = w!.link;
  const b = await createLink({ name: 'dsr2', hostIp: '10.197.1.1', peerIp: '10.197.1.9', prefix: 24 });
  try {
    // move link B's server end into the namespace where apsd runs
    await run('ip', ['-n', b.hostNs!, 'link', 'set', 'dev', b.hostIf, 'netns', a.hostNs!]);
    await a.exec('host', 'ip', ['addr', 'add', '10.197.1.1/24', 'dev', b.hostIf], { check: true });
    await a.exec('host', 'ip', ['link', 'set', 'dev', b.hostIf, 'up'], { check: true });
    await b.exec('peer', 'ip', ['route', 'replace', 'default', 'dev', b.ifname('peer')], { check: true });
    const seen = await a.exec('host', 'ip', ['-o', 'link', 'show', 'dev', b.hostIf]);
    assert.match(seen.stdout, /state UP|LOWER_UP/, 'link B is not up in the server namespace');
    const onB = await udp(b, [msg('DISCOVER', '02:00:00:aa:00:20')], { listenMs: 2500 });
    assert.equal(onB.map((g) => g.msg.type), [], 'the server answered on an interface it was not given');
    await peerReady(a);
    const onA = await udp(a, [msg('DISCOVER', '02:00:00:aa:00:20')], { until: 1 });
    assert.ok(inRange(one(onA, 'OFFER').yiaddr));
  } finally {
    await b.cleanup();
  }
});

// ------------------------------------------------------------------------------- mode = inform

t('mode = inform: a DISCOVER is not answered; a DHCPINFORM gets the vendor option with the URL derived from the interface address, and no address', async () => {
  await stopServer();
  await startServer(iniFor(w!.link, { mode: 'inform', url: false }));
  await peerReady(w!.link);
  const d = await udp(w!.link, [msg('DISCOVER', '80:5e:c0:aa:00:21')], { listenMs: 2000 });
  assert.equal(d.map((g) => g.msg.type), [], 'a DISCOVER was answered in inform mode');
  const informYealink = msg('INFORM', '80:5e:c0:aa:00:21', { ciaddr: PEER_IP, flags: 0 });
  const got = await udp(w!.link, [informYealink], { until: 1 });
  const ack = one(got, 'ACK');
  assert.is(got[0]!.from, SERVER_IP);
  assert.is(ack.yiaddr, '0.0.0.0');
  assert.is(ack.ciaddr, PEER_IP);
  assert.is(ack.leaseTime, undefined, 'an ACK to INFORM carries no lease time');
  assert.is(ack.tftpServer, `http://${SERVER_IP}:8080/provisioning/`);
  const cisco = one(await udp(w!.link, [msg('INFORM', CISCOFIX, { ciaddr: PEER_IP, flags: 0, vendorClass: 'Fixture150 phone' })], { until: 1 }), 'ACK');
  assert.equal(cisco.tftpServers150, [SERVER_IP]);
  const plain = one(await udp(w!.link, [msg('INFORM', NOT_A_PHONE, { ciaddr: PEER_IP, flags: 0 })], { until: 1 }), 'ACK');
  for (const code of [43, 66, 150]) assert.not.ok(plain.options.has(code), `option ${code} given to a client that is no phone`);
});

t('mode = inform leaves port 67 to the site\'s DHCP server: a dnsmasq on the same host, binding the wildcard, still starts', async () => {
  const link = w!.link;
  assert.match(serverLog(), /dhcp_mode=inform/);
  const r = await link.exec('host', 'dnsmasq', [
    '--keep-in-foreground', '--log-facility=-', '--port=0', '--dhcp-range=10.197.5.10,10.197.5.20',
    `--pid-file=${link.file('dnsmasq.pid')}`, `--dhcp-leasefile=${link.file('dnsmasq.leases')}`,
  ], { timeoutMs: 2000 });
  assert.ok(r.timedOut, `dnsmasq did not keep running (exit ${r.code}): ${r.stderr}`);
});

test.run();
