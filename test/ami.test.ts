/**
 * AMI client against the fake manager of test/support (it speaks as Asterisk's manager.c
 * does and records every action it receives) on 127.0.0.1.
 */
import { rejection } from './support/rejection.js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import { ApsError } from '../src/errors.js';
import { memoryLogger } from '../src/log.js';
import { amiAction, encodeAmiAction, type AmiOptions } from '../src/wire/ami.js';
import { fakeManager as startManager, type AmiRecorded, type FakeManagerOptions } from './support/pin-peers.js';

type Action = AmiRecorded;

const managers: { close(): Promise<void> }[] = [];
test.after.each(async () => {
  while (managers.length) await managers.pop()!.close();
});

async function fakeManager(o: FakeManagerOptions = {}) {
  const m = await startManager(o);
  managers.push(m);
  return m;
}

const opts = (port: number, extra: Partial<AmiOptions> = {}): AmiOptions => ({ host: '127.0.0.1', port, user: 'aps', secret: 'amipass', timeoutMs: 2000, ...extra });


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
