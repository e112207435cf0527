/**
 * What a phone's vendor asks for in DHCP (vendor.json dhcp.answers): one rule for the built-in
 * server and the class blocks alike — which value each answer carries and how each option code
 * is typed.
 */
import type { DhcpAnswer } from '../vendors/types.js';
import { optIp, optString, optSub, Opt } from '../wire/dhcp.js';
import { optionType } from '../wire/dhcp-options.js';

/** Where a phone should go: the provisioning URL, its host, and the server's IPv4 address. */
export interface ProvisioningTarget {
  url: string;
  host: string;
  ip: string;
}

/** The value an answer carries, as text. */
export function answerValue(a: DhcpAnswer, t: ProvisioningTarget): string {
  if (a.value === 'url') return t.url + (a.append ?? '');
  return a.value === 'sub' ? t.url : a.value === 'host' ? t.host : t.ip;
}

/** The encoded options (code → bytes, codes ascending) that `answers` make for `t`; sub-options go into 43. */
export function encodeAnswers(answers: readonly DhcpAnswer[], t: ProvisioningTarget): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  const subs: { code: number; data: string }[] = [];
  for (const a of answers) {
    if (a.value === 'sub') {
      if (a.suboption !== undefined && !subs.some((s) => s.code === a.suboption)) subs.push({ code: a.suboption, data: answerValue(a, t) });
      continue;
    }
    if (out.has(a.code)) continue;
    const type = optionType(a.code, answers.filter((x) => x.code === a.code).map((x) => x.value));
    out.set(a.code, type === 'ip' ? optIp(t.ip) : optString(answerValue(a, t)));
  }
  if (subs.length) out.set(Opt.VENDOR_SPECIFIC, optSub(subs.sort((a, b) => a.code - b.code)));
  return new Map([...out].sort((a, b) => a[0] - b[0]));
}
