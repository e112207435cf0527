/**
 * The last suite: every apsd started by the suites before it left its log behind. No password,
 * secret or PIN of the fixtures may appear in any of them (the security channel included).
 */
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const dir = process.env.APS_TEST_LOG_DIR;

test('no secret of the fixtures appears in any log apsd wrote during the whole suite', () => {
  if (!dir) {
    console.log('  (skipped: run the whole suite with npm test; it collects the logs)');
    return;
  }
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.log')) : [];
  const text = files.map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('\n');
  if (files.length === 0) {
    console.log('  (no apsd ran in this selection of suites)');
    return;
  }
  assert.ok(/security event=secret-served/.test(text), 'the logs hold the events they should');
  const secrets = ['S3cr3t', 'bobsecret102', 'carolsecret103', 'Prov;Secret#1', 'Prov;Secret', 'Adm1n<&>Pass', 'Adm1n', 'Ld4p&Secret', 'Ld4p', 'Dev1ce&Pass'];
  for (const s of secrets) {
    const i = text.indexOf(s);
    assert.is(i, -1, `"${s}" appears in a log: …${text.slice(Math.max(0, i - 80), i + 40)}…`);
  }
  // the PINs the PIN suites key, as whole numbers (a hex request id may hold the digits)
  for (const pin of ['582914', '482913']) {
    const m = new RegExp(`(?<![0-9a-fA-F])${pin}(?![0-9a-fA-F])`).exec(text);
    assert.is(m, null, `the PIN ${pin} appears in a log: …${m ? text.slice(Math.max(0, m.index - 80), m.index + 40) : ''}…`);
  }
});

test.run();
