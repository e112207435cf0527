/**
 * The PBX side of the unprovisioned stage: one PJSIP endpoint, auth and aor per unprovisioned
 * phone, each with its own random secret (no shared account, no Auto-Create-Peers), landing in
 * [pbx] unprov_context. Written by `apsctl pbx accounts --format pjsip` and into
 * [pbx] accounts_file, which pjsip.conf includes.
 *
 * The text is a pure function of the accounts (no time stamp), so that a rewrite happens only
 * when the set changes. Account names and secrets are made by apsd (letters, digits, - _ .),
 * so nothing in them needs quoting in pjsip.conf; anything else is refused.
 */
import { ApsError } from '../errors.js';
import { macColon, type Mac } from '../mac.js';

export interface UnprovAccount {
  mac: Mac;
  account: string;
  secret: string;
  vendor?: string;
  model?: string;
}

export interface PjsipAccountsOptions {
  /** [pbx] unprov_context */
  context: string;
  /** [provisioning] sip_server: where the phones register (a comment, for the reader) */
  sipServer: string;
}

const SAFE = /^[A-Za-z0-9_.+-]{1,80}$/;

export function pjsipAccounts(accounts: UnprovAccount[], opts: PjsipAccountsOptions): string {
  if (!/^[A-Za-z0-9_-]{1,79}$/.test(opts.context)) throw new ApsError('APS_ERR_CONFIG', `"${opts.context}" is not a dialplan context name`, { key: '[pbx] unprov_context' });
  const lines: string[] = [
    '; Unprovisioned phones: one PJSIP endpoint, auth and aor each, written by apsd (aps).',
    '; Do not edit: apsd rewrites this file whenever the set of unprovisioned phones changes.',
    `; Include it from pjsip.conf (#include "<this file>") and reload: pjsip reload.`,
    `; Phones register to ${opts.sipServer.replace(/[\r\n]/g, ' ')} and land in context [${opts.context}] (apsctl pbx dialplan).`,
    `; ${accounts.length} account${accounts.length === 1 ? '' : 's'}`,
  ];
  for (const a of [...accounts].sort((x, y) => x.account.localeCompare(y.account))) {
    if (!SAFE.test(a.account)) throw new ApsError('APS_ERR_PROTOCOL', 'an unprov account name with characters pjsip.conf cannot hold', { key: a.mac });
    if (!SAFE.test(a.secret)) throw new ApsError('APS_ERR_PROTOCOL', 'an unprov secret with characters pjsip.conf cannot hold', { key: a.mac });
    const what = [a.vendor, a.model].filter(Boolean).join(' ').replace(/[\r\n;]/g, ' ');
    lines.push(
      '',
      `; ${macColon(a.mac)}${what ? ` ${what}` : ''}`,
      `[${a.account}]`,
      'type = endpoint',
      `context = ${opts.context}`,
      'disallow = all',
      'allow = ulaw',
      'allow = alaw',
      `auth = ${a.account}`,
      `aors = ${a.account}`,
      `callerid = "UNPROV" <${a.account}>`,
      'direct_media = no',
      'rtp_symmetric = yes',
      'force_rport = yes',
      'rewrite_contact = yes',
      '',
      `[${a.account}]`,
      'type = auth',
      'auth_type = userpass',
      `username = ${a.account}`,
      `password = ${a.secret}`,
      '',
      `[${a.account}]`,
      'type = aor',
      'max_contacts = 1',
      'remove_existing = yes',
    );
  }
  return lines.join('\n') + '\n';
}
