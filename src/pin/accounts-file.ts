/**
 * The PBX accounts file ([pbx] accounts_file): every unprovisioned device's own SIP account,
 * in pjsip.conf syntax, rewritten atomically (write, fsync, rename) when the set changes.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Settings } from '../config/index.js';
import { ApsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import { pinStore } from '../store/pin.js';
import { pjsipAccounts } from './accounts.js';

export class AccountsFile {
  private written: string | null = null;
  private signature = '';

  constructor(
    private readonly store: Store,
    private readonly settings: () => Settings,
    private readonly log: Logger,
  ) {}

  /** Rewrites the file when the set of unprovisioned accounts changed (or `force`); true when it wrote. */
  check(force: boolean): boolean {
    const s = this.settings();
    const file = s.pbx.accountsFile;
    if (!file) return false;
    const pins = pinStore(this.store);
    const key = () => [pins.signature(), s.provisioning.unprovPrefix, s.pbx.unprovContext, s.provisioning.sipServer, file].join('|');
    if (!force && key() === this.signature) return false;
    pins.ensureUnprovAccounts(s.provisioning.unprovPrefix);
    const signature = key();
    const rows = pins.unprovAccounts();
    const text = pjsipAccounts(rows, { context: s.pbx.unprovContext, sipServer: s.provisioning.sipServer });
    if (this.written === null || force) {
      let current: string | null = null;
      try {
        current = fs.readFileSync(file, 'utf8');
      } catch {
        current = null;
      }
      this.written = current;
    }
    if (text === this.written) {
      this.signature = signature;
      return false;
    }
    writeAtomic(file, text);
    this.written = text;
    this.signature = signature;
    this.log.info('pbx accounts file written', { file, accounts: rows.length });
    return true;
  }
}

/** Replaces `file` with `text` so that a reader sees the old file or the new one, never a part: write a temporary file beside it, fsync, rename. Keeps the old file's mode and owner where allowed. */
export function writeAtomic(file: string, text: string): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  let old: fs.Stats | null = null;
  try {
    old = fs.statSync(file);
  } catch {
    old = null;
  }
  try {
    const fd = fs.openSync(tmp, 'w', old ? old.mode & 0o777 : 0o640);
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (old) {
      fs.chmodSync(tmp, old.mode & 0o777);
      try {
        fs.chownSync(tmp, old.uid, old.gid);
      } catch {
        // not allowed for this user: the new file gets apsd's owner (documented: give the directory the PBX's group, setgid)
      }
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // nothing was created
    }
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ApsError('APS_ERR_CONFIG', `cannot write ${file}: ${code}`, { file, key: '[pbx] accounts_file', expected: 'a path in a directory apsd may write' });
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
  } catch {
    // a directory fsync is best effort (not every file system allows it)
  }
}
