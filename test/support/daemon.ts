/**
 * Runs the built apsd (dist/src/daemon.js) as an administrator would, on a copy of the
 * fixture configuration with its own state dir, on 127.0.0.1 with ports chosen by the
 * kernel. Ports are read back from the daemon's "apsd ready" log line.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURE_CONFIG, ROOT } from './paths.js';

export const APSD = path.join(ROOT, 'dist/src/daemon.js');
export const APSCTL = path.join(ROOT, 'dist/src/cli/apsctl.js');

export interface Daemon {
  proc: ChildProcess;
  dir: string;
  configDir: string;
  stateDir: string;
  http: string; // host:port
  tftpPort: number;
  logs: string[];
  waitLog(re: RegExp, ms?: number): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  ctl(...args: string[]): { status: number | null; stdout: string; stderr: string };
  cleanup(): void;
}

/** A fresh copy of the fixture config in a temp dir, with state_dir inside it. */
export function copyFixtureConfig(): { dir: string; configDir: string; stateDir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apsd-test-'));
  const configDir = path.join(dir, 'etc');
  fs.cpSync(FIXTURE_CONFIG, configDir, { recursive: true });
  const stateDir = path.join(dir, 'state');
  const ini = path.join(configDir, 'aps.ini');
  fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('[server]\n', `[server]\nstate_dir = ${stateDir}\n`));
  return { dir, configDir, stateDir };
}

export function ctl(configDir: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [APSCTL, '--config', configDir, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** apsctl without blocking this process (for peers that live in it: a fake AMI manager, a phone's SIP socket). */
export function ctlAsync(configDir: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [APSCTL, '--config', configDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), 40_000);
    p.on('close', (status) => {
      clearTimeout(t);
      resolve({ status, stdout, stderr });
    });
  });
}

export async function startDaemon(opts: { setup?: (configDir: string, stateDir: string) => void; env?: NodeJS.ProcessEnv; args?: string[]; reuse?: { dir: string; configDir: string; stateDir: string } } = {}): Promise<Daemon> {
  // reuse: the config and state of an earlier daemon (a restart after a stop or a kill -9)
  const { dir, configDir, stateDir } = opts.reuse ?? copyFixtureConfig();
  opts.setup?.(configDir, stateDir);
  const logs: string[] = [];
  const proc = spawn(process.execPath, [APSD, '--config', configDir, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0', ...(opts.args ?? [])], {
    env: { ...process.env, JOURNAL_STREAM: '', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  const onData = (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  // every daemon's log is kept for the suite's last test, which looks for leaked secrets
  if (process.env.APS_TEST_LOG_DIR) {
    const keep = path.join(process.env.APS_TEST_LOG_DIR, `apsd-${proc.pid}.log`);
    proc.on('exit', () => {
      try {
        fs.mkdirSync(process.env.APS_TEST_LOG_DIR!, { recursive: true });
        fs.writeFileSync(keep, logs.join('\n') + '\n');
      } catch {
        // the log dir is gone: the leak test will say so
      }
    });
  }
  const waitLog = (re: RegExp, ms = 10_000) => {
    const found = logs.find((l) => re.test(l));
    if (found) return Promise.resolve(found);
    return new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no log line ${re} within ${ms} ms; log:\n${logs.join('\n')}`)), ms);
      waiters.push({ re, resolve: (l) => { clearTimeout(t); resolve(l); } });
      exited.then((code) => { clearTimeout(t); reject(new Error(`apsd exited with ${code} before ${re}; log:\n${logs.join('\n')}`)); });
    });
  };
  const ready = await waitLog(/apsd ready/);
  const http = /http=([0-9.:]+)/.exec(ready)![1];
  const tftpPort = Number(/tftp=[0-9.]+:(\d+)/.exec(ready)![1]);
  let stopped = false;
  const d: Daemon = {
    proc, dir, configDir, stateDir, http, tftpPort, logs, waitLog,
    async stop(signal = 'SIGTERM') {
      if (!stopped && proc.exitCode === null) proc.kill(signal);
      stopped = true;
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
    ctl: (...args) => ctl(configDir, ...args),
    cleanup() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return d;
}

/** Runs a command with a time limit; never throws. */
export function run(cmd: string, args: string[], opts: { input?: string; cwd?: string; timeout?: number } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'buffer', timeout: opts.timeout ?? 20_000, input: opts.input, cwd: opts.cwd });
  return { status: r.status, stdout: r.stdout ?? Buffer.alloc(0), stderr: (r.stderr ?? Buffer.alloc(0)).toString(), text: (r.stdout ?? Buffer.alloc(0)).toString() };
}

export function curl(args: string[]) {
  // -s silent, -S show errors, write status and headers we need
  const r = run('curl', ['-sS', '--max-time', '10', '-o', '-', '-w', '\n__STATUS__%{http_code}', ...args]);
  const t = r.text;
  const i = t.lastIndexOf('\n__STATUS__');
  return { status: Number(t.slice(i + 11)), body: t.slice(0, i), stderr: r.stderr, exit: r.status };
}
