#!/usr/bin/env node
// The test command (npm test): checks the layers (check:deps), builds dist/ (the daemon tests run the built apsd and apsctl,
// as an administrator would), runs every uvu suite under test/, and ends with one line
// "N passed, N failed".
import { spawnSync, spawn } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// the layers first (npm run check:deps): a circle or a back-arrow fails the run before any test
const deps = spawnSync(process.execPath, [path.join(root, 'scripts/check-deps.mjs')], { cwd: root, stdio: 'inherit' });
if (deps.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const build = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const pattern = process.argv[2] ?? '.';
// every apsd the tests start leaves its log here; the last suite looks for leaked secrets
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-test-logs-'));
const child = spawn(process.execPath, [path.join(root, 'node_modules/uvu/bin.js'), '-r', 'tsx', 'test', pattern, '-i', 'support', '-i', 'fixtures', '-i', 'golden'], {
  cwd: root,
  env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', APS_TEST_LOG_DIR: logDir },
  stdio: ['ignore', 'pipe', 'inherit'],
});
let out = '';
// a suite that hangs must not hold CI until its limit: stop the run after 40 minutes
const LIMIT_MS = Number(process.env.APS_TEST_LIMIT_MS ?? 40 * 60_000);
const watchdog = setTimeout(() => {
  const suites = out.match(/^[\w.-]+\.test\.ts$/gm) ?? [];
  console.log(`\ntest run stopped after ${LIMIT_MS / 60000} minutes; last suite started: ${suites[suites.length - 1] ?? '(none)'}`);
  child.kill('SIGKILL');
}, LIMIT_MS);
watchdog.unref();
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
child.on('close', (code) => {
  clearTimeout(watchdog);
  const num = (label) => Number((new RegExp(`${label}:\\s+(\\d+)`).exec(out) ?? [])[1] ?? 0);
  const total = num('Total');
  const passed = num('Passed');
  const skipped = num('Skipped');
  let failed = total - passed;
  if (code !== 0 && failed === 0) failed = 1;
  fs.rmSync(logDir, { recursive: true, force: true });
  console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code === 0 && failed === 0 && total > 0 ? 0 : 1);
});
