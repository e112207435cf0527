/**
 * What apsd runs, as `apsctl status` shows it: `<state_dir>/apsd-status.json`, written by apsd
 * at start and at every change of state of a service (a capture waiting for its interface, and
 * back), atomically (a temporary file renamed over the old one), so a reader never sees half.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ServiceStatus } from './service.js';

export const STATUS_FILE = 'apsd-status.json';

export interface DaemonStatus {
  pid: number;
  /** ISO times */
  started: string;
  updated: string;
  config: string;
  /** the fingerprint of the configuration files apsd runs (src/config/index.ts), and when it loaded them */
  configFingerprint: string;
  configLoadedAt: string;
  listen: { http: string[]; https: string[]; tftp: string[] };
  services: ServiceStatus[];
}

export function statusPath(stateDir: string): string {
  return path.join(stateDir, STATUS_FILE);
}

/** Throws what the file system said (a full disk); the caller decides how loud to be. */
export function writeStatus(stateDir: string, s: DaemonStatus): void {
  const file = statusPath(stateDir);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

export function readStatus(stateDir: string): DaemonStatus | null {
  try {
    return JSON.parse(fs.readFileSync(statusPath(stateDir), 'utf8')) as DaemonStatus;
  } catch {
    return null;
  }
}

/** One line for systemd's STATUS=: what serves, and every service that waits, with why. */
export function statusLine(s: Pick<DaemonStatus, 'listen' | 'services'>): string {
  const serving = [s.listen.http.length ? 'HTTP' : '', s.listen.https.length ? 'HTTPS' : '', s.listen.tftp.length ? 'TFTP' : ''].filter(Boolean).join(', ');
  const running = s.services.filter((x) => x.state === 'running').map((x) => `${x.service}${x.interface ? ` on ${x.interface}` : ''}`);
  const waiting = s.services.filter((x) => x.state === 'waiting').map((x) => `${x.service}${x.interface ? ` on ${x.interface}` : ''} waiting (${x.lastError ?? 'interface'})`);
  return [`serving ${serving || 'nothing'}`, ...running, ...waiting].join('; ');
}
