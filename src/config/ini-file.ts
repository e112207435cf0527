/**
 * Reads one ini file with the `ini` package and keeps, beside the values, where each
 * section and key stands in the file, so that every complaint names file, line and key.
 * It also refuses the `ini` package's silent traps: a `;` or `#` inside an unquoted value
 * starts a comment there (a SIP secret like `ab#12` would be cut to `ab`), and a key given
 * twice in one section keeps only the last value.
 */
import fs from 'node:fs';
import ini from 'ini';
import { ApsError } from '../errors.js';

export interface IniFile {
  file: string;
  sections: Map<string, Map<string, string>>;
  /** line of `[section]` or of `key` within it (1-based); 0 if unknown */
  lineOf(section: string, key?: string): number;
  /** an ApsError naming file, line and key */
  error(section: string, key: string | undefined, message: string, expected?: string): ApsError;
}

const SECTION_RE = /^\s*\[([^\]]*)\]\s*$/;
const KEY_RE = /^\s*([^=;#\s][^=]*?)\s*=\s*(.*?)\s*$/;

export function parseIni(text: string, file: string): IniFile {
  const lines = new Map<string, number>();
  const seenKeys = new Set<string>();
  let section = '';
  const src = text.split(/\r?\n/);
  const mk = (sec: string, key: string | undefined, message: string, expected?: string, line?: number) =>
    new ApsError('APS_ERR_CONFIG', message, {
      file,
      line: line ?? (lines.get(key === undefined ? `[${sec}]` : `[${sec}]${key}`) || undefined),
      key: key === undefined ? `[${sec}]` : sec ? `[${sec}] ${key}` : key,
      expected,
    });
  for (let i = 0; i < src.length; i++) {
    const raw = src[i];
    const t = raw.trim();
    if (t === '' || t.startsWith(';') || t.startsWith('#')) continue;
    const s = SECTION_RE.exec(raw);
    if (s) {
      section = s[1].trim();
      if (section === '') throw mk('', undefined, 'empty section name', '[name]', i + 1);
      if (lines.has(`[${section}]`)) {
        throw mk(section, undefined, `section [${section}] appears twice (first on line ${lines.get(`[${section}]`)})`, 'each section once', i + 1);
      }
      lines.set(`[${section}]`, i + 1);
      continue;
    }
    const k = KEY_RE.exec(raw);
    if (!k) {
      throw mk(section, undefined, `cannot read line ${JSON.stringify(t.slice(0, 60))}`, '"key = value", "[section]" or a comment starting with ; or #', i + 1);
    }
    const key = k[1];
    const value = k[2];
    const id = `[${section}]${key}`;
    if (seenKeys.has(id)) {
      throw mk(section, key, `key given twice in [${section}] (first on line ${lines.get(id)})`, 'each key once per section', i + 1);
    }
    seenKeys.add(id);
    lines.set(id, i + 1);
    const quoted = /^".*"$|^'.*'$/.test(value);
    if (!quoted && /[;#]/.test(value)) {
      throw mk(section, key, `the value contains ';' or '#', which would start a comment and cut it short`, `the value in double quotes, e.g. ${key} = "${value}"`, i + 1);
    }
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = ini.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new ApsError('APS_ERR_CONFIG', `cannot parse: ${(e as Error).message}`, { file });
  }
  const sections = new Map<string, Map<string, string>>();
  const put = (name: string, obj: Record<string, unknown>) => {
    const m = sections.get(name) ?? new Map<string, string>();
    for (const [key, v] of Object.entries(obj)) {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        // the ini package turns [a.b] into nested objects: flatten back
        put(name ? `${name}.${key}` : key, v as Record<string, unknown>);
      } else if (Array.isArray(v)) {
        m.set(key, v.map(String).join(','));
      } else {
        m.set(key, String(v));
      }
    }
    sections.set(name, m);
  };
  // keys before the first section land at top level
  const top: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) put(k, v as Record<string, unknown>);
    else top[k] = v;
  }
  if (Object.keys(top).length) put('', top);
  for (const name of [...sections.keys()]) {
    if (sections.get(name)!.size === 0 && !lines.has(`[${name}]`)) sections.delete(name);
  }
  // sections declared but empty still exist
  for (const id of lines.keys()) {
    const m = /^\[([^\]]*)\]$/.exec(id);
    if (m && !sections.has(m[1])) sections.set(m[1], new Map());
  }
  return {
    file,
    sections,
    lineOf: (sec, key) => lines.get(key === undefined ? `[${sec}]` : `[${sec}]${key}`) ?? 0,
    error: (sec, key, message, expected) => mk(sec, key, message, expected),
  };
}

export function readIni(file: string): IniFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ApsError('APS_ERR_CONFIG_MISSING', `cannot read: ${err.code ?? err.message}`, { file });
  }
  return parseIni(text, file);
}
