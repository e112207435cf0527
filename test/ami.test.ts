/**
 * AMI client against a small fake manager on 127.0.0.1 that speaks as Asterisk's manager.c
 * does (banner, Login, Response/ActionID, FullyBooted event, Goodbye) and records every
 * action it receives.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import { ApsError } from '../src/errors.js';
import { memoryLogger } from '../src/log.js';
import { amiAction, encodeAmiAction, type AmiOptions } from '../src/pbx/ami.js';

type Action = [string, string][];

interface FakeOptions {
  secret?: string;
  banner?: string;
  /** answer to an action other than Login/Logoff: lines without ActionID (added) */
  reply?: (a: Action) => string[] | null;
  /** send an event before each response */
  chatty?: boolean;
}

const servers: net.Server[] = [];
test.after.each(async () => {
  while (servers.length) {
    const s = servers.pop()!;
    await new Promise<void>((r) => s.close(() => r()));
  }
});

/** A manager that records the actions it gets, as ordered header pairs. */
async function fakeManager(o: FakeOptions = {}) {
  const actions: Action[] = [];
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.setEncoding('utf8');
    sock.write((o.banner ?? 'Asterisk Call Manager/9.0.0') + '\r\n');
    let buf = '';
    let cur: Action = [];
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (line !== '') {
          const c = line.indexOf(':');
          cur.push([line.slice(0, c), line.slice(c + 1).trim()]);
          continue;
        }
        if (!cur.length) continue;
        const a = cur;
        cur = [];
        actions.push(a);
        answer(sock, a);
      }
    });
  });
  const get = (a: Action, k: string) => a.find(([kk]) => kk.toLowerCase() === k.toLowerCase())?.[1];
  const send = (sock: net.Socket, lines: string[]) => sock.write(lines.map((l) => l + '\r\n').join('') + '\r\n');
  function answer(sock: net.Socket, a: Action): void {
    const id = get(a, 'ActionID');
    const idLine = id !== undefined ? [`ActionID: ${id}`] : [];
    if (o.chatty) send(sock, ['Event: PeerStatus', 'Privilege: system,all', 'Peer: PJSIP/101', 'PeerStatus: Reachable']);
    switch (get(a, 'Action')?.toLowerCase()) {
      case 'login':
        if (get(a, 'Secret') === (o.secret ?? 'amipass') && get(a, 'Username') === 'aps') {
          send(sock, ['Response: Success', ...idLine, 'Message: Authentication accepted']);
          send(sock, ['Event: FullyBooted', 'Privilege: system,all', 'Uptime: 1234', 'LastReload: 1234', 'Status: Fully Booted']);
        } else {
          send(sock, ['Response: Error', ...idLine, 'Message: Authentication failed']);
          sock.end(); // manager.c drops the session after a failed login
        }
        return;
      case 'logoff':
        send(sock, ['Response: Goodbye', ...idLine, 'Message: Thanks for all the fish.']);
        sock.end();
        return;
      default: {
        const r = o.reply ? o.reply(a) : ['Response: Success', 'Message: NOTIFY sent'];
        if (r === null) return; // silent
        send(sock, [r[0], ...idLine, ...r.slice(1)]);
      }
    }
  }
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  servers.push(srv);
  const port = (srv.address() as net.AddressInfo).port;
  const close = () => {
    for (const s of sockets) s.destroy();
  };
  return { port, actions, close };
}

const opts = (port: number, extra: Partial<AmiOptions> = {}): AmiOptions => ({ host: '127.0.0.1', port, user: 'aps', secret: 'amipass', timeoutMs: 2000, ...extra });

async function rejection(p: Promise<unknown>): Promise<ApsError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, ApsError);
    return e as ApsError;
  }
  throw new assert.Assertion({ message: 'expected a rejection', operator: 'rejects', expects: 'ApsError', actual: 'resolved' });
}

test('resync through AMI: the manager sees Login, PJSIPNotify with Endpoint and Variable: Event=check-sync, then Logoff', async () => {
  const m = await fakeManager();
  const r = await amiAction(opts(m.port), { Action: 'PJSIPNotify', Endpoint: '101', Variable: 'Event=check-sync' });
  assert.is(r.Response, 'Success');
  assert.is(r.Message, 'NOTIFY sent');
  const strip = (a: Action) => a.filter(([k]) => k !== 'ActionID');
  assert.equal(m.actions.map(strip), [
    [
      ['Action', 'Login'],
      ['Username', 'aps'],
      ['Secret', 'amipass'],
      ['Events', 'off'],
    ],
    [
      ['Action', 'PJSIPNotify'],
      ['Endpoint', '101'],
      ['Variable', 'Event=check-sync'],
    ],
    [['Action', 'Logoff']],
  ]);
  const ids = m.actions.map((a) => a.find(([k]) => k === 'ActionID')?.[1]);
  assert.is(new Set(ids).size, 3, 'each action has its own ActionID');
  assert.is(r.ActionID, ids[1]);
});

test('several values of one header (Variable) go out as repeated lines, and a URI target works', async () => {
  const m = await fakeManager();
  await amiAction(opts(m.port), { Action: 'PJSIPNotify', URI: 'sip:101@10.1.2.3:5060', Variable: ['Event=check-sync;reboot=true', 'Content-Type=text/plain'] });
  assert.equal(
    m.actions[1].filter(([k]) => k !== 'ActionID'),
    [
      ['Action', 'PJSIPNotify'],
      ['URI', 'sip:101@10.1.2.3:5060'],
      ['Variable', 'Event=check-sync;reboot=true'],
      ['Variable', 'Content-Type=text/plain'],
    ],
  );
});

test('a wrong secret is refused with an error that names the user but never the secret', async () => {
  const m = await fakeManager({ secret: 'right' });
  const log = memoryLogger();
  const e = await rejection(amiAction(opts(m.port, { secret: 'Wr0ngS3cret', log }), { Action: 'PJSIPNotify', Endpoint: '101' }));
  assert.is(e.code, 'APS_ERR_PROTOCOL');
  assert.match(e.message, 'login as "aps" refused: Authentication failed');
  assert.not.ok((e.describe() + JSON.stringify(e.context) + log.lines.join('\n')).includes('Wr0ngS3cret'));
  assert.ok(log.lines.some((l) => l.includes('security event=ami_login_refused')));
  assert.is(m.actions.length, 1, 'the action itself is never sent');
});

test("an action refused by Asterisk becomes an error carrying Asterisk's message", async () => {
  const m = await fakeManager({ reply: () => ['Response: Error', 'Message: Unable to retrieve endpoint 999'] });
  const e = await rejection(amiAction(opts(m.port), { Action: 'PJSIPNotify', Endpoint: '999', Variable: 'Event=check-sync' }));
  assert.is(e.code, 'APS_ERR_PROTOCOL');
  assert.match(e.message, 'PJSIPNotify failed: Unable to retrieve endpoint 999');
  assert.is(e.context.response, 'Unable to retrieve endpoint 999');
});

test('events arriving before a response are skipped', async () => {
  const m = await fakeManager({ chatty: true });
  const r = await amiAction(opts(m.port), { Action: 'PJSIPNotify', Endpoint: '101', Variable: 'Event=check-sync' });
  assert.is(r.Message, 'NOTIFY sent');
});

test('a manager that never answers the action times out with the phase it was in', async () => {
  const m = await fakeManager({ reply: () => null });
  const t0 = Date.now();
  const e = await rejection(amiAction(opts(m.port, { timeoutMs: 150 }), { Action: 'PJSIPNotify', Endpoint: '101' }));
  assert.ok(Date.now() - t0 < 1500);
  assert.is(e.context.reason, 'timeout');
  assert.match(e.message, 'waiting for the PJSIPNotify response');
  m.close();
});

test('something that is not an Asterisk manager is refused at the greeting', async () => {
  const m = await fakeManager({ banner: 'HTTP/1.1 400 Bad Request' });
  const e = await rejection(amiAction(opts(m.port), { Action: 'Ping' }));
  assert.match(e.message, 'not an Asterisk manager');
  assert.is(m.actions.length, 0, 'the secret is never sent to it');
  m.close();
});

test('a closed port gives an error naming host and port', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const e = await rejection(amiAction(opts(port), { Action: 'Ping' }));
  assert.match(e.message, `127.0.0.1:${port}`);
  assert.is(e.context.errno, 'ECONNREFUSED');
});

test('a value with a line break is refused before anything is sent', async () => {
  const m = await fakeManager();
  const e = await rejection(amiAction(opts(m.port), { Action: 'PJSIPNotify', Endpoint: '101\r\nAction: Originate' }));
  assert.match(e.message, 'line break');
  assert.is(m.actions.length, 0);
  assert.throws(() => encodeAmiAction({ 'Bad Key': 'x' }), /invalid AMI header name/);
});

test.run();
