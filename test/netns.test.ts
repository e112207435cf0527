/**
 * The network-namespace harness, proven with real programs: ping across the veth, dnsmasq
 * handing dhclient (as a Yealink) an address and option 66, busybox udhcpc getting a lease.
 * Everything happens inside namespaces made for this run; nothing is left behind.
 */
import { envFile, needTool, startDnsmasq as startSiteDnsmasq } from './support/peers.js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  canUseNetns,
  cleanupAll,
  createLink,
  createdNamespaces,
  listNamespaces,
  namespacePids,
  rootInterfaces,
  waitUntil,
  which,
  type Link,
} from '../scripts/lib/netns.js';
import { ROOT } from './support/paths.js';

const support = canUseNetns();
if (!support.ok) console.log(`netns tests SKIPPED: ${support.why}`);
const t = support.ok ? test : test.skip;

const links: Link[] = []; // every link of this file, for the final leak check
let current: Link[] = []; // this test's links
async function link(opts: Parameters<typeof createLink>[0]): Promise<Link> {
  const l = await createLink(opts);
  links.push(l);
  current.push(l);
  return l;
}

// a failing test still gets its processes and namespaces removed before the next one starts
test.after.each(async () => {
  await Promise.all(current.splice(0).map((l) => l.cleanup()));
});
test.after(async () => {
  await cleanupAll();
});


const yealinkMac = () => `80:5e:c0:${randomBytes(3).toString('hex').match(/../g)!.join(':')}`;


const SUBNET = '10.199.0';
const PROV_URL = `http://${SUBNET}.1/prov/`;

function startDnsmasq(l: Link) {
  // no quotes around the URL: without a shell they would reach the phone as part of it
  return startSiteDnsmasq(l, SUBNET, ['--dhcp-vendorclass=set:yl,yealink', `--dhcp-option=tag:yl,66,${PROV_URL}`]);
}

t('two namespaces joined by a veth pair reach each other by ping, and the machine sees neither end', async () => {
  needTool('ping', 'iputils-ping');
  const l = await link({ name: 'png', hostIp: `${SUBNET}.1`, peerIp: `${SUBNET}.2`, prefix: 24 });
  assert.ok(l.hostIf.length <= 15 && l.peerIf.length <= 15, `interface names ${l.hostIf} ${l.peerIf} fit IFNAMSIZ`);
  assert.ok(l.hostNs && l.hostNs !== l.peerNs, 'the server side has its own namespace by default');
  const there = await l.exec('peer', 'ping', ['-c1', '-W1', `${SUBNET}.1`]);
  assert.is(there.code, 0, there.stdout + there.stderr);
  const back = await l.exec('host', 'ping', ['-c1', '-W1', `${SUBNET}.2`]);
  assert.is(back.code, 0, back.stdout + back.stderr);
  const root = rootInterfaces();
  assert.not.ok(root.includes(l.hostIf) || root.includes(l.peerIf), 'no veth end in the root namespace');
  assert.equal(await l.addresses('peer'), [`${SUBNET}.2/24`]);
  await l.cleanup();
});

t('dnsmasq gives dhclient, posing as a Yealink, an address and option 66 for vendor class "yealink"', async () => {
  needTool('dhclient', 'isc-dhcp-client');
  const mac = yealinkMac();
  const l = await link({ name: 'dhc', hostIp: `${SUBNET}.1`, prefix: 24, peerMac: mac });
  const dnsmasq = startDnsmasq(l);
  await dnsmasq.waitFor(/sockets bound exclusively/, 10_000);
  const conf = l.file(
    'dhclient.conf',
    [
      'option tftp150 code 150 = array of ip-address;',
      'send vendor-class-identifier "yealink";',
      'send host-name "yealink-t46";',
      'request subnet-mask, routers, tftp-server-name, tftp150, vendor-encapsulated-options;',
      'timeout 15;',
      '',
    ].join('\n'),
  );
  // the hook replaces dhclient-script: it only records what dhclient got, it configures nothing
  // written then renamed, so a reader never sees half a file
  const hook = l.file('hook.sh', `#!/bin/sh\nenv | grep -E '^(reason|interface|new_)' > "${l.dir}/.env.$reason" && mv "${l.dir}/.env.$reason" "${l.dir}/env.$reason"\n`, 0o755);
  const varLease = '/var/lib/dhcp/dhclient.leases';
  const before = fs.existsSync(varLease) ? fs.statSync(varLease).mtimeMs : null;
  const started = Date.now();
  const dhclient = l.spawn('peer', 'dhclient', ['-d', '-1', '-v', '-cf', conf, '-sf', hook, '-lf', l.file('dhclient.leases'), '-pf', l.file('dhclient.pid'), l.peerIf]);
  try {
    await waitUntil(() => fs.existsSync(l.file('env.BOUND')), 25_000, 'dhclient to report BOUND');
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- dhclient:\n${dhclient.output()}\n--- dnsmasq:\n${dnsmasq.output()}`);
  }
  const took = Date.now() - started;
  const env = envFile(l.file('env.BOUND'));
  assert.is(env.interface, l.peerIf);
  assert.match(env.new_ip_address ?? '', new RegExp(`^${SUBNET.replace(/\./g, '\\.')}\\.1\\d\\d$`));
  assert.is(env.new_tftp_server_name, PROV_URL, 'option 66 for the yealink class');
  assert.is(env.new_dhcp_server_identifier, `${SUBNET}.1`);
  const lease = fs.readFileSync(l.file('dhclient.leases'), 'utf8');
  assert.match(lease, `option tftp-server-name "${PROV_URL}";`);
  assert.match(dnsmasq.output(), /vendor class: yealink/);
  assert.match(dnsmasq.output(), new RegExp(`DHCPACK\\(${l.hostIf}\\) \\S+ ${mac}`));
  const after = fs.existsSync(varLease) ? fs.statSync(varLease).mtimeMs : null;
  assert.is(after, before, `${varLease} untouched`);
  console.log(`  dhclient bound in ${took} ms`);
  await l.cleanup();
  assert.not.ok(dhclient.running || dnsmasq.running, 'cleanup stopped dhclient and dnsmasq');
});

t('busybox udhcpc gets a lease from dnsmasq, and without the yealink class no option 66', async () => {
  needTool('udhcpc', 'udhcpc');
  const l = await link({ name: 'udh', hostIp: `${SUBNET}.1`, prefix: 24, peerMac: yealinkMac() });
  const dnsmasq = startDnsmasq(l);
  await dnsmasq.waitFor(/sockets bound exclusively/, 10_000);
  // the default script would rewrite /etc/resolv.conf: ours only records
  const hook = l.file('udhcpc.sh', `#!/bin/sh\nenv | grep -E '^(interface|ip|mask|router|serverid|lease|tftp|opt)' > "${l.dir}/.uenv.$1" && mv "${l.dir}/.uenv.$1" "${l.dir}/uenv.$1"\n`, 0o755);
  const r = await l.exec('peer', 'udhcpc', ['-f', '-q', '-n', '-t', '5', '-T', '1', '-i', l.peerIf, '-s', hook, '-O', '66'], { timeoutMs: 20_000 });
  assert.is(r.code, 0, `udhcpc: ${r.stdout}${r.stderr}\n--- dnsmasq:\n${dnsmasq.output()}`);
  assert.match(r.stderr + r.stdout, /lease of \S+ obtained/);
  const env = envFile(l.file('uenv.bound'));
  assert.is(env.interface, l.peerIf);
  assert.match(env.ip ?? '', new RegExp(`^${SUBNET.replace(/\./g, '\\.')}\\.\\d+$`));
  assert.is(env.serverid, `${SUBNET}.1`);
  assert.is(env.lease, '3600');
  assert.is(env.tftp, undefined, 'option 66 only goes to the yealink class');
  await l.cleanup();
});

t('cleanup ends every process it started, even forked ones, removes the namespaces, and can run twice', async () => {
  const l = await link({ name: 'cln', hostIp: '10.199.1.1', peerIp: '10.199.1.2', prefix: 24 });
  const a = l.spawn('host', 'sleep', ['300']);
  const b = l.spawn('peer', 'sleep', ['300']);
  // a daemon-like child: the shell exits, its background sleep stays in the namespace
  const r = await l.exec('peer', 'sh', ['-c', 'sleep 300 >/dev/null 2>&1 & echo $!'], { check: true });
  const orphan = Number(r.stdout.trim());
  assert.ok(orphan > 1);
  assert.ok(namespacePids(l.peerNs).includes(orphan), 'the forked sleep lives in the peer namespace');
  assert.ok(a.running && b.running);
  await l.cleanup();
  await l.cleanup();
  l.cleanupSync();
  assert.not.ok(a.running || b.running, 'tracked processes stopped');
  const gone = (pid: number) => {
    try {
      const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      return /\) [ZX] /.test(s);
    } catch {
      return true;
    }
  };
  await waitUntil(() => gone(orphan), 3000, `forked pid ${orphan} to end`);
  const names = listNamespaces();
  assert.not.ok(names.includes(l.peerNs) || names.includes(l.hostNs!), 'namespaces deleted');
  let refused = false;
  try {
    await l.exec('peer', 'true');
  } catch {
    refused = true;
  }
  assert.ok(refused, 'a cleaned-up link runs nothing');
});

/** A separate Node process that makes a link with a process in it, then ends by `how`. */
async function childThatEnds(how: 'SIGINT' | 'SIGTERM' | 'throw' | 'exit'): Promise<{ code: number | null; ns: string[]; pid: number; out: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-netns-child-'));
  try {
    const script = path.join(dir, 'child.mjs');
    fs.writeFileSync(
      script,
      [
        `const { createLink } = await import(${JSON.stringify(path.join(ROOT, 'scripts/lib/netns.ts'))});`,
        `const l = await createLink({ name: 'kid', hostIp: '10.199.3.1', peerIp: '10.199.3.2', prefix: 24 });`,
        `const p = l.spawn('peer', 'sleep', ['300']);`,
        `console.log(JSON.stringify({ ns: [l.hostNs, l.peerNs], pid: p.pid }));`,
        `if (process.env.HOW === 'throw') setTimeout(() => { throw new Error('deliberate'); }, 50);`,
        `else if (process.env.HOW === 'exit') setTimeout(() => process.exit(3), 50);`,
        `else setInterval(() => {}, 1000);`,
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env: { ...process.env, HOW: how }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    try {
      await waitUntil(() => out.includes('"pid"') || child.exitCode !== null, 15_000, 'the child to make its link');
      const info = JSON.parse(out.split('\n').find((l) => l.includes('"pid"')) ?? 'null') as { ns: string[]; pid: number } | null;
      if (!info) throw new Error(`child made no link: ${out}`);
      if (how === 'SIGINT' || how === 'SIGTERM') child.kill(how);
      const code = await exited;
      return { code, ns: info.ns, pid: info.pid, out };
    } finally {
      clearTimeout(killer);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function gonePid(pid: number): boolean {
  try {
    return /\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

for (const how of ['SIGINT', 'SIGTERM', 'throw', 'exit'] as const) {
  t(`a test process that ends by ${how === 'throw' ? 'an uncaught exception' : how === 'exit' ? 'process.exit()' : how} leaves no namespace and no process behind`, async () => {
    const r = await childThatEnds(how);
    const want = { SIGINT: 130, SIGTERM: 143, throw: 1, exit: 3 }[how];
    assert.is(r.code, want, r.out);
    await waitUntil(() => gonePid(r.pid), 3000, `pid ${r.pid} to end`);
    const names = listNamespaces();
    assert.equal(r.ns.filter((n) => names.includes(n)), [], 'namespaces deleted');
  });
}

// This one adds an interface and an address to the machine's own namespace for a moment,
// so it runs only when asked: APS_NETNS_ROOT=1.
const tRoot = support.ok && process.env.APS_NETNS_ROOT === '1' ? test : test.skip;
if (support.ok && process.env.APS_NETNS_ROOT !== '1') console.log('netns: the hostNs:false test is skipped (set APS_NETNS_ROOT=1 to run it; it adds a veth end to the root namespace)');
tRoot('hostNs: false puts the host end in the root namespace only while the link lives', async () => {
  needTool('ping', 'iputils-ping');
  // the root namespace is shared with whatever else runs on this machine: a random subnet
  const net = `10.199.${100 + (randomBytes(1)[0]! % 150)}`;
  const l = await link({ name: 'root', hostIp: `${net}.1`, peerIp: `${net}.2`, prefix: 24, hostNs: false });
  assert.is(l.hostNs, null);
  assert.ok(rootInterfaces().includes(l.hostIf));
  const r = await l.exec('peer', 'ping', ['-c1', '-W1', `${net}.1`]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  await l.cleanup();
  assert.not.ok(rootInterfaces().includes(l.hostIf), 'the root-namespace end is gone');
});

t('a link is refused when its subnet overlaps a root-namespace address', async () => {
  // 127.0.0.1/8 is on lo everywhere
  let err: Error | undefined;
  try {
    await link({ hostIp: '127.1.2.3', prefix: 24, hostNs: false });
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, 'refused');
  assert.match(err!.message, /overlaps/);
});

t('no namespace or interface made by this run is left behind', async () => {
  await cleanupAll();
  const names = new Set(listNamespaces());
  const ours = createdNamespaces();
  assert.ok(ours.length >= 2 || !support.ok);
  assert.equal(ours.filter((n) => names.has(n)), [], 'ip netns list holds none of ours');
  const root = new Set(rootInterfaces());
  assert.equal(links.flatMap((l) => [l.hostIf, l.peerIf]).filter((i) => root.has(i)), [], 'no veth end in the root namespace');
});

test.run();
