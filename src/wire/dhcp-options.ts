/** How DHCPv4 option codes are typed when apsd writes them (and when a server config defines them): one rule. */

/** Option codes whose type the standards fix: 150 is a list of IPv4 addresses (RFC 5859); 66, 67, 114, 160 are text. */
export const IP_LIST_CODES: ReadonlySet<number> = new Set([150]);
export const TEXT_CODES: ReadonlySet<number> = new Set([66, 67, 114, 160]);

export type OptionType = 'text' | 'ip';

/** The type of option `code`, given the kinds of value put in it ('ip' for an address, anything else text). */
export function optionType(code: number, values: Iterable<string>): OptionType {
  const list = [...values];
  if (IP_LIST_CODES.has(code)) return 'ip';
  if (TEXT_CODES.has(code)) return 'text';
  return list.length > 0 && list.every((k) => k === 'ip') ? 'ip' : 'text';
}
