/**
 * The fuzz runner's short run (npm run fuzz with APS_FUZZ_COUNT=5000): malformed TFTP, HTTP,
 * FastAGI, DHCP (into a captured veth) and SIP PnP input against the built apsd, which after
 * every batch must still serve a phone from the same process within its memory bound.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './support/paths.js';

test('5,000 malformed inputs over TFTP, HTTP, FastAGI, DHCP and SIP leave the same apsd serving a phone, memory bounded', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts/fuzz.ts')], {
    cwd: ROOT, encoding: 'utf8', timeout: 240_000, env: { ...process.env, APS_FUZZ_COUNT: '5000', APS_FUZZ_BATCH: '1000', APS_FUZZ_RSS_MB: '100' },
  });
  const out = r.stdout + r.stderr;
  assert.is(r.status, 0, out.slice(-3000));
  assert.match(out, /fuzz: 5,000 inputs in \d+ s .*served a phone after every batch/);
  assert.is((out.match(/the same apsd still serves a phone/g) ?? []).length, 5);
  console.log('  ' + out.split('\n').filter((l) => /inputs in|capture at its stop/.test(l)).join('\n  '));
});

test.run();
