/**
 * Dial plans as MGCP digit maps (RFC 3435 §2.1.5): `(x.T|[2-9]xx|9011x.T|*xx)`.
 * The template holds the digit map; vendors that take the same syntax print it as it is,
 * vendors with regular-expression dial plans print the translation made here.
 */

export interface DigitPattern {
  /** the digit string as written, e.g. [2-9]xx */
  source: string;
  /** the same as an anchored-free regular expression body, e.g. [2-9][0-9][0-9] */
  regex: string;
  /** true when the string ends with the inter-digit timer T */
  timer: boolean;
}

export interface DigitMap {
  /** the normalised map: (a|b|c), or a single string without parentheses */
  text: string;
  patterns: DigitPattern[];
}

/** Parses a digit map; throws an Error whose message says what is wrong and where. */
export function parseDigitMap(input: string): DigitMap {
  const s = input.replace(/\s+/g, '');
  if (s === '') throw new Error('the digit map is empty');
  let body = s;
  if (s.startsWith('(')) {
    if (!s.endsWith(')')) throw new Error('the digit map opens "(" but does not end with ")"');
    body = s.slice(1, -1);
  } else if (s.endsWith(')')) {
    throw new Error('the digit map ends with ")" but does not start with "("');
  }
  const alts = body.split('|');
  const patterns = alts.map((a, i) => parseDigitString(a, i + 1));
  return { text: alts.length > 1 || s.startsWith('(') ? `(${alts.join('|')})` : body, patterns };
}

function parseDigitString(str: string, n: number): DigitPattern {
  if (str === '') throw new Error(`alternative ${n} is empty`);
  let regex = '';
  let timer = false;
  let i = 0;
  let last = '';
  while (i < str.length) {
    const c = str[i];
    if (timer) throw new Error(`alternative ${n} "${str}": T (the timer) may only end a digit string`);
    if (/[0-9#*A-D]/.test(c)) {
      last = c === '*' ? '\\*' : c;
      i++;
    } else if (c === 'x' || c === 'X') {
      last = '[0-9]';
      i++;
    } else if (c === 'T') {
      timer = true;
      last = '';
      i++;
      continue;
    } else if (c === '[') {
      const end = str.indexOf(']', i);
      if (end < 0) throw new Error(`alternative ${n} "${str}": "[" without "]"`);
      const inner = str.slice(i + 1, end);
      if (!/^(?:[0-9]-[0-9]|[0-9#*A-DT])+$/.test(inner)) throw new Error(`alternative ${n} "${str}": "[${inner}]" is not a range of digits`);
      last = `[${inner.replace(/\*/g, '\\*')}]`;
      i = end + 1;
    } else if (c === '.') {
      if (!last) throw new Error(`alternative ${n} "${str}": "." must follow a digit, x or a range`);
      regex += '*';
      last = '';
      i++;
      continue;
    } else {
      throw new Error(`alternative ${n} "${str}": "${c}" is not a digit-map letter`);
    }
    regex += last;
  }
  return { source: str, regex, timer };
}
