/**
 * No password, secret or PIN of the fixtures appears in any log apsd writes (the security
 * channel included). This suite starts its own apsd and makes it serve files with secrets,
 * so it has logs to read whatever ran before it; under `npm test` it also reads the log of
 * every apsd the other suites started (APS_TEST_LOG_DIR), whichever order they ran in.
 */
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { curl, startDaemon } from './support/daemon.js';

const SECRETS = ['S3cr3t', 'bobsecret102', 'carolsecret103', 'Prov;Secret#1', 'Prov;Secret', 'Adm1n<&>Pass', 'Adm1n', 'Ld4p&Secret', 'Ld4p', 'Dev1ce&Pass'];
const PINS = ['582914', '482913'];
const MAC = '805ec0a1b2c3';

test('no secret of the fixtures appears in any log apsd wrote, its own requests for secret files included', async () => {
  const d = await startDaemon();
  await d.waitLog(/apsd ready/);
  for (const args of [['device', 'add', MAC, '--tenant', 'acme', '--template', 'yealink-full'], ['line', 'set', MAC, '1', '--extension', '101']]) {
    const r = d.ctl(...args);
    assert.is(r.status, 0, r.stderr);
  }
  const base = `http://${d.http}/provisioning`;
  // one refusal and one file with secrets served with the site credentials
  assert.is(curl([`${base}/${MAC}.cfg`]).status, 401);
  const ok = curl(['--digest', '-u', 'phones:Prov;Secret#1', `${base}/${MAC}.cfg`]);
  assert.is(ok.status, 200, ok.stderr);
  assert.ok(ok.body.includes('S3cr3t'), 'the file served holds the fixture SIP password (else this test proves nothing)');
  await d.stop();
  const texts = [d.logs.join('\n')];
  const dir = process.env.APS_TEST_LOG_DIR;
  if (dir && fs.existsSync(dir)) for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.log'))) texts.push(fs.readFileSync(path.join(dir, f), 'utf8'));
  d.cleanup();
  const text = texts.join('\n');
  assert.ok(/security event=secret-served/.test(text), 'the logs hold the security events they should (secret-served)');
  assert.ok(/security event=secret-refused/.test(text), 'the logs hold the security events they should (secret-refused)');
  for (const s of SECRETS) {
    const i = text.indexOf(s);
    assert.is(i, -1, `"${s}" appears in a log: …${text.slice(Math.max(0, i - 80), i + 40)}…`);
  }
  // the PINs the PIN suites key, as whole numbers (a hex request id may hold the digits)
  for (const pin of PINS) {
    const m = new RegExp(`(?<![0-9a-fA-F])${pin}(?![0-9a-fA-F])`).exec(text);
    assert.is(m, null, `the PIN ${pin} appears in a log: …${m ? text.slice(Math.max(0, m.index - 80), m.index + 40) : ''}…`);
  }
  console.log(`  (${texts.length} apsd logs read)`);
});

test.run();
