/**
 * Reads the PBX's own pjsip.conf (read-only) with the rules of Asterisk's config loader
 * (main/config.c), because the `ini` package corrupts these files silently:
 *
 * - `[name]`, `[name](!)` (template), `[name](tpl1,tpl2)` (copies the templates' keys first,
 *   then its own), `[name](+)` / `[name](+type=auth)` (adds to an existing section); several
 *   sections may share a name (`[101]` endpoint, `[101]` auth, `[101]` aor).
 * - `key = value`, `key => value`, `key += more` (appends to the last value of that key);
 *   repeated keys are kept in order, the last one wins where a single value is wanted.
 * - `;` starts a comment unless escaped as `\;` (which becomes `;`); `;--` … `--;` is a block
 *   comment, nestable, that may span lines (`;---` is an ordinary comment, as in Asterisk).
 * - `#include file`, `#include "file"`, `#include <file>`, globs (`pjsip.d/*.conf`), and
 *   `#tryinclude` (silent when nothing matches). A relative name is taken relative to the
 *   directory of the top-level file, as Asterisk takes it relative to /etc/asterisk — not to
 *   the including file. Loops and depth are bounded. `#exec` is ignored with a warning.
 *
 * Values are kept verbatim (quotes, `#`, `=`): pjsip.conf has no quoting. Nothing here logs,
 * and no error or warning carries a value, so a password never leaves this module by accident.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ApsError } from '../errors.js';

export interface PjsipEntry {
  key: string;
  value: string;
  file: string;
  line: number;
  /** copied from a template named in the section header */
  inherited: boolean;
}

export interface PjsipSection {
  name: string;
  /** `[name](!)`: a template, not an object Asterisk loads */
  template: boolean;
  /** the sections named in the header whose keys were copied in, in order */
  inherits: string[];
  /** the last `type =` (endpoint, auth, aor, transport, identify, ...), lower case */
  readonly type: string | undefined;
  /** inherited keys first, then the section's own, in file order */
  entries: PjsipEntry[];
  file: string;
  line: number;
  /** the effective (last) value of a key; keys compare case-insensitively */
  get(key: string): string | undefined;
  /** every value of a repeated key, in order */
  getAll(key: string): string[];
  /** where the effective value of a key was written */
  where(key: string): { file: string; line: number } | undefined;
}

export interface PjsipEndpoint {
  name: string;
  /** the `auth =` section that holds the credentials */
  auth?: string;
  authUser?: string;
  /** only for auth_type userpass (or digest with a plain password) */
  password?: string;
  /** `md5`: the auth section has only md5_cred, so there is no password to hand a phone */
  credential: 'password' | 'md5' | 'none';
  /** the raw `callerid =` value */
  callerId?: string;
  callerIdName?: string;
  callerIdNumber?: string;
  context?: string;
  file: string;
  line: number;
}

export interface PjsipWarning {
  file: string;
  line: number;
  message: string;
}

export interface PjsipConf {
  /** every file read, the top-level one first */
  files: string[];
  /** every section in file order, templates included */
  sections: PjsipSection[];
  warnings: PjsipWarning[];
  /** the first non-template section with this name (and type, when given) */
  find(name: string, type?: string): PjsipSection | undefined;
  /** the non-template sections of one type */
  ofType(type: string): PjsipSection[];
  /** endpoints with their credentials and caller ID, templates applied */
  endpoints(): PjsipEndpoint[];
}

export interface PjsipSource {
  text: string;
  file: string;
}

/**
 * Resolves an `#include` name. Return the file(s) it names (several for a glob, in order),
 * or null / [] when nothing matches (an error for #include, nothing for #tryinclude).
 * Throw an ApsError when a file exists but cannot be read.
 */
export type PjsipIncluder = (name: string, from: { file: string; line: number }) => PjsipSource | PjsipSource[] | null;

const MAX_DEPTH = 16;
const MAX_FILES = 256;
const MAX_FILE_BYTES = 4 * 1024 * 1024;
const MAX_NESTED_COMMENTS = 128;

class Section implements PjsipSection {
  template = false;
  inherits: string[] = [];
  entries: PjsipEntry[] = [];
  constructor(
    public name: string,
    public file: string,
    public line: number,
  ) {}
  get type(): string | undefined {
    return this.get('type')?.toLowerCase();
  }
  private last(key: string): PjsipEntry | undefined {
    const k = key.toLowerCase();
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i].key.toLowerCase() === k) return this.entries[i];
    return undefined;
  }
  get(key: string): string | undefined {
    return this.last(key)?.value;
  }
  getAll(key: string): string[] {
    const k = key.toLowerCase();
    return this.entries.filter((e) => e.key.toLowerCase() === k).map((e) => e.value);
  }
  where(key: string): { file: string; line: number } | undefined {
    const e = this.last(key);
    return e && { file: e.file, line: e.line };
  }
}

class Conf implements PjsipConf {
  constructor(
    public files: string[],
    public sections: PjsipSection[],
    public warnings: PjsipWarning[],
  ) {}
  find(name: string, type?: string): PjsipSection | undefined {
    const t = type?.toLowerCase();
    return this.sections.find((s) => !s.template && s.name === name && (t === undefined || s.type === t));
  }
  ofType(type: string): PjsipSection[] {
    const t = type.toLowerCase();
    return this.sections.filter((s) => !s.template && s.type === t);
  }
  endpoints(): PjsipEndpoint[] {
    return this.ofType('endpoint').map((s) => this.endpoint(s));
  }
  private endpoint(s: PjsipSection): PjsipEndpoint {
    const ep: PjsipEndpoint = { name: s.name, credential: 'none', file: s.file, line: s.line };
    const cid = s.get('callerid');
    if (cid !== undefined && cid !== '') {
      ep.callerId = cid;
      const p = parseCallerId(cid);
      if (p.name !== undefined) ep.callerIdName = p.name;
      if (p.number !== undefined) ep.callerIdNumber = p.number;
    }
    const ctx = s.get('context');
    if (ctx !== undefined && ctx !== '') ep.context = ctx;
    const refs = (s.get('auth') ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    let chosen: PjsipSection | undefined;
    for (const r of refs) {
      const a = this.find(r, 'auth');
      if (a && (a.get('password') !== undefined || a.get('md5_cred') !== undefined)) {
        chosen = a;
        break;
      }
      chosen ??= a;
    }
    if (chosen) {
      ep.auth = chosen.name;
      const user = chosen.get('username');
      if (user !== undefined && user !== '') ep.authUser = user;
      const kind = (chosen.get('auth_type') ?? 'userpass').toLowerCase();
      const pw = chosen.get('password');
      if (kind !== 'md5' && pw !== undefined) {
        ep.password = pw;
        ep.credential = 'password';
      } else if (chosen.get('md5_cred') !== undefined) {
        ep.credential = 'md5';
      }
    }
    return ep;
  }
}

/** `"Alice Smith" <101>`, `Alice <101>`, `<101>`, `101`, `Alice` → name and number (as ast_callerid_parse). */
export function parseCallerId(v: string): { name?: string; number?: string } {
  const s = v.trim();
  const lt = s.lastIndexOf('<');
  const gt = lt >= 0 ? s.indexOf('>', lt) : -1;
  if (lt >= 0 && gt > lt) {
    const number = s.slice(lt + 1, gt).trim();
    let name = s.slice(0, lt).trim();
    if (name.length >= 2 && name.startsWith('"') && name.endsWith('"')) name = name.slice(1, -1).replace(/\\(.)/g, '$1');
    return { ...(name ? { name } : {}), ...(number ? { number } : {}) };
  }
  if (s.length >= 2 && s.startsWith('"') && s.endsWith('"')) return { name: s.slice(1, -1).replace(/\\(.)/g, '$1') };
  if (/^[0-9+*#()\- .]+$/.test(s)) return { number: s.replace(/[()\- .]/g, '') };
  return s ? { name: s } : {};
}

interface State {
  include: PjsipIncluder | undefined;
  sections: Section[];
  files: string[];
  warnings: PjsipWarning[];
}

function configError(message: string, file: string, line: number, extra: Record<string, unknown> = {}): ApsError {
  return new ApsError('APS_ERR_CONFIG', message, { file, line, ...extra });
}

/**
 * Removes comments from one physical line as Asterisk does. `depth` is the block-comment
 * nesting carried from line to line. Returns the text outside comments.
 */
function stripComments(line: string, st: { depth: number; openedAt: number }, lineNo: number): string {
  let out = '';
  let from = 0; // first index after the last comment marker (Asterisk's new_buf)
  const n = line.length;
  for (let i = 0; i < n; i++) {
    const ch = line[i];
    if (ch !== ';') {
      if (st.depth === 0) out += ch;
      continue;
    }
    if (i > 0 && line[i - 1] === '\\') {
      // `\;` is a literal semicolon: the backslash goes
      if (st.depth === 0) out = out.slice(0, -1) + ';';
      continue;
    }
    if (line[i + 1] === '-' && line[i + 2] === '-' && line[i + 3] !== '-') {
      if (st.depth < MAX_NESTED_COMMENTS) {
        if (st.depth === 0) st.openedAt = lineNo;
        st.depth++;
      }
      i += 2;
      from = i + 1;
      continue;
    }
    if (st.depth > 0 && i >= from + 2 && line[i - 1] === '-' && line[i - 2] === '-') {
      st.depth--; // back at depth 0, the text after `--;` belongs to the line again
      from = i + 1;
      continue;
    }
    if (st.depth === 0) return out; // a line comment: the rest of the line goes
    from = i + 1;
  }
  return out;
}

const DIRECTIVE_RE = /^#([A-Za-z]+)(?:\s+(.*))?$/;

function parseInto(st: State, text: string, file: string, stack: string[], start: Section | null): void {
  if (st.files.length >= MAX_FILES) throw configError(`more than ${MAX_FILES} files included`, file, 0);
  st.files.push(file);
  let cur = start;
  const comment = { depth: 0, openedAt: 0 };
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    const t = stripComments(raw, comment, lineNo).trim();
    if (t === '') continue;
    if (t[0] === '[') {
      cur = header(st, t, file, lineNo);
      continue;
    }
    if (t[0] === '#') {
      const m = DIRECTIVE_RE.exec(t);
      const word = m?.[1].toLowerCase();
      if (!m || (word !== 'include' && word !== 'tryinclude' && word !== 'exec')) {
        throw configError(`unknown directive ${JSON.stringify(t.split(/\s/)[0])}`, file, lineNo, { expected: '#include, #tryinclude or #exec' });
      }
      let arg = (m[2] ?? '').trim();
      if ((arg.startsWith('"') && arg.endsWith('"') && arg.length >= 2) || (arg.startsWith('<') && arg.endsWith('>'))) arg = arg.slice(1, -1);
      if (arg === '') throw configError(`#${word} without a file name`, file, lineNo, { expected: `#${word} "file"` });
      if (word === 'exec') {
        st.warnings.push({ file, line: lineNo, message: '#exec ignored: apsd does not run programs named in pjsip.conf' });
        continue;
      }
      includeFiles(st, arg, word === 'tryinclude', file, lineNo, stack, cur);
      continue;
    }
    const eq = t.indexOf('=');
    if (eq < 0) {
      st.warnings.push({ file, line: lineNo, message: "no '=' on this line; ignored" });
      continue;
    }
    let key = t.slice(0, eq);
    let rest = t.slice(eq + 1);
    let append = false;
    if (key.endsWith('+')) {
      append = true;
      key = key.slice(0, -1);
    } else if (rest.startsWith('>')) {
      rest = rest.slice(1);
    }
    key = key.trim();
    if (key === '') {
      st.warnings.push({ file, line: lineNo, message: 'a value without a key; ignored' });
      continue;
    }
    if (!cur) throw configError(`key "${key}" outside any [section]`, file, lineNo, { key, expected: 'a [section] header first' });
    if (append) {
      const prev = [...cur.entries].reverse().find((e) => e.key === key);
      if (prev) {
        prev.value = (prev.value + rest).trim();
        continue;
      }
    }
    cur.entries.push({ key, value: rest.trim(), file, line: lineNo, inherited: false });
  }
  if (comment.depth > 0) st.warnings.push({ file, line: comment.openedAt, message: 'block comment ;-- never closed with --;' });
}

function header(st: State, t: string, file: string, lineNo: number): Section {
  const close = t.indexOf(']');
  if (close < 0) throw configError("section header without closing ']'", file, lineNo, { expected: '[name] or [name](options)' });
  const name = t.slice(1, close).trim();
  if (name === '') throw configError('empty section name', file, lineNo, { expected: '[name]' });
  const after = t.slice(close + 1).trim();
  let opts: string[] = [];
  if (after.startsWith('(')) {
    const end = after.indexOf(')');
    if (end < 0) throw configError(`section [${name}]: options without closing ')'`, file, lineNo, { key: `[${name}]`, expected: '[name](!) or [name](template)' });
    opts = after
      .slice(1, end)
      .split(',')
      .map((o) => o.trim())
      .filter(Boolean);
  } else if (after !== '') {
    st.warnings.push({ file, line: lineNo, message: `text after [${name}] ignored` });
  }
  let sec = new Section(name, file, lineNo);
  let isNew = true;
  for (const o of opts) {
    if (o === '!') {
      sec.template = true;
    } else if (o[0] === '+') {
      const filter = o.slice(1);
      const existing = findSection(st, name, filter);
      if (!existing) {
        throw configError(`section [${name}](${o}) adds to a section that does not exist yet`, file, lineNo, {
          key: `[${name}]`,
          expected: `a [${name}] section earlier in the file`,
        });
      }
      sec = existing;
      isNew = false;
    } else {
      const base = findSection(st, o, '');
      if (!base) {
        throw configError(`section [${name}] inherits from [${o}], which is not defined above it`, file, lineNo, {
          key: `[${name}]`,
          expected: `a [${o}](!) template defined before [${name}]`,
        });
      }
      sec.inherits.push(base.name);
      for (const e of base.entries) sec.entries.push({ ...e, inherited: true });
    }
  }
  if (isNew) st.sections.push(sec);
  return sec;
}

/** The first section with this name (case-insensitive, as Asterisk), templates included; `filter` is `key=value&key=value`. */
function findSection(st: State, name: string, filter: string): Section | undefined {
  const want = filter
    .split('&')
    .map((f) => f.trim())
    .filter(Boolean)
    .map((f) => {
      const i = f.indexOf('=');
      return i < 0 ? { k: f, v: undefined } : { k: f.slice(0, i).trim(), v: f.slice(i + 1).trim() };
    });
  const n = name.toLowerCase();
  return st.sections.find(
    (s) => s.name.toLowerCase() === n && want.every(({ k, v }) => (v === undefined ? s.get(k) !== undefined : s.get(k)?.toLowerCase() === v.toLowerCase())),
  );
}

function includeFiles(st: State, name: string, tryOnly: boolean, file: string, lineNo: number, stack: string[], cur: Section | null): void {
  if (!st.include) throw configError(`#include ${JSON.stringify(name)} cannot be followed here`, file, lineNo);
  if (stack.length >= MAX_DEPTH) {
    throw configError(`includes nested deeper than ${MAX_DEPTH} levels`, file, lineNo, { expected: 'fewer nested #include' });
  }
  let found: PjsipSource | PjsipSource[] | null;
  try {
    found = st.include(name, { file, line: lineNo });
  } catch (e) {
    if (e instanceof ApsError) {
      throw new ApsError(e.code, `#${tryOnly ? 'tryinclude' : 'include'} ${JSON.stringify(name)}: ${e.message}`, { ...e.context, file, line: lineNo });
    }
    throw e;
  }
  const list = found === null ? [] : Array.isArray(found) ? found : [found];
  if (list.length === 0) {
    if (tryOnly) return;
    throw configError(`#include ${JSON.stringify(name)}: no such file`, file, lineNo, { expected: 'an existing file (use #tryinclude for an optional one)' });
  }
  for (const src of list) {
    if (stack.includes(src.file)) {
      const chain = [...stack.slice(stack.indexOf(src.file)), src.file].map((f) => path.basename(f)).join(' -> ');
      throw configError(`#include loop: ${chain}`, file, lineNo, { expected: 'a file not to include itself' });
    }
    parseInto(st, src.text, src.file, [...stack, src.file], cur);
  }
}

/** Parses pjsip.conf text; `include` resolves `#include` names (none: an #include is an error). */
export function parsePjsip(text: string, file: string, include?: PjsipIncluder): PjsipConf {
  const st: State = { include, sections: [], files: [], warnings: [] };
  parseInto(st, text, file, [file], null);
  return new Conf(st.files, st.sections, st.warnings);
}

function readText(file: string): string {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ApsError('APS_ERR_CONFIG', `cannot read ${file}: ${code}`, { file, errno: code });
  }
  if (size > MAX_FILE_BYTES) throw new ApsError('APS_ERR_CONFIG', `file larger than ${MAX_FILE_BYTES} bytes`, { file });
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ApsError('APS_ERR_CONFIG', `cannot read ${file}: ${code}`, { file, errno: code });
  }
}

function globToRegex(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = seg.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let body = seg.slice(i + 1, end);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += '[' + body.replace(/\\/g, '\\\\') + ']';
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}

/** Files matching a path with `*`, `?`, `[...]` in any component, sorted as glob(3) does; dot files only when asked for. */
function expandGlob(pattern: string): string[] {
  if (!/[*?[]/.test(pattern)) return [pattern];
  const abs = path.resolve(pattern);
  const parts = abs.split(path.sep).filter(Boolean);
  let bases = [path.parse(abs).root];
  for (let p = 0; p < parts.length; p++) {
    const seg = parts[p];
    const next: string[] = [];
    for (const b of bases) {
      if (!/[*?[]/.test(seg)) {
        next.push(path.join(b, seg));
        continue;
      }
      let names: string[];
      try {
        names = fs.readdirSync(b);
      } catch {
        continue; // a directory that cannot be listed contributes no match, as with glob(3)
      }
      const re = globToRegex(seg);
      for (const n of names.sort()) if (re.test(n) && (!n.startsWith('.') || seg.startsWith('.'))) next.push(path.join(b, n));
    }
    bases = next;
    if (bases.length > MAX_FILES) break;
  }
  return bases.filter((f) => fs.existsSync(f));
}

/**
 * Reads pjsip.conf and what it includes. Relative include names are taken relative to the
 * directory of `file` (Asterisk: relative to its config directory, where pjsip.conf lives).
 */
export function readPjsipConf(file: string): PjsipConf {
  const top = path.resolve(file);
  const dir = path.dirname(top);
  const include: PjsipIncluder = (name) => {
    const full = path.isAbsolute(name) ? name : path.join(dir, name);
    const matches = expandGlob(full);
    const out: PjsipSource[] = [];
    for (const m of matches) {
      let st: fs.Stats;
      try {
        st = fs.statSync(m);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
        if (code === 'ENOENT') continue;
        throw new ApsError('APS_ERR_CONFIG', `cannot read ${m}: ${code}`, { file: m, errno: code });
      }
      if (st.isDirectory()) continue;
      out.push({ text: readText(m), file: m });
    }
    return out;
  };
  return parsePjsip(readText(top), top, include);
}
