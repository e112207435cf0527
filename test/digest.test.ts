/** HTTP digest authentication as a phone meets it: challenge, answer, replay, expiry. */
import crypto from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DigestAuth, parseAuthParams } from '../src/provisioning/digest.js';

const md5 = (s: string) => crypto.createHash('md5').update(s).digest('hex');
const sha = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

function answer(nonce: string, opts: { user?: string; pass?: string; uri?: string; nc?: string; algo?: 'MD5' | 'SHA-256'; realm?: string } = {}) {
  const { user = 'phones', pass = 'pw', uri = '/provisioning/x.cfg', nc = '00000001', algo = 'MD5', realm = 'aps' } = opts;
  const h = algo === 'MD5' ? md5 : sha;
  const cnonce = 'abc123';
  const resp = h(`${h(`${user}:${realm}:${pass}`)}:${nonce}:${nc}:${cnonce}:auth:${h(`GET:${uri}`)}`);
  return `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", algorithm=${algo}, response="${resp}", qop=auth, nc=${nc}, cnonce="${cnonce}"`;
}

test('a correct MD5 or SHA-256 answer to the challenge is accepted', () => {
  const a = new DigestAuth({ username: 'phones', password: 'pw' }, 'aps');
  const n = a.nonce();
  assert.ok(a.checkDigest(answer(n), 'GET', '/provisioning/x.cfg').ok);
  assert.ok(a.checkDigest(answer(n, { algo: 'SHA-256', nc: '00000002' }), 'GET', '/provisioning/x.cfg').ok);
});

test('the same nonce and nc a second time is a replay and is refused', () => {
  const a = new DigestAuth({ username: 'phones', password: 'pw' }, 'aps');
  const h = answer(a.nonce());
  assert.ok(a.checkDigest(h, 'GET', '/provisioning/x.cfg').ok);
  assert.equal(a.checkDigest(h, 'GET', '/provisioning/x.cfg'), { ok: false, reason: 'replay', stale: false });
});

test('two phones challenged in the same millisecond each get their own nonce, and both are let in with nc=1', () => {
  const a = new DigestAuth({ username: 'phones', password: 'pw' }, 'aps');
  const now = Date.now();
  const n1 = a.nonce(now);
  const n2 = a.nonce(now);
  assert.is.not(n1, n2);
  assert.ok(a.checkDigest(answer(n1), 'GET', '/provisioning/x.cfg').ok);
  assert.ok(a.checkDigest(answer(n2), 'GET', '/provisioning/x.cfg').ok);
});

test('an answer for another URI, user, password or a forged nonce is refused', () => {
  const a = new DigestAuth({ username: 'phones', password: 'pw' }, 'aps');
  const n = a.nonce();
  assert.is((a.checkDigest(answer(n), 'GET', '/provisioning/other.cfg') as { reason: string }).reason, 'uri-mismatch');
  assert.is((a.checkDigest(answer(n, { pass: 'bad' }), 'GET', '/provisioning/x.cfg') as { reason: string }).reason, 'bad-password');
  assert.is((a.checkDigest(answer(n, { user: 'eve' }), 'GET', '/provisioning/x.cfg') as { reason: string }).reason, 'bad-user');
  const forged = n.split('.')[0] + '.AAAAAAAAAAAAAAAAAAAAAA';
  assert.is((a.checkDigest(answer(forged), 'GET', '/provisioning/x.cfg') as { reason: string }).reason, 'bad-nonce');
  const other = new DigestAuth({ username: 'phones', password: 'pw' }, 'aps');
  assert.is((a.checkDigest(answer(other.nonce()), 'GET', '/provisioning/x.cfg') as { reason: string }).reason, 'bad-nonce');
});

test('an expired nonce is answered as stale so the phone retries with a fresh one', () => {
  const a = new DigestAuth({ username: 'phones', password: 'pw' }, 'aps', 1000);
  const n = a.nonce(Date.now() - 5000);
  assert.equal(a.checkDigest(answer(n), 'GET', '/provisioning/x.cfg'), { ok: false, reason: 'stale', stale: true });
  assert.match(a.challenge(true)[0], /stale=true/);
});

test('malformed Authorization headers are refused without an exception', () => {
  const a = new DigestAuth({ username: 'phones', password: 'pw' }, 'aps');
  for (const h of ['Digest', 'Digest username=', 'Digest a="unterminated', 'Digest ,,,,', 'Bearer x', 'Digest username="phones", qop=auth-int', '\u0000']) {
    const r = a.checkDigest(h, 'GET', '/x');
    assert.not.ok(r.ok, h);
  }
  assert.equal(parseAuthParams('a="b\\"c", d=e'), { a: 'b"c', d: 'e' });
});

test('basic credentials are checked in constant time and exactly', () => {
  const a = new DigestAuth({ username: 'phones', password: 'p:w' }, 'aps');
  const b = (s: string) => 'Basic ' + Buffer.from(s).toString('base64');
  assert.ok(a.checkBasic(b('phones:p:w')).ok);
  assert.not.ok(a.checkBasic(b('phones:p:x')).ok);
  assert.not.ok(a.checkBasic(b('phone:p:w')).ok);
  assert.not.ok(a.checkBasic('Basic !!!').ok);
});

test.run();
