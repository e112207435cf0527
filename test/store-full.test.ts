/**
 * A full or busy state database never stops serving (issue 14, point 4): two apsctl writers at
 * once both succeed (each waits its turn); with state_dir on a small tmpfs filled up while apsd
 * serves HTTP and TFTP, apsd goes on serving, `apsctl import` says APS_ERR_STORE … disk full …
 * nothing was changed (exit 1, no stack trace) and leaves nothing half-imported, and once space
 * is back the same import works.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { APSCTL, APSD, copyFixtureConfig, run } from './support/daemon.js';
import { waitUntil, which } from '../scripts/lib/netns.js';

const cleanups: (() => void)[] = [];
test.after(() => {
  for (const c of cleanups.reverse()) c();
});

const macs = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`).join('\n') + '\n';

function ctlAsync(configDir: string, args: string[], wrap: string[] = []): Promise<{ status: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  const [cmd, ...pre] = wrap.length ? wrap : [process.execPath];
  const p = spawn(cmd!, [...pre, ...(wrap.length ? [process.execPath] : []), APSCTL, '--config', configDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => (stderr += d));
  return new Promise((r) => p.on('close', (status) => r({ status, stdout, stderr, ms: Date.now() - t0 })));
}

test('two apsctl imports at once both succeed: the second writer waits its turn instead of failing', async () => {
  const { dir, configDir, stateDir } = copyFixtureConfig();
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(stateDir, { recursive: true });
  const a = path.join(dir, 'a.txt');
  const b = path.join(dir, 'b.txt');
  fs.writeFileSync(a, macs('80:5e:c0:aa', 1500));
  fs.writeFileSync(b, macs('80:5e:c0:bb', 1500));
  // the database exists before the race (creating it is not what is tested)
  assert.is(spawnSync(process.execPath, [APSCTL, '--config', configDir, 'device', 'list'], { encoding: 'utf8' }).status, 0);
  const [ra, rb] = await Promise.all([
    ctlAsync(configDir, ['import', a, '--tenant', 'default', '--model', 'T46S']),
    ctlAsync(configDir, ['import', b, '--tenant', 'default', '--model', 'T46S']),
  ]);
  assert.is(ra.status, 0, ra.stderr);
  assert.is(rb.status, 0, rb.stderr);
  assert.not.match(ra.stderr + rb.stderr, /locked|SqliteError|    at /);
  const list = JSON.parse(spawnSync(process.execPath, [APSCTL, '--config', configDir, '--json', 'device', 'list'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }).stdout) as unknown[];
  assert.is(list.length, 3000);
});

const root = process.getuid?.() === 0 && which('unshare') && which('nsenter') && which('tftp');
if (!root) console.log('store-full: the tmpfs case is SKIPPED (it needs root, unshare, nsenter and tftp)');

(root ? test : test.skip)('state_dir on a tmpfs filled up under load: apsd keeps serving, apsctl import says APS_ERR_STORE disk full, nothing was changed; it works once space is back', async () => {
  const { dir, configDir, stateDir } = copyFixtureConfig();
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(stateDir, { recursive: true });
  const fw = path.join(dir, 'firmware');
  fs.mkdirSync(fw);
  fs.writeFileSync(path.join(fw, 'fw.rom'), Buffer.alloc(200_000, 7));
  const ini = path.join(configDir, 'aps.ini');
  fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('[server]\n', `[server]\nfirmware_dir = ${fw}\n`));
  // apsd in a mount namespace of its own, where state_dir is a 3 MiB tmpfs (gone with the namespace)
  const proc = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', `mount -t tmpfs -o size=3m aps-test "${stateDir}" && exec "${process.execPath}" "${APSD}" --config "${configDir}" --http-listen 127.0.0.1:0 --tftp-listen 127.0.0.1:0`], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, JOURNAL_STREAM: '' },
  });
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  cleanups.push(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  await waitUntil(() => /apsd ready/.test(log), 15_000, `apsd ready: ${log}`);
  const http = /http=([0-9.:]+)/.exec(log)![1]!;
  const tftpPort = /tftp=[0-9.]+:(\d+)/.exec(log)![1]!;
  const ns = ['nsenter', `--mount=/proc/${proc.pid}/ns/mnt`, '--'];
  const inNs = (cmd: string, args: string[]) => run(ns[0]!, [...ns.slice(1), cmd, ...args], { timeout: 60_000 });

  // load: HTTP and TFTP fetches the whole time, each one checked
  let stop = false;
  const served = { http: 0, tftp: 0, failed: [] as string[] };
  const load = (async () => {
    const out = path.join(dir, 'fw.tftp');
    while (!stop) {
      const h = run('curl', ['-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `http://${http}/fw.rom`]).text;
      if (h === '200 200000') served.http++;
      else served.failed.push(`http ${h}`);
      fs.rmSync(out, { force: true });
      run('tftp', ['127.0.0.1', tftpPort, '-m', 'octet', '-c', 'get', 'fw.rom', out]);
      if (fs.existsSync(out) && fs.statSync(out).size === 200_000) served.tftp++;
      else served.failed.push('tftp');
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    const list = path.join(dir, 'macs.txt');
    fs.writeFileSync(list, macs('80:5e:c0:cc', 2000));
    // fill the tmpfs to the last byte
    inNs('sh', ['-c', `cat /dev/zero > "${stateDir}/fill"; true`]);
    const r = await ctlAsync(configDir, ['import', list, '--tenant', 'default', '--model', 'T46S'], ns);
    assert.is(r.status, 1, r.stdout + r.stderr);
    assert.is(r.stderr, `apsctl: APS_ERR_STORE: the state database cannot be written (disk full on ${stateDir}): nothing was changed\n`);
    const count = JSON.parse((await ctlAsync(configDir, ['--json', 'device', 'list'], ns)).stdout) as unknown[];
    assert.is(count.length, 0, 'no half import');
    await new Promise((res) => setTimeout(res, 1500));
    // space is back: the same import works, and apsd never stopped
    inNs('rm', ['-f', `${stateDir}/fill`]);
    const again = await ctlAsync(configDir, ['import', list, '--tenant', 'default', '--model', 'T46S'], ns);
    assert.is(again.status, 0, again.stderr);
    const after = JSON.parse((await ctlAsync(configDir, ['--json', 'device', 'list'], ns)).stdout) as unknown[];
    assert.is(after.length, 2000);
    const st = await ctlAsync(configDir, ['status'], ns);
    assert.is(st.status, 0, st.stderr);
  } finally {
    stop = true;
    await load;
    proc.kill('SIGTERM');
  }
  assert.is(await exited, 0, log);
  console.log(`  while the state disk was full and after: ${served.http} HTTP and ${served.tftp} TFTP fetches served, ${served.failed.length} failed`);
  assert.equal(served.failed, []);
  assert.ok(served.http > 3 && served.tftp > 3);
});

test.run();
