/** The built apsd as the benchmarks run it: on loopback, ports from the kernel, read back from its "apsd ready" line. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const APSD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/src/daemon.js');

export interface RunningApsd {
  proc: ChildProcess;
  pid: number;
  /** host:port of HTTP and TFTP */
  http: string;
  tftp: string;
  readyMs: number;
  stop(): Promise<void>;
}

/** Starts apsd on `cfg` (APS_BENCH_PROF: with --cpu-prof into that folder); killed if it is not ready in 30 s. */
export async function startApsd(cfg: string): Promise<RunningApsd> {
  const t0 = process.hrtime.bigint();
  const prof = process.env.APS_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.APS_BENCH_PROF] : [];
  const p = spawn(process.execPath, [...prof, APSD, '--config', cfg, '--http-listen', '127.0.0.1:0', '--tftp-listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, JOURNAL_STREAM: '' } });
  let buf = '';
  const ready = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error('apsd not ready in 30 s: ' + buf));
    }, 30_000);
    p.stderr!.on('data', (d) => {
      buf += d;
      const m = /.*apsd ready.*/.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m[0]);
      }
    });
    p.on('exit', (c) => reject(new Error(`apsd exited ${c}: ${buf}`)));
  });
  const readyMs = Number(process.hrtime.bigint() - t0) / 1e6;
  // keep draining its log, unread
  p.stderr!.removeAllListeners('data');
  p.stderr!.resume();
  return {
    proc: p, pid: p.pid!, readyMs,
    http: /http=([0-9.:]+)/.exec(ready)![1]!,
    tftp: /tftp=([0-9.:]+)/.exec(ready)![1]!,
    stop: () => new Promise((r) => { p.on('exit', () => r()); p.kill('SIGTERM'); }),
  };
}

/** Resident memory of a process, MB. */
export function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}
