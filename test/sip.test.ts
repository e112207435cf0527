/**
 * SIP codec and NOTIFY resync: the codec on hand-written messages and garbage; NOTIFY over
 * real UDP sockets on 127.0.0.1 (a phone that drops copies, one that never answers, one
 * that answers 481, one that answers 100 first) with fast timers; and SIPp as the phone
 * when it is installed (Debian package sip-tester).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { memoryLogger } from '../src/log.js';
import {
  buildRequest,
  buildResponse,
  getHeader,
  getHeaders,
  headerParam,
  parseSip,
  type SipMessage,
  type SipRequest,
} from '../src/wire/sip.js';
import { buildNotify, sendNotify, startClientTransaction } from '../src/wire/sip-notify.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const crlf = (s: string): Buffer => Buffer.from(s.replace(/\n/g, '\r\n'));

function parsed(buf: Buffer): SipMessage {
  const r = parseSip(buf);
  if (!r.ok) throw new Error(`not parsed: ${r.reason}`);
  return r.msg;
}

// ---------------------------------------------------------------- the codec

/** RFC 3261 section 24.2, message F1 (Alice's INVITE to Bob), with its SDP body. */
const RFC3261_F1 = crlf(`INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9
Max-Forwards: 70
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 INVITE
Contact: <sip:alice@client.atlanta.example.com;transport=tcp>
Content-Type: application/sdp
Content-Length: 151

v=0
o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com
s=-
c=IN IP4 192.0.2.101
t=0 0
m=audio 49172 RTP/AVP 0
a=rtpmap:0 PCMU/8000
`);

test('reads a request with headers and an SDP body cut at Content-Length', () => {
  const m = parsed(RFC3261_F1) as SipRequest;
  assert.is(m.kind, 'request');
  assert.is(m.method, 'INVITE');
  assert.is(m.uri, 'sip:bob@biloxi.example.com');
  assert.is(getHeader(m, 'call-id'), '3848276298220188511@atlanta.example.com');
  assert.is(headerParam(getHeader(m, 'From')!, 'tag'), '9fxced76sl');
  assert.is(m.body.length, 151);
  assert.ok(m.body.toString().startsWith('v=0\r\no=alice'));
});

test('reads compact header names, several Via values in one line and in two, and folded lines', () => {
  const m = parsed(
    crlf(`SIP/2.0 200 OK
v: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKaaa;received=10.0.0.5, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKbbb
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKccc
f: "Doe, John" <sip:101@pbx>;tag=1
t: <sip:102@pbx>
  ;tag=2
i: abc@host
CSeq: 7 NOTIFY
o: check-sync
m: <sip:a@1.2.3.4>, "x, y" <sip:b@5.6.7.8>
l: 0

`),
  );
  assert.is(m.kind, 'response');
  assert.is((m as { status: number }).status, 200);
  assert.equal(
    getHeaders(m, 'Via').map((v) => headerParam(v, 'branch')),
    ['z9hG4bKaaa', 'z9hG4bKbbb', 'z9hG4bKccc'],
  );
  assert.is(getHeader(m, 'From'), '"Doe, John" <sip:101@pbx>;tag=1');
  assert.is(headerParam(getHeader(m, 'To')!, 'tag'), '2');
  assert.is(getHeader(m, 'Event'), 'check-sync');
  assert.equal(getHeaders(m, 'Contact'), ['<sip:a@1.2.3.4>', '"x, y" <sip:b@5.6.7.8>']);
  assert.is(m.body.length, 0);
});

test('refuses malformed datagrams with a reason and never throws, also on random bytes', () => {
  const good = crlf('NOTIFY sip:1.2.3.4 SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@h>;tag=1\nTo: <sip:b@h>\nCall-ID: c\nCSeq: 1 NOTIFY\nContent-Length: 0\n\n');
  assert.ok(parseSip(good).ok);
  const cases: [Buffer, string][] = [
    [Buffer.alloc(0), 'empty'],
    [Buffer.from('\r\n\r\n'), 'keep-alive'],
    [crlf('NOTIFY sip:1.2.3.4 SIP/2.0\nVia: x\n'), 'blank line'],
    [Buffer.from(good.toString().replace('Content-Length: 0', 'Content-Length: 40')), 'shorter than Content-Length'],
    [Buffer.from(good.toString().replace('Call-ID: c\r\n', '')), 'missing Call-ID'],
    [Buffer.from(good.toString().replace('CSeq: 1 NOTIFY', 'CSeq: one NOTIFY')), 'invalid CSeq'],
    [Buffer.from(good.toString().replace('CSeq: 1 NOTIFY', 'CSeq: 1 INVITE')), 'differs'],
    [Buffer.from(good.toString().replace('SIP/2.0\r\n', 'SIP/3.0\r\n')), 'version'],
    [Buffer.from(good.toString().replace('Content-Length: 0', 'Content-Length: -1')), 'invalid Content-Length'],
    [Buffer.concat([good, Buffer.alloc(70_000, 0x61)]), 'too large'],
    [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'start line'],
  ];
  for (const [buf, why] of cases) {
    const r = parseSip(buf);
    assert.is(r.ok, false, why);
    if (!r.ok) assert.match(r.reason, why);
  }
  for (let i = 0; i < 3000; i++) {
    const b = i % 2 ? randomBytes(i % 700) : Buffer.from(good);
    if (i % 2 === 0) for (let k = 0; k < 1 + (i % 9); k++) b[(i * 7919 + k * 104729) % b.length] = (i * 31 + k) & 0xff;
    const r = parseSip(b);
    assert.type(r.ok, 'boolean');
  }
});

test('a response copies Via, From, To, Call-ID and CSeq and adds a To tag (not to 100), with received and rport', () => {
  const req = parsed(
    crlf(`SUBSCRIBE sip:MAC%3a0004f2a1b2c3@224.0.1.75 SIP/2.0
Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKpnp1;rport
Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKproxy
From: <sip:MAC%3a0004f2a1b2c3@224.0.1.75>;tag=ph1
To: <sip:MAC%3a0004f2a1b2c3@224.0.1.75>
Call-ID: pnp-1@10.1.2.3
CSeq: 1 SUBSCRIBE
Event: ua-profile;profile-type="device";vendor="Polycom";model="VVX-400";version="6.4.0"
Expires: 0
Content-Length: 0

`),
  ) as SipRequest;
  const r = parsed(buildResponse(req, 200, 'OK', [['Expires', '0']], { toTag: 'aps1', source: { address: '10.1.2.3', port: 5062 } }));
  assert.equal(
    r.headers.map((h) => [h.name, h.value]),
    [
      ['Via', 'SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKpnp1;rport=5062;received=10.1.2.3'],
      ['Via', 'SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKproxy'],
      ['From', '<sip:MAC%3a0004f2a1b2c3@224.0.1.75>;tag=ph1'],
      ['To', '<sip:MAC%3a0004f2a1b2c3@224.0.1.75>;tag=aps1'],
      ['Call-ID', 'pnp-1@10.1.2.3'],
      ['CSeq', '1 SUBSCRIBE'],
      ['Expires', '0'],
      ['Content-Length', '0'],
    ],
  );
  const trying = parsed(buildResponse(req, 100, 'Trying'));
  assert.is(getHeader(trying, 'To'), '<sip:MAC%3a0004f2a1b2c3@224.0.1.75>');
  assert.throws(() => buildRequest({ method: 'NOTIFY', uri: 'sip:x', headers: [['Event', 'a\r\nInjected: 1']] }), /line break/);
});

test('buildNotify writes every header a phone checks, and a body with its type', () => {
  const buf = buildNotify({
    target: { host: '10.1.2.3', port: 5060 },
    event: 'check-sync;reboot=true',
    fromHost: '10.0.0.1',
    localPort: 5070,
    user: '101',
    branch: 'z9hG4bKtest',
    callId: 'cid@10.0.0.1',
    fromTag: 'ft',
  });
  const text = buf.toString();
  assert.ok(text.startsWith('NOTIFY sip:101@10.1.2.3:5060 SIP/2.0\r\n'), text);
  assert.ok(text.endsWith('\r\nContent-Length: 0\r\n\r\n'), text);
  const m = parsed(buf);
  assert.is(getHeader(m, 'Via'), 'SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKtest;rport');
  assert.is(getHeader(m, 'Max-Forwards'), '70');
  assert.is(getHeader(m, 'From'), '<sip:aps@10.0.0.1>;tag=ft');
  assert.is(getHeader(m, 'To'), '<sip:101@10.1.2.3:5060>');
  assert.is(getHeader(m, 'Call-ID'), 'cid@10.0.0.1');
  assert.is(getHeader(m, 'CSeq'), '1 NOTIFY');
  assert.is(getHeader(m, 'Event'), 'check-sync;reboot=true');
  assert.is(getHeader(m, 'Subscription-State'), 'terminated');
  assert.is(getHeader(m, 'Content-Type'), undefined);

  const withBody = parsed(
    buildNotify({ target: { host: '::1', port: 5060 }, event: 'ua-profile', fromHost: '::1', localPort: 5060, contentType: 'application/url', body: 'http://[::1]:8080/p/' }),
  ) as SipRequest;
  assert.is(withBody.uri, 'sip:[::1]:5060');
  assert.is(getHeader(withBody, 'Content-Type'), 'application/url');
  assert.is(withBody.body.toString(), 'http://[::1]:8080/p/');
  assert.throws(() => buildNotify({ target: { host: 'h', port: 1 }, event: 'check-sync\r\nX: 1', fromHost: 'h', localPort: 1 }), /Event/);
});

// ------------------------------------------------------------- over UDP

interface Arrival {
  msg: SipRequest;
}
/** A phone on 127.0.0.1: records each datagram and answers what `reply` returns. */
async function phone(reply: (n: number, req: SipRequest) => (string | number)[] | null) {
  const sock = dgram.createSocket('udp4');
  const got: Arrival[] = [];
  sock.on('message', (buf, rinfo) => {
    const p = parseSip(buf);
    if (!p.ok || p.msg.kind !== 'request') return;
    got.push({ msg: p.msg });
    for (const r of reply(got.length, p.msg) ?? []) {
      const out = typeof r === 'number' ? buildResponse(p.msg, r, REASONS[r] ?? 'Whatever', [], { toTag: 'ph' }) : Buffer.from(r);
      sock.send(out, rinfo.port, rinfo.address);
    }
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  phones.push(sock);
  return { port: sock.address().port, got, sock };
}
const REASONS: Record<number, string> = { 100: 'Trying', 200: 'OK', 481: 'Call/Transaction Does Not Exist' };
const phones: dgram.Socket[] = [];
test.after.each(() => {
  while (phones.length) phones.pop()!.close();
});

test('a phone that drops the first two NOTIFYs gets the third and answers 200: retransmitted after T1, then 2·T1', async () => {
  const p = await phone((n) => (n < 3 ? null : [200]));
  const log = memoryLogger();
  const r = await sendNotify({ target: { host: '127.0.0.1', port: p.port }, event: 'check-sync', fromHost: '127.0.0.1', log, timers: { t1: 50, t2: 400 } });
  assert.equal({ ok: r.ok, status: r.status, attempts: r.attempts }, { ok: true, status: 200, attempts: 3 });
  assert.is(p.got.length, 3);
  // sent at 0, T1 and T1 + 2·T1: the answer to the third copy cannot come before 150 ms
  // (timers never fire early; arrival times at the phone are not used: it shares the event loop)
  assert.ok(r.ms >= 148 && r.ms < 2000, `ms ${r.ms}`);
  // the same request each time: one branch, one Call-ID, one CSeq
  const ids = p.got.map((a) => [headerParam(getHeader(a.msg, 'Via')!, 'branch'), getHeader(a.msg, 'Call-ID'), getHeader(a.msg, 'CSeq')].join(' '));
  assert.is(new Set(ids).size, 1);
  const m = p.got[0].msg;
  assert.is(m.method, 'NOTIFY');
  assert.ok(headerParam(getHeader(m, 'Via')!, 'branch')!.startsWith('z9hG4bK'));
  assert.is(getHeader(m, 'Event'), 'check-sync');
  assert.is(getHeader(m, 'Subscription-State'), 'terminated');
  assert.is(getHeader(m, 'Content-Length'), '0');
  assert.is(getHeader(m, 'Max-Forwards'), '70');
  assert.ok(headerParam(getHeader(m, 'From')!, 'tag'));
  assert.ok(log.lines.some((l) => l.includes('msg="notify answered"') && l.includes('status=200') && l.includes('attempts=3') && l.includes('event=check-sync')), log.lines.join('\n'));
});

test('a phone that never answers: Timer F gives up after 64·T1 with a timeout, retransmitting at most every T2', async () => {
  const p = await phone(() => null);
  const log = memoryLogger();
  const r = await sendNotify({ target: { host: '127.0.0.1', port: p.port }, event: 'check-sync', fromHost: '127.0.0.1', log, timers: { t1: 20, t2: 80 } });
  assert.is(r.ok, false);
  assert.is(r.status, undefined);
  assert.match(r.reason!, 'Timer F');
  assert.ok(r.ms >= 1280 && r.ms < 5000, `ms ${r.ms}`);
  // sends at 0, 20, 60, 140, then every 80 ms until 1280: 18 at most
  assert.ok(r.attempts >= 8 && r.attempts <= 18, `attempts ${r.attempts}`);
  await new Promise((res) => setTimeout(res, 30));
  assert.is(p.got.length, r.attempts);
  assert.ok(log.lines.some((l) => l.includes('level=warn msg="notify failed"')));
});

test('a 481 answer ends the transaction at once: not ok, status 481 and its reason', async () => {
  const p = await phone(() => [481]);
  const r = await sendNotify({ target: { host: '127.0.0.1', port: p.port }, event: 'resync', fromHost: '127.0.0.1', log: memoryLogger(), timers: { t1: 30 } });
  assert.equal(r.ok, false);
  assert.equal([r.status, r.reason, r.attempts], [481, 'Call/Transaction Does Not Exist', 1]);
  assert.is(p.got.length, 1);
});

test('a 100 Trying moves it to proceeding: retransmissions every T2 until the final 200', async () => {
  const p = await phone((n) => (n === 1 ? [100] : n === 4 ? [200] : null));
  const r = await sendNotify({ target: { host: '127.0.0.1', port: p.port }, event: 'check-sync', fromHost: '127.0.0.1', log: memoryLogger(), timers: { t1: 30, t2: 200 } });
  assert.equal([r.ok, r.status, r.attempts], [true, 200, 4]);
  // Proceeding: sent at 0 (→ 100), T1 (already scheduled), then every T2: 30 + 200 + 200.
  // Still in Trying it would have been 0, 30, 90, 210.
  assert.ok(r.ms >= 428, `ms ${r.ms}`);
});

/** Runs a transaction on a fake transport and returns when each copy was sent. */
async function sendTimes(timers: { t1: number; t2: number; timerF: number }, provisionalAfter?: number) {
  const times: number[] = [];
  let tx: ReturnType<typeof startClientTransaction> | undefined = undefined;
  const req = parsed(buildNotify({ target: { host: '10.0.0.9', port: 5060 }, event: 'check-sync', fromHost: '10.0.0.1', localPort: 5060, branch: 'z9hG4bKtimes' })) as SipRequest;
  tx = startClientTransaction({
    request: Buffer.from('NOTIFY'),
    branch: 'z9hG4bKtimes',
    method: 'NOTIFY',
    timers,
    send: () => {
      times.push(performance.now());
      if (times.length === provisionalAfter) setImmediate(() => tx!.receive(parsed(buildResponse(req, 180, 'Ringing'))));
    },
  });
  const r = await tx.done;
  return { r, gaps: times.slice(1).map((t, i) => t - times[i]) };
}

test('Timer E doubles from T1 up to T2 while trying, and stays at T2 once proceeding', async () => {
  const a = await sendTimes({ t1: 20, t2: 80, timerF: 500 });
  assert.is(a.r.ok, false);
  assert.match(a.r.reason!, 'Timer F');
  const want = [20, 40, 80, 80, 80];
  want.forEach((w, i) => assert.ok(a.gaps[i] >= w - 1, `gap ${i}: ${a.gaps[i]} (at least ${w}) in ${a.gaps}`));
  assert.ok(a.r.attempts >= 4 && a.r.attempts <= 9, `attempts ${a.r.attempts}`);
  const b = await sendTimes({ t1: 20, t2: 100, timerF: 400 }, 1);
  // the 1xx came right after the first copy: the copy already scheduled after T1, then T2 apart
  assert.ok(b.gaps[0] >= 19 && b.gaps.slice(1).every((g) => g >= 99), `${b.gaps}`);
});

test('answers for another transaction and garbage datagrams are ignored', async () => {
  const p = await phone((n, req) => {
    if (n > 1) return null;
    const other = buildResponse({ ...req, headers: req.headers.map((h) => (h.name === 'Via' ? { name: 'Via', value: h.value.replace(/branch=[^;]+/, 'branch=z9hG4bKother') } : h)) }, 200, 'OK');
    const wrongMethod = buildResponse({ ...req, headers: req.headers.map((h) => (h.name === 'CSeq' ? { name: 'CSeq', value: '1 OPTIONS' } : h)) }, 200, 'OK');
    return ['garbage \u0000\u0001', other.toString(), wrongMethod.toString(), '\r\n\r\n'];
  });
  const r = await sendNotify({ target: { host: '127.0.0.1', port: p.port }, event: 'check-sync', fromHost: '127.0.0.1', log: memoryLogger(), timers: { t1: 10, t2: 20, timerF: 150 } });
  assert.is(r.ok, false);
  assert.match(r.reason!, 'Timer F');
});

test('the vendor event goes out verbatim, to the phone account in the Request-URI; an invalid event sends nothing', async () => {
  const p = await phone(() => [200]);
  const r = await sendNotify({
    target: { host: '127.0.0.1', port: p.port },
    event: 'check-sync;reboot=true',
    fromHost: '127.0.0.1',
    user: '101',
    log: memoryLogger(),
    timers: { t1: 30 },
  });
  assert.ok(r.ok);
  assert.is(p.got[0].msg.uri, `sip:101@127.0.0.1:${p.port}`);
  assert.is(getHeader(p.got[0].msg, 'Event'), 'check-sync;reboot=true');
  const bad = await sendNotify({ target: { host: '127.0.0.1', port: p.port }, event: 'check-sync\r\nX: 1', fromHost: '127.0.0.1', log: memoryLogger(), timers: { t1: 30 } });
  assert.equal([bad.ok, bad.attempts], [false, 0]);
  assert.match(bad.reason!, 'Event');
  assert.is(p.got.length, 1);
});

test('a transaction over a caller-owned transport: send failures end it as a transport error', async () => {
  const tx = startClientTransaction({
    request: Buffer.from('x'),
    branch: 'z9hG4bKt',
    method: 'NOTIFY',
    send: () => Promise.reject(new Error('EHOSTUNREACH')),
    timers: { t1: 10 },
  });
  const r = await tx.done;
  assert.equal([r.ok, r.reason, r.attempts], [false, 'transport error: EHOSTUNREACH', 1]);
});

const sipp = spawnSync('sipp', ['-v'], { encoding: 'utf8' });
const haveSipp = !sipp.error;

test('SIPp playing the phone receives a well-formed check-sync NOTIFY and answers 200', async () => {
  if (!haveSipp) {
    console.log('  (sipp not installed: apt-get install sip-tester; skipped)');
    return;
  }
  // a free UDP port for sipp
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
  const port = probe.address().port;
  probe.close();
  const child = spawn('sipp', ['-sf', path.join(here, 'fixtures', 'sip', 'uas-notify.xml'), '-i', '127.0.0.1', '-p', String(port), '-m', '1', '-nostdin', '-timeout', '10s', '-timeout_error'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    await new Promise((r) => setTimeout(r, 300)); // sipp binds its socket
    const r = await sendNotify({
      target: { host: '127.0.0.1', port },
      event: 'check-sync;reboot=true',
      fromHost: '127.0.0.1',
      log: memoryLogger(),
      timers: { t1: 100 },
    });
    assert.equal([r.ok, r.status], [true, 200], out.slice(-2000));
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000))]);
    assert.is(code, 0, `sipp exit status (its checks of Event, Subscription-State and Via passed)\n${out.slice(-2000)}`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test.run();
