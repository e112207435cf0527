/**
 * The PBX's own pjsip.conf, read as Asterisk reads it: a realistic fixture with templates,
 * includes (one nested, one glob), block comments and passwords that ini parsers cut short.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApsError } from '../src/errors.js';
import { parseCallerId, parsePjsip, readPjsipConf, type PjsipConf, type PjsipEndpoint } from '../src/config/pjsip.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIX = path.join(here, 'fixtures', 'pjsip');
const MAIN = path.join(FIX, 'pjsip.conf');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-pjsip-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

let conf: PjsipConf;
const ep = (name: string): PjsipEndpoint => {
  const e = conf.endpoints().find((x) => x.name === name);
  assert.ok(e, `endpoint ${name} is listed`);
  return e!;
};
const lineOf = (file: string, needle: string): number => fs.readFileSync(file, 'utf8').split('\n').findIndex((l) => l.startsWith(needle)) + 1;

function catchErr(fn: () => unknown): ApsError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, ApsError);
    return e as ApsError;
  }
  throw new assert.Assertion({ message: 'expected an ApsError', operator: 'throws', expects: 'ApsError', actual: 'no error' });
}

test.before(() => {
  conf = readPjsipConf(MAIN);
});

test('lists every endpoint of the PBX with auth user, password and caller ID', () => {
  assert.equal(
    conf.endpoints().map((e) => e.name),
    ['101', '102', '103', '104', '105', 'trunk', '201', '202', '301', '302'],
  );
  assert.equal(ep('101'), {
    name: '101',
    credential: 'password',
    callerId: '"Alice Smith" <101>',
    callerIdName: 'Alice Smith',
    callerIdNumber: '101',
    context: 'from-internal',
    auth: '101',
    authUser: '101',
    password: 's3cr;et;42',
    file: MAIN,
    line: lineOf(MAIN, '[101](endpoint-tpl)'),
  });
});

test('a \\; in a password is a literal semicolon, and an unescaped ; starts a comment', () => {
  assert.is(ep('101').password, 's3cr;et;42');
  // Asterisk removes one backslash before each ;: dave\;pw\\;x → dave;pw\;x
  assert.is(ep('202').password, 'dave;pw\\;x');
});

test('=, #, quotes and inner blanks in a password are kept verbatim', () => {
  assert.is(ep('102').authUser, 'bob102');
  assert.is(ep('102').password, `a=b#c"d'e x`);
  assert.is(ep('104').password, '"quoted-secret"');
});

test('caller ID is split into name and number in every common form', () => {
  assert.is(ep('102').callerIdName, 'Bob Jones');
  assert.is(ep('102').callerIdNumber, '102');
  assert.is(ep('103').callerIdName, undefined);
  assert.is(ep('103').callerIdNumber, '103');
  assert.is(ep('104').callerIdName, 'Reception, Front Desk');
  assert.equal(parseCallerId('"Say \\"Hi\\"" <7>'), { name: 'Say "Hi"', number: '7' });
  assert.equal(parseCallerId('2001'), { number: '2001' });
  assert.equal(parseCallerId('Front Desk'), { name: 'Front Desk' });
});

test('a template gives its keys first and the section its own after: the last value wins', () => {
  const s = conf.find('102', 'endpoint')!;
  assert.equal(s.inherits, ['endpoint-tpl']);
  assert.equal(s.getAll('context'), ['from-internal', 'sales']);
  assert.is(s.get('context'), 'sales');
  assert.is(ep('102').context, 'sales');
  assert.is(s.entries[0].key, 'type');
  assert.ok(s.entries[0].inherited);
  assert.is(s.where('context')!.line, lineOf(MAIN, 'context=sales'));
});

test('a section can inherit from two templates, in the order named', () => {
  const s = conf.find('104', 'endpoint')!;
  assert.equal(s.inherits, ['endpoint-tpl', 'codec-hd']);
  assert.equal(s.getAll('allow'), ['ulaw', 'alaw', 'g722', 'opus', 'h264', 'h263']);
});

test('(+type=endpoint) adds keys to the endpoint [105], not to the auth of the same name', () => {
  assert.is(ep('105').callerIdName, 'Late Addition');
  assert.is(ep('105').context, 'support');
  assert.is(ep('105').password, 'Five5five');
  assert.is(conf.find('105', 'auth')!.get('callerid'), undefined);
  assert.is(conf.sections.filter((s) => s.name === '105').length, 3);
});

test('repeated keys are kept in order: match =, local_net => and allow =', () => {
  assert.equal(conf.find('trunk-identify')!.getAll('match'), ['198.51.100.10', '198.51.100.11', '198.51.100.0/28']);
  assert.equal(conf.find('transport-udp')!.getAll('local_net'), ['10.0.0.0/8', '192.168.0.0/16']);
});

test('block comments hide whole sections and parts of lines; ;--- is only a line comment', () => {
  assert.is(conf.find('transport-tls'), undefined);
  assert.equal(
    conf.ofType('transport').map((s) => s.name),
    ['transport-udp'],
  );
  assert.is(conf.find('endpoint-tpl') ?? null, null, 'templates are not found as objects');
  const tpl = conf.sections.find((s) => s.name === 'endpoint-tpl')!;
  assert.ok(tpl.template);
  assert.is(tpl.get('dtmf_mode'), 'rfc4733');
  assert.is(conf.find('global')!.get('user_agent'), 'Acme PBX');
});

test('#include is followed relative to the config directory, also from an included file, and globs include in order', () => {
  assert.equal(conf.files, [
    MAIN,
    path.join(FIX, 'users.d', 'extra.conf'),
    path.join(FIX, 'users.d', 'more.conf'),
    path.join(FIX, 'pjsip.d', '10-lobby.conf'),
    path.join(FIX, 'pjsip.d', '20-fax.conf'),
  ]);
  assert.is(ep('201').file, path.join(FIX, 'users.d', 'extra.conf'));
  assert.is(ep('201').line, 2);
  assert.is(ep('202').password, 'dave;pw\\;x');
  assert.is(ep('302').context, 'fax');
});

test('a missing #tryinclude is skipped silently and #exec is ignored with a warning', () => {
  assert.equal(conf.warnings, [{ file: MAIN, line: lineOf(MAIN, '#exec'), message: '#exec ignored: apsd does not run programs named in pjsip.conf' }]);
});

test('an md5_cred auth section gives the user name but no password', () => {
  assert.equal(
    { user: ep('103').authUser, password: ep('103').password, credential: ep('103').credential },
    { user: '103', password: undefined, credential: 'md5' },
  );
});

test('a trunk without inbound auth has no credentials (its outbound_auth is not the phone account)', () => {
  assert.equal(
    { auth: ep('trunk').auth, user: ep('trunk').authUser, password: ep('trunk').password, credential: ep('trunk').credential },
    { auth: undefined, user: undefined, password: undefined, credential: 'none' },
  );
});

test('an include loop is refused naming the chain, the file and the #include line', () => {
  const e = catchErr(() => readPjsipConf(path.join(FIX, 'loop', 'pjsip.conf')));
  assert.is(e.code, 'APS_ERR_CONFIG');
  assert.is(e.context.file, path.join(FIX, 'loop', 'loop-a.conf'));
  assert.is(e.context.line, 3);
  assert.match(e.message, 'include loop: pjsip.conf -> loop-a.conf -> pjsip.conf');
});

function writeConf(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, text);
  return f;
}

test('a missing #include file is refused with the file and line of the #include', () => {
  const f = writeConf('missing/pjsip.conf', '[global]\ntype=global\n\n#include "nope.conf"\n');
  const e = catchErr(() => readPjsipConf(f));
  assert.is(e.code, 'APS_ERR_CONFIG');
  assert.equal([e.context.file, e.context.line], [f, 4]);
  assert.match(e.describe(), `${f}:4: `);
  assert.match(e.message, 'nope.conf');
});

test('an unreadable include is refused with the file and line of the #include', () => {
  if (process.getuid?.() === 0) {
    // root reads anything: use a directory entry that cannot be read as a file instead
    const f = writeConf('unreadable/pjsip.conf', '[a]\n#include "sub/x.conf"\n');
    fs.mkdirSync(path.join(tmp, 'unreadable', 'sub', 'x.conf'), { recursive: true });
    const e = catchErr(() => readPjsipConf(f));
    assert.equal([e.code, e.context.file, e.context.line], ['APS_ERR_CONFIG', f, 2]);
    return;
  }
  const f = writeConf('unreadable/pjsip.conf', '[a]\n#include "locked.conf"\n');
  writeConf('unreadable/locked.conf', '[b]\n');
  fs.chmodSync(path.join(tmp, 'unreadable', 'locked.conf'), 0o000);
  const e = catchErr(() => readPjsipConf(f));
  assert.equal([e.code, e.context.file, e.context.line], ['APS_ERR_CONFIG', f, 2]);
  assert.match(e.message, 'EACCES');
});

test('a section that inherits from a template defined later is refused with file and line', () => {
  const e = catchErr(() => parsePjsip('[101](later)\ntype=endpoint\n\n[later](!)\ncontext=x\n', 'x.conf'));
  assert.equal([e.code, e.context.file, e.context.line], ['APS_ERR_CONFIG', 'x.conf', 1]);
  assert.match(e.message, 'inherits from [later]');
});

test('broken section headers and keys outside a section are refused with file and line', () => {
  for (const [text, line, msg] of [
    ['[global]\ntype=global\n[101\ntype=endpoint\n', 3, "closing ']'"],
    ['[101](endpoint-tpl\n', 1, "closing ')'"],
    ['type=endpoint\n', 1, 'outside any [section]'],
    ['[]\n', 1, 'empty section name'],
    ['[x](+)\n', 1, 'does not exist'],
    ['[a]\n#includ "x"\n', 2, 'unknown directive'],
  ] as const) {
    const e = catchErr(() => parsePjsip(text, 'p.conf'));
    assert.is(e.code, 'APS_ERR_CONFIG');
    assert.is(e.context.line, line, text);
    assert.match(e.message, msg);
  }
});

test('parsePjsip follows #include through the given reader, and => and += work as in Asterisk', () => {
  const files: Record<string, string> = {
    'main.conf': '[tpl](!)\ntype=endpoint\n[7](tpl)\nset_var => A=1\n#include "inc.conf"\nset_var +=,2\n',
    'inc.conf': 'context = from-inc ; comment\n[7-auth]\ntype=auth\nusername=7\npassword=p;c\n',
  };
  const seen: string[] = [];
  const c = parsePjsip(files['main.conf'], 'main.conf', (name, from) => {
    seen.push(`${name}@${from.file}:${from.line}`);
    return files[name] === undefined ? null : { text: files[name], file: name };
  });
  assert.equal(seen, ['inc.conf@main.conf:5']);
  const s = c.find('7', 'endpoint')!;
  // the included file continues the section that was open at the #include
  assert.is(s.get('context'), 'from-inc');
  // after the include the including file goes on in its own section: += appends there
  assert.equal(s.getAll('set_var'), ['A=1,2']);
  assert.is(c.find('7-auth')!.get('password'), 'p');
});

test('a key line without = and a never-closed block comment are warnings, not errors', () => {
  const c = parsePjsip('[a]\ntype=aor\njust a word\n;-- never closed\n[b]\n', 'w.conf');
  assert.equal(
    c.warnings.map((w) => [w.line, w.message]),
    [
      [3, "no '=' on this line; ignored"],
      [4, 'block comment ;-- never closed with --;'],
    ],
  );
  assert.equal(
    c.sections.map((s) => s.name),
    ['a'],
  );
});

test('no error message and no warning ever carries a password', () => {
  const secret = 'Zx9#secret;value';
  const texts = [
    `[a]\npassword=${secret}\nnot a key ${secret}\n`,
    `password=${secret}\n[a]\n`,
    `[a]\npassword=${secret}\n[b\n`,
    `[a]\n = ${secret}\n;-- ${secret}\n`,
  ];
  for (const t of texts) {
    let said = '';
    try {
      const c = parsePjsip(t, 'p.conf', () => null);
      said = JSON.stringify(c.warnings);
    } catch (e) {
      said = (e as ApsError).describe() + JSON.stringify((e as ApsError).context);
    }
    assert.not.ok(said.includes('Zx9#secret'), said);
  }
});

test('Windows line ends and a byte-order mark are read like plain text', () => {
  const c = parsePjsip('\uFEFF[9]\r\ntype=endpoint\r\nauth=9a\r\n[9a]\r\ntype=auth\r\nusername=9\r\npassword=pw9\r\n', 'crlf.conf');
  assert.equal(
    c.endpoints().map((e) => [e.name, e.authUser, e.password]),
    [['9', '9', 'pw9']],
  );
});

test.run();
