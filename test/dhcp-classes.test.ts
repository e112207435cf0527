/**
 * `apsctl dhcp classes`: the class blocks an administrator pastes into the DHCP server the site
 * already runs. The blocks for the real vendors plus the fixture vendors (test/fixtures/
 * vendors-dhcp: one asking for option 150, one asking for every kind of answer) are golden
 * files; each format, pasted into a minimal config, passes the real server's own check; and
 * each real server (ISC dhcpd, Kea, dnsmasq), run in a network namespace with the block, gives
 * a real dhclient in the other namespace the option its vendor reads, and nothing to a
 * client that is no phone. UPDATE_GOLDEN=1 rewrites the golden files (read the diff).
 *
 * Needs isc-dhcp-server, kea-dhcp4-server, dnsmasq-base, isc-dhcp-client and iproute2; the
 * exchanges are skipped, with the reason printed, only where network namespaces cannot be made.
 */
import { dhclientHex, dhclientOnce } from './support/peers.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { suite, test } from 'uvu';
import * as assert from 'uvu/assert';
import { dhcpClassBlocks, type DhcpClassFormat } from '../src/dhcp/classes.js';
import { VendorRegistry, loadVendor, type Vendor } from '../src/vendors/registry.js';
import { isApsError } from '../src/errors.js';
import { GOLDEN_DIR, ROOT, VENDORS_DIR } from './support/paths.js';
import { canUseNetns, createLink, waitUntil, which, type Link, type NsProcess } from '../scripts/lib/netns.js';

const UPDATE = process.env.UPDATE_GOLDEN === '1';
const FIXTURE_VENDORS = path.join(ROOT, 'test/fixtures/vendors-dhcp');
const FORMATS: DhcpClassFormat[] = ['isc', 'kea', 'dnsmasq'];
const EXT: Record<DhcpClassFormat, string> = { isc: 'isc.conf', kea: 'kea.json', dnsmasq: 'dnsmasq.conf' };

/** The server the namespaces hold: 10.198.0.1 on a /24, clients leased from .100–.150. */
const SERVER_IP = '10.198.0.1';
const SITE = { url: `http://${SERVER_IP}:8080/aps/`, host: SERVER_IP, ip: SERVER_IP };

function loadVendors(): Vendor[] {
  const reg = VendorRegistry.load(VENDORS_DIR);
  for (const id of fs.readdirSync(FIXTURE_VENDORS).sort()) {
    const dir = path.join(FIXTURE_VENDORS, id);
    if (fs.statSync(dir).isDirectory()) reg.add(loadVendor(dir));
  }
  return reg.list();
}

const vendors = loadVendors();
const blocks = (format: DhcpClassFormat, extra: { tenant?: string } = {}) => dhcpClassBlocks(vendors, { format, ...SITE, ...extra });
const vendor = (id: string) => vendors.find((v) => v.id === id)!;

/** Option 43 bytes as sub-option code → text. */
function subOptions(buf: Buffer): Map<number, string> {
  const out = new Map<number, string>();
  for (let i = 0; i + 2 <= buf.length; ) {
    const code = buf[i]!;
    const len = buf[i + 1]!;
    assert.ok(i + 2 + len <= buf.length, `sub-option ${code} runs past the end of option 43`);
    out.set(code, buf.subarray(i + 2, i + 2 + len).toString('utf8'));
    i += 2 + len;
  }
  return out;
}

/** dhclient prints binary options as colon-separated hex without leading zeros: 2:1b:68:… */

// ------------------------------------------------------------------------------- the blocks

test('the class blocks for the real vendors and the fixture vendors read exactly as their golden files', () => {
  for (const format of FORMATS) {
    const text = blocks(format);
    const golden = path.join(GOLDEN_DIR, 'dhcp', `classes.${EXT[format]}`);
    if (UPDATE || !fs.existsSync(golden)) {
      fs.mkdirSync(path.dirname(golden), { recursive: true });
      fs.writeFileSync(golden, text);
      if (!UPDATE) assert.unreachable(`golden file ${golden} was missing and has been written: read it and commit it`);
    }
    assert.fixture(text, fs.readFileSync(golden, 'utf8'), `classes.${EXT[format]}`);
  }
});

test('the same vendors in another order print the same bytes', () => {
  const shuffled = [...vendors].reverse();
  for (const format of FORMATS) assert.is(dhcpClassBlocks(shuffled, { format, ...SITE }), blocks(format), format);
});

test('the Kea block is one JSON object with option-def and client-classes to merge into Dhcp4', () => {
  const obj = JSON.parse(blocks('kea')) as Record<string, unknown>;
  assert.equal(Object.keys(obj), ['comment', 'option-def', 'client-classes']);
  assert.match(String(obj.comment), /merge into "Dhcp4"/);
  const names = (obj['client-classes'] as { name: string }[]).map((c) => c.name);
  assert.equal(names, [...names].sort());
  for (const v of vendors) assert.ok(names.includes(`aps-${v.id}`), `no class for ${v.id}`);
});

test('every vendor has a class named after its id and a comment naming the vendor, in every format', () => {
  for (const format of FORMATS) {
    const text = blocks(format);
    for (const v of vendors) {
      assert.ok(text.includes(`aps-${v.id}`), `${format}: no class or tag aps-${v.id}`);
      assert.ok(text.includes(`${v.name} (vendor ${v.id})`), `${format}: no comment naming ${v.name}`);
    }
  }
});

test('each format says where to paste it', () => {
  assert.match(blocks('isc'), /include "\/etc\/dhcp\/aps-classes\.conf";/);
  assert.match(blocks('isc'), /top level of dhcpd\.conf/);
  assert.match(blocks('dnsmasq'), /\/etc\/dnsmasq\.d\/aps-classes\.conf/);
  const kea = JSON.parse(blocks('kea')) as { comment: string; 'client-classes': { comment: string }[] };
  assert.match(kea.comment, /merge into "Dhcp4", appending option-def and client-classes/);
  for (const c of kea['client-classes']) assert.match(c.comment, /^aps: /);
});

test('a vendor whose data asks for option 150 gets option 150 = the server address, defined as a list of IPv4 addresses', () => {
  const isc = blocks('isc');
  assert.ok(isc.includes('option aps-option-150 code 150 = array of ip-address;'));
  assert.match(isc, /class "aps-ciscofix" \{[^}]*option aps-option-150 10\.198\.0\.1;/);
  const kea = JSON.parse(blocks('kea')) as { 'option-def': Record<string, unknown>[]; 'client-classes': { name: string; 'option-data': Record<string, unknown>[] }[] };
  assert.ok(kea['option-def'].some((d) => d.code === 150 && d.type === 'ipv4-address' && d.array === true));
  const cisco = kea['client-classes'].find((c) => c.name === 'aps-ciscofix')!;
  assert.equal(cisco['option-data'].map((o) => [o.code, o.data]), [[150, SERVER_IP]]);
  assert.ok(blocks('dnsmasq').includes('dhcp-option-force=tag:aps-ciscofix,150,10.198.0.1\n'));
});

test('an Aastra class gets option 43 with sub-option 2 = the provisioning URL, in every format', () => {
  assert.ok(vendor('aastra').dhcp!.answers.some((a) => a.code === 43 && a.suboption === 2), 'the Aastra data no longer asks for 43/2');
  const isc = blocks('isc');
  assert.ok(isc.includes('option space aps_aastra;\noption aps_aastra.sub-2 code 2 = text;'));
  assert.match(isc, /class "aps-aastra" \{[^}]*vendor-option-space aps_aastra;\n {2}option aps_aastra\.sub-2 "http:\/\/10\.198\.0\.1:8080\/aps\/";/);
  const kea = JSON.parse(blocks('kea')) as { 'option-def': Record<string, unknown>[]; 'client-classes': Record<string, unknown>[] };
  assert.ok(kea['option-def'].some((d) => d.space === 'aps_aastra' && d.code === 2 && d.type === 'string'));
  const aastra = kea['client-classes'].find((c) => c.name === 'aps-aastra')!;
  assert.equal(aastra['option-def'], [{ name: 'vendor-encapsulated-options', code: 43, type: 'empty', encapsulate: 'aps_aastra' }]);
  const line = blocks('dnsmasq').split('\n').find((l) => l.startsWith('dhcp-option-force=tag:aps-aastra,43,'))!;
  const subs = subOptions(Buffer.from(line.split(',')[2]!.split(':').map((h) => parseInt(h, 16))));
  assert.equal([...subs], [[2, SITE.url]]);
});

test('a client with no phone class gets no provisioning option: every option sits inside a vendor class', () => {
  const isc = blocks('isc');
  // outside the class bodies only definitions and comments remain
  const outside = isc.replace(/class "[^"]+" \{[^}]*\}/g, '').split('\n').filter((l) => l && !l.startsWith('#'));
  for (const l of outside) assert.match(l, /^option (space \S+|\S+ code \d+ = [a-z -]+);$/, `dhcpd line outside a class: ${l}`);
  for (const l of blocks('dnsmasq').split('\n').filter((x) => x.startsWith('dhcp-option'))) assert.match(l, /^dhcp-option-force=tag:aps-/);
  const kea = JSON.parse(blocks('kea')) as Record<string, unknown>;
  assert.not.ok('option-data' in kea, 'Kea block has global option-data');
});

test('option-60 patterns become exact, prefix and suffix tests; a regex is named in a comment as not expressible', () => {
  const isc = blocks('isc');
  assert.ok(isc.includes('or option vendor-class-identifier = "AastraIPPhone6867i"'));
  assert.ok(isc.includes('or substring(option vendor-class-identifier, 0, 12) = "MitelIPPhone"'));
  assert.ok(isc.includes('or suffix(option vendor-class-identifier, 9) = "-fixphone"'));
  const kea = blocks('kea');
  assert.ok(kea.includes("option[60].hex == 'AastraIPPhone6867i'"));
  assert.ok(kea.includes("substring(option[60].hex, 0, 12) == 'MitelIPPhone'"));
  assert.ok(kea.includes("substring(option[60].hex, -9, all) == '-fixphone'"));
  assert.ok(blocks('dnsmasq').includes('dhcp-vendorclass=set:aps-aastra,"AastraIPPhone6867i"'));
  for (const format of FORMATS) assert.match(blocks(format), /regex \/\^fx\[0-9\]\+\$\/ cannot be written in [^:]+: such phones match by OUI only/, format);
});

test('vendor-class values and URLs are quoted and escaped for each server; bytes that are not text go as hex', () => {
  const isc = blocks('isc');
  assert.ok(isc.includes('option vendor-class-identifier = "Fix \\"Phone\\", v1"'));
  assert.ok(isc.includes('suffix(option vendor-class-identifier, 9) = 2d:46:49:58:33:50:43:43:00'), 'NUL-terminated suffix as hex');
  const kea = JSON.parse(blocks('kea')) as { 'client-classes': { name: string; test: string }[] };
  const fix = kea['client-classes'].find((c) => c.name === 'aps-dhcpfix')!;
  assert.ok(fix.test.includes(`option[60].hex == 'Fix "Phone", v1'`));
  assert.ok(fix.test.includes('substring(option[60].hex, -9, all) == 0x2D4649583350434300'));
  const dm = blocks('dnsmasq');
  assert.ok(dm.includes('dhcp-vendorclass=set:aps-dhcpfix,"Fix \\"Phone\\", v1"'));
  assert.match(dm, /# option 60 suffix "-FIX3PCC\\x00" holds bytes dnsmasq cannot match/);
  const odd = dhcpClassBlocks([vendor('yealink')], { format: 'isc', ...SITE, url: 'http://h/a"b\\c' });
  assert.ok(odd.includes('option tftp-server-name "http://h/a\\"b\\\\c";'));
});

test('--tenant puts the tenant into every class, tag and option-space name', () => {
  assert.match(blocks('isc', { tenant: 'Acme Corp' }), /class "aps-acme-corp-aastra"[^]*vendor-option-space aps_acme_corp_aastra;/);
  assert.ok(blocks('dnsmasq', { tenant: 'acme' }).includes('dhcp-mac=set:aps-acme-yealink,80:5e:c0:*:*:*'));
  assert.ok(blocks('kea', { tenant: 'acme' }).includes('"name": "aps-acme-polycom"'));
  assert.not.ok(blocks('isc', { tenant: 'acme' }).includes('"aps-yealink"'));
});

test('a vendor whose data asks for no DHCP option gets no class, and the blocks say so', () => {
  const quiet = { ...vendor('polycom'), dhcp: undefined };
  for (const format of FORMATS) {
    const text = dhcpClassBlocks([quiet, vendor('yealink')], { format, ...SITE });
    assert.not.ok(text.includes('aps-polycom'), `${format}: a class for a vendor with no DHCP answers`);
    assert.ok(text.includes('No class for Polycom (vendor polycom): the vendor data asks for no DHCP option.'), format);
  }
});

test('a server address that is not IPv4 is refused as a usage error', () => {
  try {
    dhcpClassBlocks(vendors, { format: 'isc', ...SITE, ip: 'pbx.example.com' });
    assert.unreachable('no error');
  } catch (e) {
    assert.ok(isApsError(e) && e.code === 'APS_ERR_USAGE', String(e));
  }
});

// ------------------------------------------------------------------------------- the real servers' checks

interface ServerCheck {
  pkg: string;
  bin: string;
  /** writes a minimal config holding the block; returns the argv of the check */
  write(dir: string, block: string): string[];
}

const CHECKS: Record<DhcpClassFormat, ServerCheck> = {
  isc: {
    pkg: 'isc-dhcp-server',
    bin: 'dhcpd',
    write(dir, block) {
      fs.writeFileSync(path.join(dir, 'aps-classes.conf'), block);
      fs.writeFileSync(path.join(dir, 'dhcpd.conf'), iscConfig(dir));
      return ['-t', '-cf', path.join(dir, 'dhcpd.conf')];
    },
  },
  kea: {
    pkg: 'kea-dhcp4-server',
    bin: 'kea-dhcp4',
    write(dir, block) {
      fs.writeFileSync(path.join(dir, 'kea.json'), keaConfig(block, []));
      return ['-t', path.join(dir, 'kea.json')];
    },
  },
  dnsmasq: {
    pkg: 'dnsmasq-base',
    bin: 'dnsmasq',
    write(dir, block) {
      fs.writeFileSync(path.join(dir, 'aps-classes.conf'), block);
      fs.writeFileSync(path.join(dir, 'dnsmasq.conf'), dnsmasqConfig(dir, 'lo'));
      return ['--test', `--conf-file=${path.join(dir, 'dnsmasq.conf')}`];
    },
  },
};

function iscConfig(dir: string): string {
  return [
    'ddns-update-style none;',
    'authoritative;',
    'ping-check false;',
    'default-lease-time 600;',
    `include "${path.join(dir, 'aps-classes.conf')}";`,
    'subnet 10.198.0.0 netmask 255.255.255.0 {',
    '  range 10.198.0.100 10.198.0.150;',
    '}',
    '',
  ].join('\n');
}

function keaConfig(block: string, interfaces: string[]): string {
  const cfg = {
    Dhcp4: {
      'interfaces-config': { interfaces },
      'lease-database': { type: 'memfile', persist: false },
      'valid-lifetime': 600,
      subnet4: [{ id: 1, subnet: '10.198.0.0/24', pools: [{ pool: '10.198.0.100 - 10.198.0.150' }] }],
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
      ...(JSON.parse(block) as object),
    },
  };
  return JSON.stringify(cfg, null, 2);
}

function dnsmasqConfig(dir: string, iface: string): string {
  return [
    'port=0',
    `interface=${iface}`,
    'bind-interfaces',
    'dhcp-range=10.198.0.100,10.198.0.150,255.255.255.0,10m',
    `dhcp-leasefile=${path.join(dir, 'dnsmasq.leases')}`,
    `conf-file=${path.join(dir, 'aps-classes.conf')}`,
    'log-dhcp',
    '',
  ].join('\n');
}

function runCheck(format: DhcpClassFormat, block: string): { ok: boolean; out: string } {
  const c = CHECKS[format];
  const bin = which(c.bin);
  assert.ok(bin, `${c.bin} is not installed: apt-get install -y --no-install-recommends ${c.pkg}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `aps-dhcp-check-${format}-`));
  try {
    const r = spawnSync(bin!, c.write(dir, block), {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, KEA_LOCKFILE_DIR: dir, KEA_PIDFILE_DIR: dir },
    });
    return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const BROKEN: Record<DhcpClassFormat, (s: string) => string> = {
  isc: (s) => s.replace('match if', 'match iff'),
  kea: (s) => s.replace(' or substring(pkt4.mac', ' ox substring(pkt4.mac'),
  dnsmasq: (s) => s.replace(',"AastraIPPhone6867i"', ',"AastraIPPhone6867i'),
};

for (const format of FORMATS) {
  const c = CHECKS[format];
  test(`the ${format} block pasted into a minimal ${c.bin} config passes \`${c.bin} ${format === 'isc' ? '-t -cf' : format === 'kea' ? '-t' : '--test'}\``, () => {
    for (const tenant of [undefined, 'acme']) {
      const r = runCheck(format, blocks(format, { tenant }));
      assert.ok(r.ok, `${c.bin} refused the block${tenant ? ` for tenant ${tenant}` : ''}:\n${r.out}`);
    }
  });
  test(`${c.bin}'s check refuses a broken ${format} block, so a pass above means something`, () => {
    const broken = BROKEN[format](blocks(format));
    assert.is.not(broken, blocks(format));
    assert.not.ok(runCheck(format, broken).ok, `${c.bin} accepted a broken block`);
  });
}

// ------------------------------------------------------------------------------- real exchanges

interface Client {
  /** the sentence after "<server> gives " */
  what: string;
  mac: string;
  vendorClass?: string;
  check(env: Map<string, string>): void;
}

const PROVISIONING_VARS = ['new_tftp_server_name', 'new_tftp150', 'new_vendor_encapsulated_options', 'new_default_url', 'new_aps160', 'new_aps200'];

function leased(env: Map<string, string>): void {
  assert.match(env.get('new_ip_address') ?? '', /^10\.198\.0\.(1[0-4]\d|150)$/, 'no address from the pool');
}

function only(env: Map<string, string>, expected: string[]): void {
  const got = PROVISIONING_VARS.filter((k) => env.has(k));
  assert.equal(got, expected, 'provisioning options received');
}

const CLIENTS: Client[] = [
  {
    what: 'a Yealink phone (MAC 80:5e:c0:…, no vendor class: Yealink has none) option 66 = the provisioning URL',
    mac: '80:5e:c0:12:34:56',
    check(env) {
      leased(env);
      assert.equal(vendor('yealink').vendorClasses, [], 'Yealink now has vendor classes: send one here');
      assert.is(env.get('new_tftp_server_name'), SITE.url);
      only(env, ['new_tftp_server_name']);
    },
  },
  {
    what: 'an Aastra 6867i (Aastra MAC, class AastraIPPhone6867i) option 43 with sub-option 2 = the provisioning URL, and option 66',
    mac: '00:08:5d:12:34:56',
    vendorClass: 'AastraIPPhone6867i',
    check(env) {
      leased(env);
      const subs = subOptions(dhclientHex(env.get('new_vendor_encapsulated_options') ?? ''));
      assert.equal([...subs], [[2, SITE.url]], 'option 43 sub-options');
      assert.is(env.get('new_tftp_server_name'), SITE.url);
      only(env, ['new_tftp_server_name', 'new_vendor_encapsulated_options']);
    },
  },
  {
    what: 'a Mitel phone known only by a prefix class (MitelIPPhone6940, a MAC of no vendor) the Aastra/Mitel option 43 and 66',
    mac: '02:00:00:00:69:40',
    vendorClass: 'MitelIPPhone6940',
    check(env) {
      leased(env);
      const subs = subOptions(dhclientHex(env.get('new_vendor_encapsulated_options') ?? ''));
      assert.equal([...subs], [[2, SITE.url]], 'option 43 sub-options');
      assert.is(env.get('new_tftp_server_name'), SITE.url);
      only(env, ['new_tftp_server_name', 'new_vendor_encapsulated_options']);
    },
  },
  {
    what: 'the option-150 fixture vendor (class "Fixture150 phone", a MAC of no vendor) option 150 = the server address',
    mac: '02:00:00:00:15:00',
    vendorClass: 'Fixture150 phone',
    check(env) {
      leased(env);
      assert.is(env.get('new_tftp150'), SERVER_IP);
      only(env, ['new_tftp150']);
    },
  },
  {
    what: 'a Cisco SPA504G (class "Cisco SPA504G", a MAC of no vendor) option 66 = the TFTP host and option 150 = the server address',
    mac: '02:00:00:00:50:04',
    vendorClass: 'Cisco SPA504G',
    check(env) {
      leased(env);
      assert.is(env.get('new_tftp_server_name'), SITE.host);
      assert.is(env.get('new_tftp150'), SERVER_IP);
      only(env, ['new_tftp_server_name', 'new_tftp150']);
    },
  },
  {
    what: 'a Cisco 3PCC phone known by its OUI (d0:ec:35:…, no vendor class) option 66 = the TFTP host and option 150 = the server address',
    mac: 'd0:ec:35:12:34:56',
    check(env) {
      leased(env);
      assert.is(env.get('new_tftp_server_name'), SITE.host);
      assert.is(env.get('new_tftp150'), SERVER_IP);
      only(env, ['new_tftp_server_name', 'new_tftp150']);
    },
  },
  {
    what: 'a Fanvil phone (MAC 0c:38:3e:…, no vendor class: Fanvil sends none by default) option 66 = the provisioning URL + $mac.cfg',
    mac: '0c:38:3e:12:34:56',
    check(env) {
      leased(env);
      // dhclient hands its script a shell-safe value: the $ comes as \$
      assert.is(env.get('new_tftp_server_name')?.replace(/\\\$/g, '$'), `${SITE.url}$mac.cfg`);
      only(env, ['new_tftp_server_name']);
    },
  },
  {
    what: 'a Grandstream phone (MAC 00:0b:82:…, no vendor class) option 66 = the provisioning URL',
    mac: '00:0b:82:12:34:56',
    check(env) {
      leased(env);
      assert.is(env.get('new_tftp_server_name'), SITE.url);
      only(env, ['new_tftp_server_name']);
    },
  },
  {
    what: 'an Htek phone (MAC 00:1f:c1:…, no vendor class) option 66 = the provisioning URL',
    mac: '00:1f:c1:12:34:56',
    check(env) {
      leased(env);
      assert.is(env.get('new_tftp_server_name'), SITE.url);
      only(env, ['new_tftp_server_name']);
    },
  },
  {
    what: 'the every-answer fixture vendor (suffix class "Desk9-fixphone") options 43 (sub-options 66, 67), 66 = host, 114, 160 and 200',
    mac: '02:00:00:00:20:00',
    vendorClass: 'Desk9-fixphone',
    check(env) {
      leased(env);
      const subs = subOptions(dhclientHex(env.get('new_vendor_encapsulated_options') ?? ''));
      assert.equal([...subs], [[66, SITE.url], [67, SITE.url]], 'option 43 sub-options');
      assert.is(env.get('new_tftp_server_name'), SITE.host);
      assert.is(env.get('new_default_url'), SITE.url);
      assert.is(env.get('new_aps160'), SITE.url);
      assert.is(env.get('new_aps200'), SERVER_IP);
      only(env, ['new_tftp_server_name', 'new_vendor_encapsulated_options', 'new_default_url', 'new_aps160', 'new_aps200']);
    },
  },
  {
    what: 'a Gigaset N510 base (class N510_IP_PRO) option 114 = the provisioning URL, and nothing else',
    mac: '7c:2f:80:12:34:56',
    vendorClass: 'N510_IP_PRO',
    check(env) {
      leased(env);
      assert.is(env.get('new_default_url'), SITE.url);
      only(env, ['new_default_url']);
    },
  },
  {
    what: 'a Panasonic phone (class Panasonic) option 66 = the provisioning URL',
    mac: '00:80:f0:12:34:56',
    vendorClass: 'Panasonic',
    check(env) {
      leased(env);
      assert.is(env.get('new_tftp_server_name'), SITE.url);
      only(env, ['new_tftp_server_name']);
    },
  },
  {
    what: 'an AudioCodes phone (AudioCodes MAC, no vendor class) option 160 = the provisioning URL',
    mac: '00:90:8f:12:34:56',
    check(env) {
      leased(env);
      assert.is(env.get('new_aps160'), SITE.url);
      only(env, ['new_aps160']);
    },
  },
  {
    what: 'an ALE 8028s in SIP mode (class alcatel.sip.0) option 43 with sub-option 67 = the provisioning URL',
    mac: '48:7a:55:12:34:56',
    vendorClass: 'alcatel.sip.0',
    check(env) {
      leased(env);
      const subs = subOptions(dhclientHex(env.get('new_vendor_encapsulated_options') ?? ''));
      assert.equal([...subs], [[67, SITE.url]], 'option 43 sub-options');
      only(env, ['new_vendor_encapsulated_options']);
    },
  },
  {
    what: 'a client that is no phone (MAC 02:00:00:00:00:01, no vendor class) an address and no provisioning option',
    mac: '02:00:00:00:00:01',
    check(env) {
      leased(env);
      only(env, []);
    },
  },
];

interface Server {
  name: string;
  format: DhcpClassFormat;
  pkg: string;
  start(link: Link): NsProcess;
  ready: RegExp;
}

const SERVERS: Server[] = [
  {
    name: 'ISC dhcpd',
    format: 'isc',
    pkg: 'isc-dhcp-server',
    ready: /Server starting service/,
    start(link) {
      link.file('aps-classes.conf', blocks('isc'));
      link.file('dhcpd.conf', iscConfig(link.dir));
      link.file('dhcpd.leases', '');
      return link.spawn('host', 'dhcpd', ['-4', '-f', '-d', '-cf', link.file('dhcpd.conf'), '-lf', link.file('dhcpd.leases'), '-pf', link.file('dhcpd.pid'), link.ifname('host')]);
    },
  },
  {
    name: 'Kea',
    format: 'kea',
    pkg: 'kea-dhcp4-server',
    ready: /DHCP4_STARTED/,
    start(link) {
      link.file('kea.json', keaConfig(blocks('kea'), [link.ifname('host')]));
      return link.spawn('host', 'kea-dhcp4', ['-c', link.file('kea.json')], { env: { ...process.env, KEA_LOCKFILE_DIR: link.dir, KEA_PIDFILE_DIR: link.dir } });
    },
  },
  {
    name: 'dnsmasq',
    format: 'dnsmasq',
    pkg: 'dnsmasq-base',
    ready: /DHCP, sockets bound exclusively/,
    start(link) {
      link.file('aps-classes.conf', blocks('dnsmasq'));
      link.file('dnsmasq.conf', dnsmasqConfig(link.dir, link.ifname('host')));
      return link.spawn('host', 'dnsmasq', ['--keep-in-foreground', '--log-facility=-', `--pid-file=${link.file('dnsmasq.pid')}`, `--conf-file=${link.file('dnsmasq.conf')}`]);
    },
  },
];

function dhclientConf(c: Client): string[] {
  return [
    'option tftp150 code 150 = array of ip-address;',
    'option aps160 code 160 = text;',
    'option aps200 code 200 = array of ip-address;',
    ...(c.vendorClass ? [`send vendor-class-identifier "${c.vendorClass}";`] : []),
    'request subnet-mask, routers, tftp-server-name, tftp150, vendor-encapsulated-options, default-url, aps160, aps200;',
  ];
}

/** Runs dhclient once for this client; returns the environment dhclient gave its script on BOUND. */
function exchange(link: Link, c: Client): Promise<Map<string, string>> {
  return dhclientOnce(link, { mac: c.mac, conf: dhclientConf(c), flush: true });
}

const netns = canUseNetns();
if (!netns.ok) console.log(`the DHCP exchanges are skipped: network namespaces cannot be made here (${netns.why})`);

for (const server of SERVERS) {
  const s = suite(`${server.name} with the ${server.format} block`);
  const state: { link?: Link; proc?: NsProcess; error?: string } = {};
  s.before(async () => {
    if (!netns.ok) return;
    for (const [bin, pkg] of [[CHECKS[server.format].bin, server.pkg], ['dhclient', 'isc-dhcp-client']] as const) {
      if (!which(bin)) {
        state.error = `${bin} is not installed: apt-get install -y --no-install-recommends ${pkg}`;
        return;
      }
    }
    try {
      state.link = await createLink({ name: 'dcls', hostIp: SERVER_IP, prefix: 24 });
      state.proc = server.start(state.link);
      await state.proc.waitFor(server.ready, 15_000);
    } catch (e) {
      state.error = `${server.name} did not start: ${(e as Error).message}`;
    }
  });
  s.after(async () => {
    await state.link?.cleanup();
  });
  CLIENTS.forEach((c) => {
    // without namespaces the exchange is skipped, and counted as skipped, not as passed
    (netns.ok ? s : s.skip)(`${server.name} gives ${c.what}`, async () => {
      if (state.error) assert.unreachable(state.error);
      const env = await exchange(state.link!, c);
      try {
        c.check(env);
      } catch (e) {
        if (e instanceof Error) e.message += `\n${server.name} output:\n${state.proc!.output().slice(-4000)}`;
        throw e;
      }
    });
  });
  s.run();
}

test.run();
