/** Configuration: what an administrator sees when an ini file is right, and when it is wrong. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../src/config/index.js';
import { parseIni } from '../src/config/ini-file.js';
import { readTemplate } from '../src/config/template.js';
import { ApsError } from '../src/errors.js';
import { parseMac } from '../src/mac.js';
import { applyIpMap, compileIpMap } from '../src/render/ipmap.js';
import { FIXTURE_CONFIG, ROOT } from './support/paths.js';

function tmpConfig(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-cfg-'));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

function errorOf(fn: () => unknown): ApsError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ApsError) return e;
    throw e;
  }
  throw new Error('expected an ApsError');
}

test('a MAC is accepted in the four common forms and means the same device', () => {
  for (const s of ['80:5e:c0:12:34:56', '80-5E-C0-12-34-56', '805e.c012.3456', '805EC0123456']) {
    assert.is(parseMac(s), '805ec0123456', s);
  }
  for (const s of ['80:5e:c0:12:34', '805ec012345g', '80:5e-c0:12:34:56', '', '805ec01234567']) {
    assert.is(parseMac(s), null, s);
  }
});

test('with no config dir apsd runs on the documented defaults', () => {
  const c = loadConfig(null, '/srv/aps');
  assert.is(c.settings.server.stateDir, '/srv/aps/var');
  assert.equal(c.settings.http.listen, [{ host: '0.0.0.0', port: 8080 }]);
  assert.equal(c.settings.tftp.listen, [{ host: '0.0.0.0', port: 6969 }]);
  assert.is(c.settings.http.alias, 'provisioning');
  assert.is(c.settings.security.auth, 'digest');
  assert.is(c.settings.security.tftpSecrets, 'lease');
  assert.is(c.settings.security.banAfter, 10);
  assert.is(c.settings.security.banWindowMs, 60_000);
  assert.is(c.settings.security.banTimeMs, 3_600_000);
  assert.ok(c.settings.security.trustedSubnets.has('192.168.1.20'));
  assert.not.ok(c.settings.security.trustedSubnets.has('8.8.8.8'));
  assert.ok(c.tenants.has('default'));
});

test("the repo's etc/ is a valid configuration that equals the defaults", () => {
  const c = loadConfig(path.join(ROOT, 'etc'), '/srv/aps');
  const d = loadConfig(null, '/srv/aps');
  assert.equal(JSON.parse(JSON.stringify(c.settings)), JSON.parse(JSON.stringify(d.settings)));
});

test('the fixture configuration loads: tenants, templates, extensions and quoted secrets', () => {
  const c = loadConfig(FIXTURE_CONFIG);
  assert.is(c.settings.security.password, 'Prov;Secret#1');
  assert.is(c.extensions.get('acme/101')!.secret, 'S3cr3t&<101>');
  assert.is(c.extensions.get('acme/101')!.authUser, 'acme101');
  assert.is(c.extensions.get('acme/102')!.authUser, '102');
  assert.is(c.tenants.get('acme')!.name, 'Acme Corporation');
});

test('an invalid value stops loading with file, line, key and what was expected', () => {
  const dir = tmpConfig({ 'aps.ini': '[server]\nlog_level = info\n\n[http]\nlisten = 0.0.0.0:99999\n' });
  const e = errorOf(() => loadConfig(dir));
  assert.is(e.code, 'APS_ERR_CONFIG');
  assert.is(e.context.file, path.join(dir, 'aps.ini'));
  assert.is(e.context.line, 5);
  assert.is(e.context.key, '[http] listen');
  assert.match(e.describe(), /aps\.ini:5: \[http\] listen: .*expected host:port/);
});

test('an unknown key or section is an error, not a setting silently ignored', () => {
  let e = errorOf(() => loadConfig(tmpConfig({ 'aps.ini': '[security]\nauth = digest\ntftp_secret = never\n' })));
  assert.is(e.context.line, 3);
  assert.match(e.message, /unknown key/);
  assert.match(String(e.context.expected), /tftp_secrets/);
  e = errorOf(() => loadConfig(tmpConfig({ 'aps.ini': '[htp]\nlisten = 0.0.0.0:80\n' })));
  assert.match(e.message, /unknown section \[htp\]/);
});

test('a ; or # inside an unquoted value is refused rather than cutting a secret short', () => {
  const e = errorOf(() => loadConfig(tmpConfig({ 'aps.ini': '', 'extensions.d/a.ini': '[101]\nsecret = ab#12\n' })));
  assert.is(e.context.line, 2);
  assert.match(e.describe(), /a\.ini:2: \[101\] secret: .*comment.*expected the value in double quotes/);
});

test('a key given twice in one section is refused with both lines named', () => {
  const e = errorOf(() => parseIni('[tenant]\nname = A\nname = B\n', 't.ini'));
  assert.is(e.context.line, 3);
  assert.match(e.message, /first on line 2/);
});

test('auth values, booleans, numbers and enums name the allowed values', () => {
  const cases: [string, RegExp][] = [
    ['[security]\nauth = ntlm\n', /one of digest, basic, none/],
    ['[tftp]\nenabled = maybe\n', /true or false/],
    ['[tftp]\nmax_blksize = 100\n', /from 512 to 65464/],
    ['[security]\nusername = a\n', /username and password go together/],
    ['[ip_dns_map]\n1.1.1 = pbx.example\n', /not an IPv4 address/],
    ['[provisioning]\nurl = ftp//x\n', /a URL/],
    ['[security]\nban_time = 1 week\n', /duration/],
    ['[security]\ntrusted_subnets = 10.0.0.0/33\n', /not an address or subnet/],
    ['[https]\nlisten = 0.0.0.0:8443\n', /HTTPS needs a certificate/],
  ];
  for (const [text, re] of cases) {
    const e = errorOf(() => loadConfig(tmpConfig({ 'aps.ini': text })));
    assert.match(e.describe(), re, text);
  }
});

test('a template with a bad key value names the file, line and key', () => {
  const ini = (body: string) => parseIni(`[template]\nvendor = yealink\nmodel = T46S\n${body}`, '/etc/aps/templates.d/x.ini');
  const cases: [string, number, RegExp][] = [
    ['[dsskeys]\nkey2 = bfl:102:Bob\n', 5, /"bfl" is not a key type/],
    ['[network]\nvlan_id = 5000\n', 5, /from 0 to 4094/],
    ['[datetime]\nutc_offset = CET\n', 5, /UTC offset/],
    ['[paging]\ngroup1 = 10.0.0.1:5000\n', 5, /multicast/],
    ['[phone]\nlanguage = klingon\n', 5, /one of en, fr/],
    ['[server]\ntransport = sctp\n', 5, /udp, tcp, tls/],
    ['[dsskeys]\nexpansion_count = 1\nmodule2_key1 = blf:1:x\n', 6, /beyond expansion_count/],
    ['[network]\nqos_rtp_dscp = 64\n', 5, /from 0 to 63/],
    ['[server]\ndtmf_mode = sip\n', 5, /rfc2833, inband, info, rfc2833\+info/],
    ['[phone]\ndial_plan = (x.T|[2-9xx)\n', 5, /"\[" without "\]"/],
    ['[phone]\ndial_plan = 9T1\n', 5, /T \(the timer\) may only end/],
    ['[general]\ncheck_time = 25:00\n', 5, /HH:MM or HH:MM-HH:MM/],
  ];
  for (const [body, line, re] of cases) {
    const e = errorOf(() => readTemplate(ini(body)));
    assert.is(e.context.line, line, body);
    assert.match(e.describe(), re, body);
  }
});

test('template keys are parsed into types, values, labels and lines', () => {
  const t = readTemplate(parseIni('[template]\nvendor = yealink\nmodel = T46S\n[dsskeys]\nkey3 = url:http://x.example/a.xml:Dir\nkey1 = line:1:\nkey2 = blf:102:Bob:2\n', 'x.ini'));
  assert.equal(t.dsskeys.keys.map((k) => [k.index, k.type, k.value, k.label, k.line]), [
    [1, 'line', '1', '', 1],
    [2, 'blf', '102', 'Bob', 2],
    [3, 'url', 'http://x.example/a.xml', 'Dir', 1],
  ]);
});

test('QoS, DTMF, dial plan and check time are read from their tabs', () => {
  const t = readTemplate(parseIni('[template]\nvendor = yealink\nmodel = T46S\n[general]\ncheck_time = 01:00-05:00\n[server]\ndtmf_mode = rfc2833+info\n[network]\nqos_sip_dscp = 26\nqos_rtp_dscp = 46\n[phone]\ndial_plan = ( [2-9]xx | 9011x.T | *xx )\n', 'x.ini'));
  assert.equal(t.general.checkTime, { from: 60, to: 300 });
  assert.is(t.server.dtmfMode, 'rfc2833+info');
  assert.equal([t.network.qosSipDscp, t.network.qosRtpDscp], [26, 46]);
  assert.is(t.phone.dialPlan!.text, '([2-9]xx|9011x.T|*xx)');
  assert.equal(t.phone.dialPlan!.patterns.map((p) => p.regex), ['[2-9][0-9][0-9]', '9011[0-9]*', '\\*[0-9][0-9]']);
  const none = readTemplate(parseIni('[template]\nvendor = yealink\nmodel = T46S\n', 'x.ini'));
  assert.equal([none.network.qosSipDscp, none.phone.dialPlan, none.general.checkTime, none.server.dtmfMode], [null, null, null, 'rfc2833']);
});

test('IP/DNS mapping replaces whole addresses only, and the tenant wins over the global map', () => {
  const m = compileIpMap([{ ip: '1.1.1.1', fqdn: 'pbx.acme.example' }], [{ ip: '1.1.1.1', fqdn: 'pbx.example' }, { ip: '2.2.2.2', fqdn: 'ntp.example' }]);
  const text = 'a=1.1.1.1\nb=11.1.1.10\nc=1.1.1.100\nd=21.1.1.1\ne=1.1.1.1:5060\nf=http://1.1.1.1/x\ng=2.2.2.2\nh=1.1.1.1.5\n';
  assert.is(applyIpMap(text, m), 'a=pbx.acme.example\nb=11.1.1.10\nc=1.1.1.100\nd=21.1.1.1\ne=pbx.acme.example:5060\nf=http://pbx.acme.example/x\ng=ntp.example\nh=1.1.1.1.5\n');
});

test('an extension defined twice in one tenant is refused, naming both places', () => {
  const dir = tmpConfig({ 'extensions.d/a.ini': '[101]\nsecret = x\n', 'extensions.d/b.ini': '\n[101]\nsecret = y\n' });
  const e = errorOf(() => loadConfig(dir));
  assert.match(e.describe(), /b\.ini:2: \[101\]: extension 101 of tenant default is defined twice \(also in .*a\.ini:1\)/);
});

test('a template for an unknown tenant is refused', () => {
  const dir = tmpConfig({ 'templates.d/t.ini': '[template]\nvendor = yealink\nmodel = T46S\ntenant = nobody\n' });
  const e = errorOf(() => loadConfig(dir));
  assert.match(e.describe(), /t\.ini:4: \[template\] tenant: no tenant "nobody"/);
});

test.run();
