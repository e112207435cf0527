/**
 * DHCP codec and framing. Real captured packets first (dhclient ↔ dnsmasq, a Yealink MAC),
 * then hand-made edge cases, then fuzzing with a seeded PRNG: set APS_FUZZ_SEED=<n> to
 * replay a failure (the seed is printed with every fuzz failure).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ApsError } from '../src/errors.js';
import {
  BOOTP_MIN_BYTES,
  DHCP_MESSAGE_TYPES,
  DhcpMessage,
  decodeDhcp,
  encodeDhcp,
  optIp,
  optIps,
  optString,
  optSub,
  optU32,
  parseSubOptions,
  type DhcpEncodeInput,
  type DhcpTypedOptions,
} from '../src/wire/dhcp.js';
import {
  LINKTYPE_ETHERNET,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  dhcpFromFrame,
  frameForDhcp,
  internetChecksum,
  pcapBytes,
  readPcap,
  writePcap,
} from '../src/wire/frame.js';
import { ROOT } from './support/paths.js';

// ---------------------------------------------------------------- fixtures

const FIX = path.join(ROOT, 'test/fixtures/dhcp');
const DISCOVER = fs.readFileSync(path.join(FIX, 'dhcp-1-DISCOVER.bin'));
const OFFER = fs.readFileSync(path.join(FIX, 'dhcp-2-OFFER.bin'));
const REQUEST = fs.readFileSync(path.join(FIX, 'dhcp-3-REQUEST.bin'));
const ACK = fs.readFileSync(path.join(FIX, 'dhcp-4-ACK.bin'));
const FIXTURES: [string, Buffer][] = [
  ['DISCOVER', DISCOVER],
  ['OFFER', OFFER],
  ['REQUEST', REQUEST],
  ['ACK', ACK],
];
const PHONE_MAC = '805ec0123456';
const PROV_URL = 'http://10.99.0.1/prov/';

function ok(buf: Buffer): DhcpMessage {
  const r = decodeDhcp(buf);
  if (!r.ok) assert.unreachable(`expected a valid message, got: ${r.reason}`);
  return (r as { ok: true; msg: DhcpMessage }).msg;
}
function bad(buf: Buffer): string {
  const r = decodeDhcp(buf);
  if (r.ok) assert.unreachable('expected the message to be refused');
  return (r as { ok: false; reason: string }).reason;
}
const hexOf = (m: Map<number, Buffer>) => [...m].map(([k, v]) => [k, v.toString('hex')]);

/** A minimal valid message: header, cookie, then the given option bytes. */
function handMade(options: number[], patch?: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(240 + options.length);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  b.writeUInt32BE(0xdeadbeef, 4);
  Buffer.from(PHONE_MAC, 'hex').copy(b, 28);
  b.writeUInt32BE(0x63825363, 236);
  Buffer.from(options).copy(b, 240);
  patch?.(b);
  return b;
}

// ---------------------------------------------------------------- real captured packets

test('the captured DISCOVER reads as a DISCOVER from the Yealink 80:5e:c0:12:34:56, vendor class "yealink", host name "yealink-t46"', () => {
  const m = ok(DISCOVER);
  assert.is(m.type, 'DISCOVER');
  assert.is(m.op, 1);
  assert.is(m.mac, PHONE_MAC);
  assert.is(m.chaddr, PHONE_MAC);
  assert.is(m.xid, 0x865c8f30);
  assert.is(m.vendorClass, 'yealink');
  assert.is(m.hostname, 'yealink-t46');
  assert.equal(m.paramList, [1, 3, 66, 150, 43]);
  assert.is(m.requestedIp, undefined);
  assert.is(m.ciaddr, '0.0.0.0');
  assert.is(m.sname, '');
  assert.is(m.file, '');
});

test('the captured OFFER offers 10.99.0.113 for an hour from server 10.99.0.1 with the provisioning URL', () => {
  const m = ok(OFFER);
  assert.is(m.type, 'OFFER');
  assert.is(m.op, 2);
  assert.is(m.mac, PHONE_MAC);
  assert.is(m.yiaddr, '10.99.0.113');
  assert.is(m.siaddr, '10.99.0.1');
  assert.is(m.serverId, '10.99.0.1');
  assert.is(m.leaseTime, 3600);
  assert.is(m.subnetMask, '255.255.255.0');
  assert.equal(m.routers, ['10.99.0.1']);
  assert.is(m.tftpServer, PROV_URL);
});

test('the captured REQUEST asks server 10.99.0.1 for 10.99.0.113 as the Yealink', () => {
  const m = ok(REQUEST);
  assert.is(m.type, 'REQUEST');
  assert.is(m.mac, PHONE_MAC);
  assert.is(m.requestedIp, '10.99.0.113');
  assert.is(m.serverId, '10.99.0.1');
  assert.is(m.vendorClass, 'yealink');
  assert.is(m.hostname, 'yealink-t46');
});

test('the captured ACK gives the phone option 66 "http://10.99.0.1/prov/" (dnsmasq\'s trailing NUL stays in the raw option)', () => {
  const m = ok(ACK);
  assert.is(m.type, 'ACK');
  assert.is(m.mac, PHONE_MAC);
  assert.is(m.yiaddr, '10.99.0.113');
  assert.is(m.tftpServer, PROV_URL);
  assert.is(m.options.get(66)!.toString('latin1'), PROV_URL + '\0');
  assert.equal([...m.options.keys()], [53, 54, 51, 58, 59, 1, 28, 3, 66]);
});

test('re-encoding each captured message gives back the very same bytes and options', () => {
  for (const [name, buf] of FIXTURES) {
    const m = ok(buf);
    const again = encodeDhcp(m);
    assert.ok(again.equals(buf), `${name}: byte-identical`);
    assert.equal(hexOf(ok(again).options), hexOf(m.options), `${name}: options`);
    // a spread copy (own fields only) encodes the same
    assert.ok(encodeDhcp({ ...m }).equals(buf), `${name}: spread copy`);
  }
});

test('a decoded message never shares memory with the captured buffer', () => {
  const copy = Buffer.from(ACK);
  const m = ok(copy);
  copy.fill(0);
  assert.is(m.tftpServer, PROV_URL);
  assert.is(m.options.get(54)!.toString('hex'), '0a630001');
});

// ---------------------------------------------------------------- hand-made packets

test('a captured packet cut at any length is refused or reads as a shorter, consistent message — never a throw', () => {
  for (const [name, full] of FIXTURES) {
    const whole = ok(full);
    let valid = 0;
    for (let len = 0; len <= full.length; len++) {
      const r = decodeDhcp(full.subarray(0, len));
      if (len < 240) {
        assert.not.ok(r.ok, `${name} cut at ${len} is too short`);
        continue;
      }
      if (!r.ok) {
        assert.type(r.reason, 'string');
        continue;
      }
      valid++;
      assert.is(r.msg.xid, whole.xid);
      assert.is(r.msg.mac, whole.mac);
      for (const [code, val] of r.msg.options) {
        assert.ok(whole.options.get(code)?.equals(val), `${name} cut at ${len}: option ${code} is a prefix parse`);
      }
    }
    assert.ok(valid >= whole.options.size, `${name}: every option boundary gives a valid shorter message`);
  }
});

test('a message without the magic cookie is refused, naming the cookie', () => {
  const b = Buffer.from(DISCOVER);
  b[239] = 0x64;
  assert.match(bad(b), /magic cookie/);
});

test('an option whose length runs past the end of the packet is refused', () => {
  assert.match(bad(handMade([53, 1, 1, 60, 10, 0x79, 0x65])), /option 60 .*length 10 runs past the end/);
  assert.match(bad(handMade([53, 1, 1, 61])), /option 61 .*no length byte/);
});

test('a header with hlen over 16 or an op that is neither request nor reply is refused', () => {
  assert.match(bad(handMade([53, 1, 1, 255], (b) => (b[2] = 17))), /hlen 17/);
  assert.match(bad(handMade([53, 1, 1, 255], (b) => (b[0] = 3))), /op 3/);
});

test('pad options are skipped, options after the end option are ignored, a missing end option is tolerated', () => {
  const m = ok(handMade([0, 0, 53, 1, 1, 0, 12, 2, 0x61, 0x62, 255, 60, 3, 1, 2, 3]));
  assert.equal([...m.options.keys()], [53, 12]);
  assert.is(m.hostname, 'ab');
  assert.is(ok(handMade([53, 1, 3])).type, 'REQUEST');
});

test('with option overload 3, options continue in the file field and then the sname field', () => {
  const b = handMade([53, 1, 5, 52, 1, 3, 43, 2, 0xaa, 0xbb, 255], (b) => {
    // file (offset 108): tftp server + more of option 43, then end
    Buffer.from([66, 4, 0x61, 0x62, 0x63, 0x64, 43, 1, 0xcc, 255]).copy(b, 108);
    // sname (offset 44): bootfile + the last piece of option 43
    Buffer.from([67, 3, 0x78, 0x79, 0x7a, 43, 1, 0xdd, 255]).copy(b, 44);
  });
  const m = ok(b);
  assert.is(m.overload, 3);
  assert.is(m.tftpServer, 'abcd');
  assert.is(m.bootfileName, 'xyz');
  assert.is(m.options.get(43)!.toString('hex'), 'aabbccdd', 'options → file → sname order (RFC 2131/3396)');
  assert.is(m.sname, '', 'the sname field held options, not a server name');
  assert.is(m.file, '');
});

test('with option overload 1 only the file field holds options; sname is still a name', () => {
  const b = handMade([53, 1, 2, 52, 1, 1, 255], (b) => {
    Buffer.from([66, 1, 0x41, 255]).copy(b, 108);
    b.write('boot.example', 44, 'latin1');
  });
  const m = ok(b);
  assert.is(m.tftpServer, 'A');
  assert.is(m.sname, 'boot.example');
  assert.is(m.file, '');
});

test('a bad overload value or an option running past the file field is refused', () => {
  assert.match(bad(handMade([53, 1, 1, 52, 1, 4, 255])), /option 52/);
  assert.match(bad(handMade([53, 1, 1, 52, 2, 1, 1, 255])), /option 52/);
  const past = handMade([53, 1, 1, 52, 1, 1, 255], (b) => {
    b[108 + 126] = 66;
    b[108 + 127] = 9;
  });
  assert.match(bad(past), /file field/);
});

test('an option split into several pieces (RFC 3396) reads as one value, and long values are split when encoding', () => {
  const m = ok(handMade([53, 1, 1, 43, 2, 1, 2, 12, 1, 0x68, 43, 3, 3, 4, 5, 255]));
  assert.is(m.options.get(43)!.toString('hex'), '0102030405');
  const long = Buffer.alloc(600, 7);
  const enc = encodeDhcp({ op: 2, xid: 1, chaddr: PHONE_MAC, type: 'ACK', options: new Map([[43, long]]) });
  // 53 (3 bytes), then 43 as 255 + 255 + 90
  assert.equal([enc[243], enc[244], enc[243 + 257], enc[244 + 257], enc[243 + 514], enc[244 + 514]], [43, 255, 43, 255, 43, 90]);
  assert.ok(ok(enc).options.get(43)!.equals(long));
});

test('a binary client identifier is kept as hex, never as text', () => {
  const m = ok(handMade([53, 1, 1, 61, 7, 0x01, 0x80, 0x5e, 0xc0, 0x12, 0x34, 0x56, 255]));
  assert.is(m.clientId, '01805ec0123456');
  const odd = ok(handMade([61, 4, 0x00, 0xff, 0x0a, 0x80]));
  assert.is(odd.clientId, '00ff0a80');
  assert.is(odd.type, undefined, 'no option 53: plain BOOTP-with-cookie');
});

test('relay agent information (option 82) gives circuit-id and remote-id as hex; a broken one stays raw only', () => {
  const m = ok(handMade([53, 1, 1, 82, 12, 1, 4, 0, 4, 0, 1, 2, 4, 0xc0, 0xa8, 0, 1, 255], (b) => b.writeUInt32BE(0x0a010201, 24)));
  assert.is(m.giaddr, '10.1.2.1');
  assert.is(m.relayAgent?.circuitId, '00040001');
  assert.is(m.relayAgent?.remoteId, 'c0a80001');
  assert.equal(m.relayAgent?.subOptions?.map((s) => s.code), [1, 2]);
  const broken = ok(handMade([53, 1, 1, 82, 3, 1, 5, 0, 255]));
  assert.is(broken.relayAgent, undefined);
  assert.is(broken.options.get(82)!.toString('hex'), '010500');
});

test('unknown and private options are kept as raw bytes, in order', () => {
  const m = ok(handMade([53, 1, 8, 224, 3, 9, 8, 7, 250, 0, 120, 1, 0, 255]));
  assert.equal(hexOf(m.options), [
    [53, '08'],
    [224, '090807'],
    [250, ''],
    [120, '00'],
  ]);
  assert.is(m.type, 'INFORM');
});

test('a Cisco vendor class ending in NUL keeps its NUL; a user class and an unknown message type are exposed as they are', () => {
  const vc = Buffer.from('Cisco IP Phone 7960\0', 'latin1');
  const m = ok(handMade([53, 1, 42, 60, vc.length, ...vc, 77, 4, 0x69, 0x50, 0x58, 0x45, 255]));
  assert.is(m.vendorClass, 'Cisco IP Phone 7960\0');
  assert.is(m.userClass, 'iPXE');
  assert.is(m.type, undefined);
  assert.is(m.typeCode, 42);
});

test('the broadcast flag, chaddr of a non-Ethernet client and sname/file text are read from the header', () => {
  const m = ok(
    handMade([53, 1, 1, 255], (b) => {
      b[1] = 6; // IEEE 802
      b[2] = 8;
      Buffer.from('0102030405060708', 'hex').copy(b, 28);
      b.writeUInt16BE(0x8000, 10);
      b.write('srv', 44, 'latin1');
      b.write('boot/file.cfg', 108, 'latin1');
    }),
  );
  assert.is(m.broadcast, true);
  assert.is(m.chaddr, '0102030405060708');
  assert.is(m.mac, null);
  assert.is(m.sname, 'srv');
  assert.is(m.file, 'boot/file.cfg');
});

// ---------------------------------------------------------------- encoding

test('an encoded OFFER has option 53 first, an end option, at least 300 bytes, and the typed fields it was given', () => {
  const b = encodeDhcp({
    xid: 0x1234,
    chaddr: '80:5e:c0:12:34:56',
    yiaddr: '10.199.0.50',
    options: new Map([
      [66, optString(PROV_URL)],
      [43, optSub([{ code: 1, data: 'abc' }, { code: 2, data: Buffer.from([9]) }])],
      [52, Buffer.from([3])], // never overloads: dropped
    ]),
    type: 'OFFER',
    serverId: '10.199.0.1',
    leaseTime: 600,
    subnetMask: '255.255.255.0',
    routers: ['10.199.0.1'],
  });
  assert.ok(b.length >= BOOTP_MIN_BYTES);
  assert.equal([b[240], b[241], b[242]], [53, 1, 2]);
  const m = ok(b);
  assert.is(m.op, 2, 'op derived from the type');
  assert.is(m.htype, 1);
  assert.is(m.hlen, 6);
  assert.is(m.mac, PHONE_MAC);
  assert.is(m.yiaddr, '10.199.0.50');
  assert.is(m.serverId, '10.199.0.1');
  assert.is(m.leaseTime, 600);
  assert.is(m.tftpServer, PROV_URL);
  assert.equal(
    parseSubOptions(m.options.get(43)!)!.map((s) => [s.code, s.data.toString('hex')]),
    [
      [1, '616263'],
      [2, '09'],
    ],
  );
  assert.not.ok(m.options.has(52));
  // the end option follows the last option
  const endAt = 240 + [...m.options.values()].reduce((n, v) => n + 2 + v.length, 0);
  assert.is(b[endAt], 255);
});

test('typed fields set on a copy override the decoded option; the decoded getters never do', () => {
  const m = ok(ACK);
  m.options.set(51, optU32(60));
  assert.is(ok(encodeDhcp(m)).leaseTime, 60, 'the map is the truth for a decoded message');
  const copy = ok(encodeDhcp({ ...ok(ACK), leaseTime: 120, tftpServer: 'http://x/' }));
  assert.is(copy.leaseTime, 120);
  assert.is(copy.tftpServer, 'http://x/');
  assert.equal([...copy.options.keys()], [53, 54, 51, 58, 59, 1, 28, 3, 66], 'overrides keep the position');
});

test('option helpers build network-order values and refuse what cannot be encoded', () => {
  assert.is(optIp('10.0.0.1').toString('hex'), '0a000001');
  assert.is(optIps(['1.2.3.4', '5.6.7.8']).toString('hex'), '0102030405060708');
  assert.is(optU32(3600).toString('hex'), '00000e10');
  assert.is(optSub([{ code: 2, data: 'x' }]).toString('hex'), '020178');
  const throwsProtocol = (f: () => unknown, what: string) => {
    try {
      f();
    } catch (e) {
      assert.instance(e, ApsError, what);
      assert.is((e as ApsError).code, 'APS_ERR_PROTOCOL', what);
      return;
    }
    assert.unreachable(`${what} should throw`);
  };
  for (const badIp of ['10.0.0.256', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1..2.3', ' 1.2.3.4', '1.2.3.4\n']) throwsProtocol(() => optIp(badIp), `bad IP ${JSON.stringify(badIp)}`);
  throwsProtocol(() => optIps([]), 'empty IP list');
  throwsProtocol(() => optU32(-1), 'negative u32');
  throwsProtocol(() => optString('snowman ☃'), 'non-latin1');
  throwsProtocol(() => optSub([{ code: 1, data: Buffer.alloc(256) }]), 'sub-option over 255');
  throwsProtocol(() => encodeDhcp({ xid: 1, chaddr: '00'.repeat(17), type: 'DISCOVER' }), '17-byte chaddr');
  throwsProtocol(() => encodeDhcp({ xid: 1, chaddr: PHONE_MAC }), 'no op and no type');
  throwsProtocol(() => encodeDhcp({ xid: 1, chaddr: PHONE_MAC, type: 'ACK', options: new Map([[255, Buffer.alloc(1)]]) }), 'option 255');
  throwsProtocol(() => encodeDhcp({ xid: 1, chaddr: PHONE_MAC, type: 'ACK', sname: 'a'.repeat(65) }), 'long sname');
  throwsProtocol(() => encodeDhcp({ xid: 2 ** 32, chaddr: PHONE_MAC, type: 'ACK' }), 'xid over 32 bits');
});

// ---------------------------------------------------------------- framing and pcap

const CLIENT = { mac: '80:5e:c0:12:34:56', ip: '0.0.0.0', port: 68 };
const BCAST = { mac: 'ff:ff:ff:ff:ff:ff', ip: '255.255.255.255', port: 67 };

test('a DHCP payload framed as Ethernet/IPv4/UDP comes back out with both endpoints and valid checksums', () => {
  const f = frameForDhcp({ payload: DISCOVER, src: CLIENT, dst: BCAST });
  assert.is(f.length, 14 + 20 + 8 + DISCOVER.length);
  assert.is(internetChecksum(f.subarray(14, 34)), 0, 'IPv4 header checksum verifies');
  const pseudo = Buffer.concat([f.subarray(26, 34), Buffer.from([0, 17]), f.subarray(38, 40)]);
  assert.is(internetChecksum(pseudo, f.subarray(34)), 0, 'UDP checksum verifies');
  const r = dhcpFromFrame(f, LINKTYPE_ETHERNET);
  if (!r.ok) return assert.unreachable(r.reason);
  assert.ok(r.payload.equals(DISCOVER));
  assert.equal(r.src, { mac: PHONE_MAC, ip: '0.0.0.0', port: 68 });
  assert.equal(r.dst, { mac: 'ffffffffffff', ip: '255.255.255.255', port: 67 });
  assert.is(r.vlan, undefined);
  assert.is(ok(r.payload).type, 'DISCOVER');
  const noSum = frameForDhcp({ payload: DISCOVER, src: CLIENT, dst: BCAST, udpChecksum: false });
  assert.is(noSum.readUInt16BE(40), 0);
});

test('a VLAN-tagged frame gives its VLAN ID; trailing Ethernet padding is not part of the payload', () => {
  const f = frameForDhcp({ payload: OFFER, src: { mac: '00:11:22:33:44:55', ip: '10.99.0.1', port: 67 }, dst: { ...CLIENT, ip: '10.99.0.113' }, vlan: 42 });
  const padded = Buffer.concat([f, Buffer.alloc(20)]);
  const r = dhcpFromFrame(padded, LINKTYPE_ETHERNET);
  if (!r.ok) return assert.unreachable(r.reason);
  assert.is(r.vlan, 42);
  assert.ok(r.payload.equals(OFFER));
  assert.is(r.src.ip, '10.99.0.1');
});

test('frames captured on "any" (LINUX_SLL and LINUX_SLL2) give the sender MAC, and SLL2 the interface index', () => {
  const eth = frameForDhcp({ payload: REQUEST, src: CLIENT, dst: BCAST });
  const ipPart = eth.subarray(14);
  const sll = Buffer.alloc(16);
  sll.writeUInt16BE(1, 0); // broadcast
  sll.writeUInt16BE(1, 2); // ARPHRD_ETHER
  sll.writeUInt16BE(6, 4);
  Buffer.from(PHONE_MAC, 'hex').copy(sll, 6);
  sll.writeUInt16BE(0x0800, 14);
  const r1 = dhcpFromFrame(Buffer.concat([sll, ipPart]), LINKTYPE_LINUX_SLL);
  if (!r1.ok) return assert.unreachable(r1.reason);
  assert.is(r1.src.mac, PHONE_MAC);
  assert.is(r1.dst.mac, null);
  assert.is(r1.packetType, 1);
  assert.ok(r1.payload.equals(REQUEST));
  const sll2 = Buffer.alloc(20);
  sll2.writeUInt16BE(0x0800, 0);
  sll2.writeUInt32BE(7, 4);
  sll2.writeUInt16BE(1, 8);
  sll2[10] = 1;
  sll2[11] = 6;
  Buffer.from(PHONE_MAC, 'hex').copy(sll2, 12);
  const r2 = dhcpFromFrame(Buffer.concat([sll2, ipPart]), LINKTYPE_LINUX_SLL2);
  if (!r2.ok) return assert.unreachable(r2.reason);
  assert.is(r2.src.mac, PHONE_MAC);
  assert.is(r2.ifindex, 7);
  assert.ok(r2.payload.equals(REQUEST));
});

test('fragments, other protocols, other ports and unknown link types are refused with a reason', () => {
  const f = frameForDhcp({ payload: DISCOVER, src: CLIENT, dst: BCAST });
  const frag = Buffer.from(f);
  frag.writeUInt16BE(0x2000, 20);
  assert.match((dhcpFromFrame(frag, 1) as { reason: string }).reason, /fragment/);
  const tcp = Buffer.from(f);
  tcp[23] = 6;
  assert.match((dhcpFromFrame(tcp, 1) as { reason: string }).reason, /not UDP/);
  const dns = frameForDhcp({ payload: DISCOVER, src: { ...CLIENT, port: 5353 }, dst: { ...BCAST, port: 53 } });
  assert.match((dhcpFromFrame(dns, 1) as { reason: string }).reason, /not DHCP/);
  const v6 = Buffer.from(f);
  v6.writeUInt16BE(0x86dd, 12);
  assert.match((dhcpFromFrame(v6, 1) as { reason: string }).reason, /not IPv4/);
  assert.match((dhcpFromFrame(f, 999) as { reason: string }).reason, /link type 999/);
  for (let len = 0; len < f.length; len++) assert.not.ok(dhcpFromFrame(f.subarray(0, len), 1).ok, `cut at ${len}`);
});

test('a pcap file written with the four captured messages reads back frame for frame', () => {
  const frames = FIXTURES.map(([, buf], i) => ({ ts: 1764150000 + i * 0.25 + 0.000001, data: frameForDhcp({ payload: buf, src: CLIENT, dst: BCAST }) }));
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'aps-pcap-')), 'dhcp.pcap');
  try {
    writePcap(file, frames);
    const p = readPcap(fs.readFileSync(file));
    assert.is(p.linktype, LINKTYPE_ETHERNET);
    assert.is(p.truncated, false);
    assert.is(p.frames.length, 4);
    p.frames.forEach((fr, i) => {
      assert.ok(fr.data.equals(frames[i]!.data));
      assert.ok(Math.abs(fr.ts - frames[i]!.ts) < 1e-6);
      const r = dhcpFromFrame(fr.data, p.linktype);
      assert.ok(r.ok && ok(r.payload).type === FIXTURES[i]![0]);
    });
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
  const cut = pcapBytes(frames, LINKTYPE_LINUX_SLL);
  const p2 = readPcap(cut.subarray(0, cut.length - 5));
  assert.is(p2.linktype, LINKTYPE_LINUX_SLL);
  assert.is(p2.frames.length, 3);
  assert.is(p2.truncated, true);
  let threw = false;
  try {
    readPcap(Buffer.from('0a0d0d0a00000000000000000000000000000000000000000000', 'hex'));
  } catch (e) {
    threw = (e as ApsError).code === 'APS_ERR_PROTOCOL';
  }
  assert.ok(threw, 'pcapng is refused with APS_ERR_PROTOCOL');
});

// ---------------------------------------------------------------- fuzzing

const SEED = Number(process.env.APS_FUZZ_SEED ?? ((Date.now() ^ (process.pid << 16)) >>> 0));
const N = 100_000;
const PER_PACKET_MS = 100;
const TOTAL_MS = 20_000;
const replay = (what: string, i: number) => `${what} #${i} failed — seed ${SEED}; replay with APS_FUZZ_SEED=${SEED}`;

/** mulberry32: small, fast, good enough to fuzz with, and reproducible. */
function prng(seed: number) {
  let a = seed >>> 0;
  const u32 = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = () => u32() / 4294967296;
  const int = (n: number) => Math.floor(next() * n); // 0..n-1
  const bytes = (n: number) => {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(u32(), i);
    for (let r = u32(); i < n; i++, r >>>= 8) b[i] = r & 0xff;
    return b;
  };
  return { next, int, bytes, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!, chance: (p: number) => next() < p };
}

/** Runs `decode` and tracks the slowest call. */
function timed(buf: Buffer, stats: { max: number; total: number }) {
  const t0 = performance.now();
  const r = decodeDhcp(buf);
  const dt = performance.now() - t0;
  stats.total += dt;
  if (dt > stats.max) stats.max = dt;
  return r;
}

test(`decoding ${N} random buffers never throws and never hangs`, () => {
  const R = prng(SEED);
  const stats = { max: 0, total: 0 };
  let accepted = 0;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const len = R.chance(0.1) ? R.int(240) : 240 + R.int(460);
    const b = R.bytes(len);
    if (len >= 240 && R.chance(0.7)) {
      // a plausible header so that the options loop is what gets fuzzed
      b[0] = 1 + R.int(2);
      b[2] = R.int(17);
      b.writeUInt32BE(0x63825363, 236);
      if (R.chance(0.3)) b[240] = 53, b[241] = 1, b[242] = 1 + R.int(8), b[243] = R.chance(0.5) ? 52 : b[243]!, b[244] = 1, b[245] = 1 + R.int(3);
    }
    let r;
    try {
      r = timed(b, stats);
    } catch (e) {
      assert.unreachable(`${replay('random buffer', i)}: threw ${(e as Error).message}`);
      return;
    }
    if (r.ok) accepted++;
    else if (typeof r.reason !== 'string' || !r.reason) assert.unreachable(replay('random buffer', i) + ': empty reason');
  }
  const ms = performance.now() - t0;
  console.log(`  fuzz random: ${N} buffers in ${ms.toFixed(0)} ms, decoding alone ${Math.round(N / (stats.total / 1000))}/s, ${accepted} valid, slowest ${stats.max.toFixed(2)} ms (seed ${SEED})`);
  assert.ok(ms < TOTAL_MS, replay(`random buffers took ${ms} ms`, N));
  assert.ok(stats.max < PER_PACKET_MS, replay(`one decode took ${stats.max} ms`, N));
  assert.ok(accepted > 0, 'some random messages are valid (the options loop was reached)');
});

test(`decoding ${N} mutations of the captured packets never throws, and whatever decodes re-encodes to the same message`, () => {
  const R = prng(SEED ^ 0x9e3779b9);
  const stats = { max: 0, total: 0 };
  let accepted = 0;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    let b: Buffer = Buffer.from(R.pick(FIXTURES)[1]);
    for (let k = 1 + R.int(3); k > 0; k--) {
      switch (R.int(6)) {
        case 0: // bit flips, mostly in the options area
          for (let f = 1 + R.int(8); f > 0; f--) {
            const at = R.chance(0.8) ? 240 + R.int(Math.max(1, b.length - 240)) : R.int(b.length || 1);
            if (at < b.length) b[at]! ^= 1 << R.int(8);
          }
          break;
        case 1: // truncation
          b = b.subarray(0, R.int(b.length + 1));
          break;
        case 2: {
          // byte insertion
          const at = R.int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), R.bytes(1 + R.int(16)), b.subarray(at)]);
          break;
        }
        case 3: {
          // byte deletion
          const at = R.int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + R.int(8)))]);
          break;
        }
        case 4: // a special byte somewhere in the options: pad, end, overload, a length
          if (b.length > 240) b[240 + R.int(b.length - 240)] = R.pick([0, 255, 52, 1, 2, 3, 253, 254]);
          break;
        default: // overload into file/sname with random content there
          if (b.length > 243) {
            b = Buffer.from(b);
            b[240] = 52;
            b[241] = 1;
            b[242] = 1 + R.int(3);
            R.bytes(R.int(192)).copy(b, 44);
          }
      }
    }
    let r;
    try {
      r = timed(b, stats);
    } catch (e) {
      assert.unreachable(`${replay('mutation', i)}: threw ${(e as Error).message}`);
      return;
    }
    if (!r.ok) continue;
    accepted++;
    // anything decoded can be re-encoded, and reads back the same (overload is undone)
    let again: DhcpMessage;
    try {
      again = ok(encodeDhcp(r.msg));
    } catch (e) {
      assert.unreachable(`${replay('mutation re-encode', i)}: ${(e as Error).message} (input ${b.toString('hex')})`);
      return;
    }
    const want = new Map(r.msg.options);
    want.delete(52);
    const d = diffMessages(headerOf(r.msg, true), headerOf(again, true), want, again.options);
    if (d) assert.unreachable(`${replay('mutation round trip', i)}: ${d} (input ${b.toString('hex')})`);
  }
  const ms = performance.now() - t0;
  console.log(`  fuzz mutations: ${N} in ${ms.toFixed(0)} ms, decoding alone ${Math.round(N / (stats.total / 1000))}/s, ${accepted} valid ones re-encoded, slowest decode ${stats.max.toFixed(2)} ms (seed ${SEED})`);
  assert.ok(ms < TOTAL_MS, replay(`mutations took ${ms} ms`, N));
  assert.ok(stats.max < PER_PACKET_MS, replay(`one decode took ${stats.max} ms`, N));
  assert.ok(accepted > N / 10, `a good share of mutations still decode (${accepted})`);
});

function headerOf(m: Partial<DhcpMessage> | DhcpEncodeInput, decoded: boolean) {
  const h = m as Record<string, unknown>;
  const keys = ['op', 'htype', 'hlen', 'hops', 'xid', 'secs', 'flags', 'ciaddr', 'yiaddr', 'siaddr', 'giaddr', 'chaddr'];
  const o: Record<string, unknown> = {};
  for (const k of keys) o[k] = h[k];
  // an overloaded message's sname/file are '' both before and after
  o.sname = decoded ? h.sname : h.sname ?? '';
  o.file = decoded ? h.file : h.file ?? '';
  return o;
}

function norm(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, norm(x)]));
  }
  return v;
}

/** First difference between two headers and option maps, or null. */
function diffMessages(h1: Record<string, unknown>, h2: Record<string, unknown>, o1: Map<number, Buffer>, o2: Map<number, Buffer>): string | null {
  for (const k of Object.keys(h1)) if (h1[k] !== h2[k]) return `header ${k}: ${JSON.stringify(h1[k])} != ${JSON.stringify(h2[k])}`;
  if (o1.size !== o2.size) return `option codes [${[...o1.keys()]}] != [${[...o2.keys()]}]`;
  for (const [c, v] of o1) if (!o2.get(c)?.equals(v)) return `option ${c}: ${v.toString('hex')} != ${o2.get(c)?.toString('hex')}`;
  return null;
}

const TYPED_CODES: Record<keyof DhcpTypedOptions, number> = {
  type: 53,
  vendorClass: 60,
  paramList: 55,
  hostname: 12,
  clientId: 61,
  requestedIp: 50,
  serverId: 54,
  leaseTime: 51,
  relayAgent: 82,
  userClass: 77,
  subnetMask: 1,
  routers: 3,
  tftpServer: 66,
  bootfileName: 67,
  tftpServers150: 150,
};

function randomMessage(R: ReturnType<typeof prng>): DhcpEncodeInput {
  const ip = () => `${R.int(256)}.${R.int(256)}.${R.int(256)}.${R.int(256)}`;
  const text = (max: number, nul = true) => {
    const b = R.bytes(R.int(max + 1));
    if (!nul) for (let i = 0; i < b.length; i++) if (b[i] === 0) b[i] = 1 + (i % 255);
    return b.toString('latin1');
  };
  const len = () => (R.chance(0.05) ? 256 + R.int(500) : R.int(40));
  const htype = R.chance(0.8) ? 1 : R.int(256);
  const hlen = htype === 1 && R.chance(0.8) ? 6 : R.int(17);
  const m: DhcpEncodeInput = {
    op: 1 + R.int(2),
    htype,
    hops: R.int(256),
    xid: R.int(2 ** 32),
    secs: R.int(65536),
    flags: R.int(65536),
    ciaddr: ip(),
    yiaddr: ip(),
    siaddr: ip(),
    giaddr: ip(),
    chaddr: R.bytes(hlen).toString('hex'),
    sname: text(64, false),
    file: text(128, false),
  };
  const raw = new Map<number, Buffer>();
  for (let n = R.int(8); n > 0; n--) {
    const code = 1 + R.int(254);
    if (code !== 52) raw.set(code, R.bytes(len()));
  }
  if (raw.has(53) && R.chance(0.5)) raw.set(53, Buffer.from([1 + R.int(8)]));
  m.options = raw;
  const t = m as DhcpTypedOptions;
  if (R.chance(0.8)) t.type = R.pick(DHCP_MESSAGE_TYPES);
  if (R.chance(0.4)) t.vendorClass = text(len());
  if (R.chance(0.4)) t.paramList = [...R.bytes(R.int(30))];
  if (R.chance(0.4)) t.hostname = text(40);
  if (R.chance(0.4)) t.clientId = R.bytes(R.int(20)).toString('hex');
  if (R.chance(0.3)) t.requestedIp = ip();
  if (R.chance(0.3)) t.serverId = ip();
  if (R.chance(0.3)) t.leaseTime = R.int(2 ** 32);
  if (R.chance(0.2)) {
    const subs = [];
    for (let n = R.int(4); n > 0; n--) subs.push({ code: 3 + R.int(250), data: R.bytes(R.int(30)) });
    const circuitId = R.bytes(R.int(20)).toString('hex');
    const remoteId = R.bytes(R.int(20)).toString('hex');
    t.relayAgent = { circuitId, remoteId, subOptions: [{ code: 1, data: Buffer.from(circuitId, 'hex') }, { code: 2, data: Buffer.from(remoteId, 'hex') }, ...subs] };
  }
  if (R.chance(0.2)) t.userClass = text(30);
  if (R.chance(0.3)) t.subnetMask = ip();
  if (R.chance(0.3)) t.routers = Array.from({ length: 1 + R.int(4) }, ip);
  if (R.chance(0.3)) t.tftpServer = text(len(), false);
  if (R.chance(0.2)) t.bootfileName = text(60, false);
  if (R.chance(0.2)) t.tftpServers150 = Array.from({ length: 1 + R.int(3) }, ip);
  if (t.type === undefined && !raw.has(53)) t.type = 'DISCOVER'; // needs a type or an op: op is set, but keep most typed
  return m;
}

test(`${N} random valid messages survive encode then decode unchanged on every field`, () => {
  const R = prng(SEED ^ 0x85ebca6b);
  const t0 = performance.now();
  let bytes = 0;
  for (let i = 0; i < N; i++) {
    const m = randomMessage(R);
    let buf: Buffer;
    try {
      buf = encodeDhcp(m);
    } catch (e) {
      assert.unreachable(`${replay('encode', i)}: ${(e as Error).message}`);
      return;
    }
    bytes += buf.length;
    const r = decodeDhcp(buf);
    if (!r.ok) {
      assert.unreachable(`${replay('round trip', i)}: decode refused: ${r.reason}`);
      return;
    }
    const d = r.msg;
    // header
    const want = headerOf(m, false);
    want.hlen = (m.chaddr.length / 2) | 0;
    const got = headerOf(d, true);
    for (const k of Object.keys(want)) if (want[k] !== got[k]) assert.unreachable(`${replay('round trip', i)}: header ${k} ${JSON.stringify(want[k])} != ${JSON.stringify(got[k])}`);
    if (d.mac !== (m.htype === 1 && want.hlen === 6 ? m.chaddr : null)) assert.unreachable(`${replay('round trip', i)}: mac ${d.mac}`);
    // typed fields given come back equal; raw options not overridden come back byte for byte
    const overridden = new Set<number>();
    for (const k of Object.keys(TYPED_CODES) as (keyof DhcpTypedOptions)[]) {
      const v = (m as DhcpTypedOptions)[k];
      if (v === undefined) continue;
      overridden.add(TYPED_CODES[k]);
      const a = JSON.stringify(norm(v));
      const b = JSON.stringify(norm(d[k]));
      if (a !== b) assert.unreachable(`${replay('round trip', i)}: ${k} ${a} != ${b}`);
    }
    const codes = new Set([...m.options!.keys(), ...overridden]);
    if (codes.size !== d.options.size) assert.unreachable(`${replay('round trip', i)}: option codes [${[...codes]}] != [${[...d.options.keys()]}]`);
    for (const [c, v] of m.options!) {
      if (!overridden.has(c) && !d.options.get(c)?.equals(v)) assert.unreachable(`${replay('round trip', i)}: option ${c} ${v.toString('hex')} != ${d.options.get(c)?.toString('hex')}`);
    }
    if ([...d.options.keys()][0] !== 53 && d.options.has(53)) assert.unreachable(`${replay('round trip', i)}: option 53 not first`);
    // and the decoded message re-encodes to the same bytes
    if (!encodeDhcp(d).equals(buf)) assert.unreachable(`${replay('round trip', i)}: re-encoding differs`);
  }
  const ms = performance.now() - t0;
  console.log(`  fuzz round trip: ${N} messages (${(bytes / N).toFixed(0)} bytes avg) encoded, decoded and re-encoded in ${ms.toFixed(0)} ms (seed ${SEED})`);
  assert.ok(ms < TOTAL_MS * 2, replay(`round trip took ${ms} ms`, N));
});

test('20000 mutated frames never make frame parsing throw', () => {
  const R = prng(SEED ^ 0x27d4eb2f);
  const base = FIXTURES.map(([, b]) => frameForDhcp({ payload: b, src: CLIENT, dst: BCAST, vlan: R.chance(0.5) ? 7 : undefined }));
  for (let i = 0; i < 20_000; i++) {
    const f = Buffer.from(R.pick(base));
    for (let k = 1 + R.int(6); k > 0; k--) f[R.int(60)] ^= 1 << R.int(8);
    const cut = f.subarray(0, R.chance(0.3) ? R.int(f.length) : f.length);
    try {
      const r = dhcpFromFrame(cut, R.pick([1, 113, 276, 101, 228, 0]));
      if (r.ok && (r.payload.length > cut.length || r.src.port > 65535)) assert.unreachable(replay('frame', i));
    } catch (e) {
      assert.unreachable(`${replay('frame', i)}: threw ${(e as Error).message}`);
    }
  }
});

test.run();
