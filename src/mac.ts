/**
 * MAC addresses are normalised once, at the edge, into one type: 12 lowercase hex digits.
 * Every other form (file names, User-Agents, display) is derived from it.
 */
import { ApsError } from './errors.js';

export type Mac = string & { readonly __mac: unique symbol };

const FORMS: RegExp[] = [
  /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i,
  /^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$/i,
  /^([0-9a-f]{12})$/i,
];

/** Accepts `80:5e:c0:12:34:56`, `80-5E-C0-12-34-56`, `805e.c012.3456`, `805EC0123456`. */
export function parseMac(input: string): Mac | null {
  const s = input.trim();
  for (const re of FORMS) {
    const m = re.exec(s);
    if (m) {
      const hex = m.slice(1).join('').toLowerCase();
      // a separator form must use one separator consistently
      if (re === FORMS[0] && /[:]/.test(s) && /-/.test(s)) return null;
      return hex as Mac;
    }
  }
  return null;
}

export function requireMac(input: string): Mac {
  const m = parseMac(input);
  if (!m) {
    throw new ApsError('APS_ERR_MAC', `"${input}" is not a MAC address`, {
      expected: '12 hex digits, e.g. 80:5e:c0:12:34:56, 80-5E-C0-12-34-56, 805e.c012.3456 or 805EC0123456',
    });
  }
  return m;
}

export function macOui(mac: Mac): string {
  return mac.slice(0, 6);
}

export function macColon(mac: Mac): string {
  return mac.match(/../g)!.join(':');
}

export function macUpper(mac: Mac): string {
  return mac.toUpperCase();
}

/** A locally administered address (bit 1 of the first octet) never comes from a vendor's OUI. */
export function isLocallyAdministered(mac: Mac): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 0x02) !== 0;
}
