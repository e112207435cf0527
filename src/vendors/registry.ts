/**
 * The vendors registry: loads vendors/<id>/ (vendor.json, templates/*.mustache), validates
 * everything at start-up (a duplicate OUI, model or pattern fails loudly with file and field),
 * and answers the questions the rest of the product asks: who is this (MAC, DHCP vendor class,
 * User-Agent) and which vendor file is this request name.
 */
import fs from 'node:fs';
import path from 'node:path';
import Mustache from 'mustache';
import { ApsError } from '../errors.js';
import { macOui, type Mac } from '../mac.js';
import { KEY_TYPES, LANGUAGES, OPTIONAL_KEYS, readTemplate, TEMPLATE_SECTIONS, TONE_COUNTRIES, TRANSPORTS } from '../config/template.js';
import { parseIni } from '../config/ini-file.js';
import { PARAM_LISTS, type ParamRange, type RefusedFile, type VendorData, type VendorFamily, type VendorFile, type VendorModel } from './types.js';
import { optionType } from '../wire/dhcp-options.js';

export type { RefusedFile, VendorData, VendorFamily, VendorFile, VendorModel } from './types.js';

/** Confidence of an identification, lowest to highest. */
export const Confidence = { oui: 1, vendorClass: 2, userAgent: 3 } as const;

export interface Vendor extends VendorData {
  dir: string;
  /** template name → template text */
  templates: Map<string, string>;
  compiledFiles: CompiledFile[];
  /** the refused[] names as patterns */
  refusedRes: { spec: RefusedFile; re: RegExp }[];
  uaRes: RegExp[];
  modelByKey: Map<string, VendorModel>;
}

export interface CompiledFile {
  spec: VendorFile;
  vendor: Vendor;
  re: RegExp;
  scope: 'common' | 'model' | 'device';
  /** the name of the {code:<name>} placeholder in the file name, if any */
  codeName?: string;
}

export interface Identification {
  vendor: string;
  model?: string;
  version?: string;
  mac?: Mac;
  confidence: number;
  by: 'oui' | 'vendorClass' | 'userAgent';
}

export interface FileMatch {
  file: CompiledFile;
  mac?: Mac;
  model?: VendorModel;
}

/** Model ids compare without case and punctuation: VVX_400 = VVX400 = vvx-400. */
export function modelKey(s: string): string {
  return s.toUpperCase().replace(/[^A-Z0-9]/g, '');
}

const REQUIRED_MAPS: Record<string, readonly string[]> = {
  bool: ['true', 'false'],
  transport: TRANSPORTS,
  language: LANGUAGES,
  toneCountry: TONE_COUNTRIES,
};

export class VendorRegistry {
  readonly vendors = new Map<string, Vendor>();
  private readonly byOui = new Map<string, Vendor>();

  /** Loads every vendor folder under root (or only those named in `only`). */
  static load(root: string, only?: string[]): VendorRegistry {
    const reg = new VendorRegistry();
    let ids: string[];
    try {
      ids = fs.readdirSync(root).filter((n) => fs.statSync(path.join(root, n)).isDirectory()).sort();
    } catch {
      throw new ApsError('APS_ERR_VENDOR', 'the vendors directory cannot be read', { file: root });
    }
    const problems: ApsError[] = [];
    for (const id of ids) {
      if (only && !only.includes(id)) continue;
      try {
        reg.add(loadVendor(path.join(root, id)));
      } catch (e) {
        if (!(e instanceof VendorDataError) && !(e instanceof ApsError)) throw e;
        problems.push(...(e instanceof VendorDataError ? e.problems : [e]));
      }
    }
    problems.push(...checkAnswerTypes(reg.list()));
    if (problems.length) throw new VendorDataError(problems);
    return reg;
  }

  add(v: Vendor): void {
    const file = path.join(v.dir, 'vendor.json');
    if (this.vendors.has(v.id)) throw new ApsError('APS_ERR_VENDOR', `vendor id "${v.id}" is used twice`, { file, key: 'id' });
    for (const oui of v.ouis) {
      const other = this.byOui.get(oui);
      if (other) throw new ApsError('APS_ERR_VENDOR', `OUI ${oui} is already claimed by vendor ${other.id}`, { file, key: 'ouis' });
    }
    for (const other of this.vendors.values()) {
      for (const vc of v.vendorClasses) {
        if (other.vendorClasses.some((o) => o.match === vc.match && o.value === vc.value)) {
          throw new ApsError('APS_ERR_VENDOR', `vendor class ${vc.match} "${vc.value}" is already claimed by vendor ${other.id}`, { file, key: 'vendorClasses' });
        }
      }
      for (const ua of v.userAgents) {
        if (other.userAgents.some((o) => o.pattern === ua.pattern)) {
          throw new ApsError('APS_ERR_VENDOR', `User-Agent pattern is already claimed by vendor ${other.id}`, { file, key: 'userAgents' });
        }
      }
    }
    this.vendors.set(v.id, v);
    for (const oui of v.ouis) this.byOui.set(oui, v);
  }

  get(id: string): Vendor | undefined {
    return this.vendors.get(id.toLowerCase());
  }

  list(): Vendor[] {
    return [...this.vendors.values()];
  }

  model(vendorId: string, model: string): VendorModel | undefined {
    return this.get(vendorId)?.modelByKey.get(modelKey(model));
  }

  vendorOfMac(mac: Mac): Vendor | undefined {
    return this.byOui.get(macOui(mac));
  }

  private readonly uaCache = new Map<string, Identification[]>();

  /**
   * What a User-Agent says, remembered: the guard, the fetch log and the inventory all ask it of
   * every request, and a phone sends the same string each time (bounded to 10,000 strings).
   */
  private byUserAgent(ua: string): Identification[] {
    const hit = this.uaCache.get(ua);
    if (hit) return hit;
    const out: Identification[] = [];
    for (const v of this.vendors.values()) {
      for (const re of v.uaRes) {
        const m = re.exec(ua);
        if (!m) continue;
        const g = m.groups ?? {};
        const model = g.model ? v.modelByKey.get(modelKey(g.model))?.id : undefined;
        const macHex = g.mac ? g.mac.replace(/[^0-9a-fA-F]/g, '').toLowerCase() : '';
        out.push({
          vendor: v.id, model, version: g.version, confidence: Confidence.userAgent, by: 'userAgent',
          mac: macHex.length === 12 ? (macHex as Mac) : undefined,
        });
        break;
      }
    }
    if (this.uaCache.size >= 10_000) this.uaCache.clear();
    // shared by every caller: read only
    for (const i of out) Object.freeze(i);
    this.uaCache.set(ua, out);
    return out;
  }

  /** Every identification the evidence supports, best first. */
  identify(e: { mac?: Mac; vendorClass?: string; userAgent?: string }): Identification[] {
    const out: Identification[] = [];
    if (e.userAgent) out.push(...this.byUserAgent(e.userAgent));
    if (e.vendorClass !== undefined) {
      for (const v of this.vendors.values()) {
        for (const vc of v.vendorClasses) {
          if (matchClass(vc.match, vc.value, e.vendorClass)) {
            const model = modelFromClass(v, e.vendorClass);
            out.push({ vendor: v.id, model, confidence: Confidence.vendorClass, by: 'vendorClass' });
            break;
          }
        }
      }
    }
    if (e.mac) {
      const v = this.vendorOfMac(e.mac);
      if (v) out.push({ vendor: v.id, confidence: Confidence.oui, by: 'oui', mac: e.mac });
    }
    return out.sort((a, b) => b.confidence - a.confidence);
  }

  /** Which vendor files this request name can be, with the MAC and model it names. */
  matchFile(name: string): FileMatch[] {
    const out: FileMatch[] = [];
    for (const v of this.vendors.values()) {
      for (const cf of v.compiledFiles) {
        const m = cf.re.exec(name);
        if (!m) continue;
        const g = m.groups ?? {};
        const mac = (g.mac ?? g.MAC)?.toLowerCase() as Mac | undefined;
        let model: VendorModel | undefined;
        if (g.code !== undefined) {
          model = v.models.find((x) => x.code !== undefined && x.code.toLowerCase() === g.code.toLowerCase() && fileFits(v, cf.spec, x));
          if (!model) continue;
        }
        if (cf.codeName !== undefined) {
          const want = g.named.toLowerCase();
          const name = cf.codeName;
          model = v.models.find((x) => x.codes?.[name] !== undefined && x.codes[name].toLowerCase() === want && (!model || x === model));
          if (!model) continue;
        }
        out.push({ file: cf, mac, model });
      }
    }
    // literal names (common files) before patterns, so 000000000000.cfg is not taken for a MAC
    return out.sort((a, b) => scopeRank(a.file.scope) - scopeRank(b.file.scope));
  }
}

/** The vendors that refuse this request name on purpose, with their reasons (served files are not refused). */
export function refusedBy(reg: VendorRegistry, name: string): { vendor: Vendor; refused: RefusedFile }[] {
  const out: { vendor: Vendor; refused: RefusedFile }[] = [];
  const served = new Set(reg.matchFile(name).map((m) => m.file.vendor.id));
  for (const v of reg.list()) {
    if (served.has(v.id)) continue;
    const r = v.refusedRes.find((x) => x.re.test(name));
    if (r) out.push({ vendor: v, refused: r.spec });
  }
  return out;
}

function scopeRank(s: string): number {
  return s === 'common' ? 0 : s === 'model' ? 1 : 2;
}

function matchClass(kind: string, value: string, s: string): boolean {
  switch (kind) {
    case 'exact': return s === value;
    case 'prefix': return s.startsWith(value);
    case 'suffix': return s.endsWith(value);
    case 'regex': return new RegExp(value).test(s);
    default: return false;
  }
}

/** The longest model alias or id contained in a vendor class string. */
function modelFromClass(v: Vendor, vendorClass: string): string | undefined {
  const key = modelKey(vendorClass);
  let best: { id: string; len: number } | undefined;
  for (const [k, m] of v.modelByKey) {
    if (k.length >= 3 && key.endsWith(k) && (!best || k.length > best.len)) best = { id: m.id, len: k.length };
  }
  return best?.id;
}

/** Every tab and key of a template at its default: what `unsupported` may name. */
const TEMPLATE_DEFAULTS = readTemplate(parseIni('[template]\nvendor = x\nmodel = x\n', '(defaults).ini'));

/**
 * Every problem of the vendor data, each with its file and field, reported at once (as a linter
 * would): an administrator who edits a vendor.json sees everything to fix in one go.
 */
export class VendorDataError extends ApsError {
  constructor(readonly problems: ApsError[]) {
    super('APS_ERR_VENDOR', `${problems.length} problem${problems.length === 1 ? '' : 's'} in the vendor data:\n${problems.map((p) => `  ${p.describe()}`).join('\n')}`);
  }

  override describe(): string {
    return this.message;
  }
}

/** Runs each check; an ApsError it throws is kept and the next check runs. */
class Problems {
  readonly list: ApsError[] = [];
  check(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof ApsError)) throw e;
      this.list.push(e);
    }
  }
}

/** DHCP answers: a code, a value kind, sub-options only in 43 (written into the vendor's class blocks and the built-in server's replies). */
function checkDhcpAnswers(data: VendorData, fail: (key: string, message: string, expected?: string) => never, p: Problems): void {
  const answers = data.dhcp?.answers;
  if (data.dhcp !== undefined && !Array.isArray(answers)) p.check(() => fail('dhcp.answers', 'not a list', 'a list of {code, value[, suboption]}'));
  (answers ?? []).forEach((a, i) => p.check(() => {
    const key = `dhcp.answers[${i}]`;
    if (!Number.isInteger(a.code) || a.code < 1 || a.code > 254) fail(`${key}.code`, `option ${a.code} is not a DHCPv4 option code`, '1 to 254');
    if (a.value === 'sub') {
      if (a.code !== 43) fail(key, `sub-options are only written into option 43, not ${a.code}`, 'code 43 with value sub');
      if (!Number.isInteger(a.suboption) || a.suboption! < 1 || a.suboption! > 254) fail(`${key}.suboption`, `sub-option ${a.suboption} is not a sub-option code`, '1 to 254');
      return;
    }
    if (!['url', 'host', 'ip'].includes(a.value)) fail(`${key}.value`, `"${a.value}" is not an answer value`, 'url, host, ip or sub');
    if (a.append !== undefined && (a.value !== 'url' || typeof a.append !== 'string' || !/^[\x21-\x7e]+$/.test(a.append))) {
      fail(`${key}.append`, 'append is text added to a url answer', 'value url and printable text without spaces, e.g. $mac.cfg');
    }
    if (a.code === 43) fail(key, 'option 43 is written as sub-options only', 'value sub with a suboption');
  }));
}

/** One type per option code across every vendor (a DHCP server holds one definition per code). */
function checkAnswerTypes(vendors: Vendor[]): ApsError[] {
  const kinds = new Map<number, { values: Set<string>; by: string[] }>();
  for (const v of vendors) {
    for (const a of v.dhcp?.answers ?? []) {
      if (a.value === 'sub') continue;
      const k = kinds.get(a.code) ?? { values: new Set(), by: [] };
      k.values.add(a.value);
      k.by.push(v.id);
      kinds.set(a.code, k);
    }
  }
  const out: ApsError[] = [];
  for (const [code, k] of kinds) {
    if (optionType(code, k.values) === 'ip' && [...k.values].some((x) => x !== 'ip')) {
      out.push(new ApsError('APS_ERR_VENDOR', `option ${code} carries IPv4 addresses, but ${[...new Set(k.by)].join(', ')} ask for the ${[...k.values].filter((x) => x !== 'ip').join(' and ')} in it`, { key: 'dhcp.answers', expected: 'value ip' }));
    }
  }
  return out;
}

export function loadVendor(dir: string): Vendor {
  const file = path.join(dir, 'vendor.json');
  const fail = (key: string, message: string, expected?: string): never => {
    throw new ApsError('APS_ERR_VENDOR', message, { file, key, expected });
  };
  const p = new Problems();
  let data: VendorData;
  try {
    data = JSON.parse(fs.readFileSync(file, 'utf8')) as VendorData;
  } catch (e) {
    return fail('', `cannot read vendor data: ${(e as Error).message}`);
  }
  const id = path.basename(dir);
  if (data.id !== id) fail('id', `id "${data.id}" differs from the folder name "${id}"`, id);
  p.check(() => {
    if (!data.name) fail('name', 'missing', 'the vendor name as people write it');
  });
  if (!Array.isArray(data.ouis) || data.ouis.length === 0) p.check(() => fail('ouis', 'missing', 'a list of 6-digit lower-case OUIs'));
  if (!Array.isArray(data.ouis)) data.ouis = [];
  const seenOui = new Set<string>();
  data.ouis.forEach((o, i) => p.check(() => {
    if (!/^[0-9a-f]{6}$/.test(o)) fail(`ouis[${i}]`, `"${o}" is not an OUI`, '6 lower-case hex digits, e.g. 805ec0');
    if (seenOui.has(o)) fail(`ouis[${i}]`, `OUI ${o} is listed twice`);
    seenOui.add(o);
  }));
  (data.vendorClasses ?? []).forEach((vc, i) => p.check(() => {
    if (!['exact', 'prefix', 'suffix', 'regex'].includes(vc.match)) fail(`vendorClasses[${i}].match`, `"${vc.match}" is not a match kind`, 'exact, prefix, suffix or regex');
    if (!vc.value) fail(`vendorClasses[${i}].value`, 'missing');
    if (!vc.source) fail(`vendorClasses[${i}].source`, 'every matcher needs a source', 'where the value was seen');
    if (vc.match === 'regex') compileRe(vc.value, (m) => fail(`vendorClasses[${i}].value`, m));
  }));
  const uaRes: RegExp[] = [];
  (data.userAgents ?? []).forEach((ua, i) => p.check(() => {
    if (!ua.source) fail(`userAgents[${i}].source`, 'every matcher needs a source', 'where the value was seen');
    uaRes.push(compileRe(ua.pattern, (m) => fail(`userAgents[${i}].pattern`, m)));
  }));
  if (!Array.isArray(data.models) || data.models.length === 0) p.check(() => fail('models', 'missing', 'a list of models'));
  if (!Array.isArray(data.models)) data.models = [];
  const modelByKey = new Map<string, VendorModel>();
  data.models.forEach((m, i) => p.check(() => {
    if (!m.id) fail(`models[${i}].id`, 'missing');
    if (!Number.isInteger(m.lines) || m.lines < 1) fail(`models[${i}].lines`, `${m.lines} is not a line count`, 'a whole number ≥ 1');
    if (!Number.isInteger(m.keys) || m.keys < 0) fail(`models[${i}].keys`, `${m.keys} is not a key count`, 'a whole number ≥ 0');
    if (m.handsets !== undefined) {
      if (!Number.isInteger(m.handsets) || m.handsets < 1) fail(`models[${i}].handsets`, `${m.handsets} is not a handset count`, 'a whole number ≥ 1 (a DECT base)');
      if (m.lines > m.handsets) fail(`models[${i}].lines`, `${m.lines} lines on a base for ${m.handsets} handsets`, 'at most one line per handset: line N is handset N');
    }
    if (m.family !== undefined && !data.families?.[m.family]) fail(`models[${i}].family`, `no family "${m.family}"`, `a key of "families": ${Object.keys(data.families ?? {}).join(', ') || '(none)'}`);
    if (m.keysPerPage !== undefined && (!Number.isInteger(m.keysPerPage) || m.keysPerPage < 1)) fail(`models[${i}].keysPerPage`, `${m.keysPerPage} is not a key count`, 'a whole number ≥ 1');
    for (const [name, code] of Object.entries(m.codes ?? {})) {
      if (!/^[a-z][a-z0-9]*$/.test(name)) fail(`models[${i}].codes`, `"${name}" is not a code name`, 'lower-case letters and digits, e.g. cfg');
      if (typeof code !== 'string' || !CODE_RE.test(code)) fail(`models[${i}].codes.${name}`, `"${code}" is not a model code`, "letters, digits, '.', '_' and '-'");
    }
    for (const name of [m.id, ...(m.aliases ?? [])]) {
      const k = modelKey(name);
      const prev = modelByKey.get(k);
      if (prev) fail(`models[${i}]`, `model name "${name}" collides with model ${prev.id}`);
      modelByKey.set(k, m);
    }
  }));
  checkDhcpAnswers(data, fail, p);
  if (data.firmware?.upgradeLimit !== undefined) p.check(() => {
    if (typeof data.firmware!.upgradeLimit !== 'string' || !/^\d+\s*(ms|s|m|h)?$/.test(data.firmware!.upgradeLimit)) fail('firmware.upgradeLimit', `${JSON.stringify(data.firmware!.upgradeLimit)} is not a duration`, 'a string: seconds or a number with a unit, e.g. "15m"');
  });
  const templates = new Map<string, string>();
  const tdir = path.join(dir, 'templates');
  try {
    for (const n of fs.readdirSync(tdir)) {
      if (!n.endsWith('.mustache')) continue;
      const text = fs.readFileSync(path.join(tdir, n), 'utf8');
      templates.set(n.replace(/\.mustache$/, ''), text);
      p.check(() => {
        if (/\{\{\{|\{\{&/.test(text)) {
          fail(`templates/${n}`, 'a template may not print unescaped values ({{{x}}} or {{&x}})', 'plain {{x}}: escaping follows the file format');
        }
        try {
          Mustache.parse(text);
        } catch (e) {
          fail(`templates/${n}`, `template does not parse: ${(e as Error).message}`);
        }
      });
    }
  } catch (e) {
    if (e instanceof ApsError) throw e;
    fail('templates', 'the templates folder cannot be read');
  }
  if (!Array.isArray(data.files) || data.files.length === 0) p.check(() => fail('files', 'missing', 'the files the phones ask for'));
  if (!Array.isArray(data.files)) data.files = [];
  const vendor: Vendor = { ...data, dir, templates, compiledFiles: [], refusedRes: [], uaRes, modelByKey };
  const seenNames = new Set<string>();
  data.files.forEach((f, i) => p.check(() => {
    if (!templates.has(f.template)) fail(`files[${i}].template`, `no template "${f.template}"`, `a file templates/${f.template}.mustache`);
    if (f.format !== 'text' && f.format !== 'xml') fail(`files[${i}].format`, `"${f.format}" is not a format`, 'text or xml');
    if (typeof f.secrets !== 'boolean') fail(`files[${i}].secrets`, 'missing', 'true or false');
    (f.families ?? []).forEach((fid, j) => {
      if (!data.families?.[fid]) fail(`files[${i}].families[${j}]`, `no family "${fid}"`, `a key of "families": ${Object.keys(data.families ?? {}).join(', ') || '(none)'}`);
    });
    if (f.lineEnding !== undefined && f.lineEnding !== 'lf' && f.lineEnding !== 'crlf') fail(`files[${i}].lineEnding`, `"${String(f.lineEnding)}" is not a line ending`, 'lf or crlf');
    if (seenNames.has(f.name)) fail(`files[${i}].name`, `file ${f.name} is listed twice`);
    seenNames.add(f.name);
    const { re, scope, codeName } = compileName(f.name, (m) => fail(`files[${i}].name`, m));
    if (/\{code\}/.test(f.name) && !data.models.some((m) => m.code && fileFits(data, f, m))) fail(`files[${i}].name`, '{code} is used but no model that asks for it has a code');
    if (codeName !== undefined && !data.models.some((m) => m.codes?.[codeName])) fail(`files[${i}].name`, `{code:${codeName}} is used but no model has a code "${codeName}"`);
    if (!data.models.some((m) => fileFits(data, f, m))) fail(`files[${i}].families`, 'no model asks for this file', 'a family some model belongs to');
    if (f.secrets && scope !== 'device') fail(`files[${i}].secrets`, 'a file without a MAC in its name is served to anyone and cannot hold secrets');
    vendor.compiledFiles.push({ spec: f, vendor, re, scope, codeName });
  }));
  (data.refused ?? []).forEach((r, i) => p.check(() => {
    if (!r.why) fail(`refused[${i}].why`, 'missing', 'why aps does not answer this file');
    if (seenNames.has(r.name)) fail(`refused[${i}].name`, `file ${r.name} is both served and refused`);
    vendor.refusedRes.push({ spec: r, re: compileName(r.name, (m) => fail(`refused[${i}].name`, m)).re });
  }));
  // unsupported: a key of OPTIONAL_KEYS, any "<section>.<key>" template setting, or a whole section
  const checkUnsupported = (list: unknown, key: string) => {
    if (list === undefined) return;
    if (!Array.isArray(list)) return p.check(() => fail(key, 'not a list', 'a list of "<section>.<key>" template settings'));
    (list as unknown[]).forEach((n, i) => p.check(() => {
      if (typeof n === 'string' && n in OPTIONAL_KEYS) return;
      const [section, k] = String(n).split('.', 2);
      // a key must be one the template has (a typo would silently never warn)
      const known = k === undefined || Object.prototype.hasOwnProperty.call((TEMPLATE_DEFAULTS as unknown as Record<string, Record<string, unknown>>)[section] ?? {}, k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()));
      if (typeof n !== 'string' || !(TEMPLATE_SECTIONS as readonly string[]).includes(section) || section === 'template' || !known) {
        fail(`${key}[${i}]`, `"${String(n)}" is not a template key that may be left out`, `a template section (paging), "<section>.<key>" (phone.tone_country) or one of ${Object.keys(OPTIONAL_KEYS).join(', ')}`);
      }
    }));
  };
  checkUnsupported(data.unsupported, 'unsupported');
  data.models.forEach((m, i) => checkUnsupported(m.unsupported, `models[${i}].unsupported`));
  for (const [mapName, keys] of Object.entries(REQUIRED_MAPS)) {
    const map = data.maps?.[mapName];
    if (!map) {
      p.check(() => fail(`maps.${mapName}`, 'missing', `a map for ${keys.join(', ')}`));
      continue;
    }
    for (const k of keys) if (map[k] === undefined) p.check(() => fail(`maps.${mapName}.${k}`, 'missing', 'the vendor value for it'));
  }
  const checkKeyMap = (where: string, keyMap: Record<string, string>) => {
    for (const k of Object.keys(keyMap)) {
      if (!(KEY_TYPES as readonly string[]).includes(k)) p.check(() => fail(`${where}.${k}`, `"${k}" is not a key type`, KEY_TYPES.join(', ')));
    }
  };
  for (const mapName of ['keyType', 'progkeyType', 'moduleKeyType']) checkKeyMap(`maps.${mapName}`, data.maps?.[mapName] ?? {});
  const checkWidth = (where: string, w: unknown) => {
    if (w !== undefined && (!Number.isInteger(w) || (w as number) < 1 || (w as number) > 8)) p.check(() => fail(where, `${String(w)} is not a width`, 'a whole number from 1 to 8'));
  };
  checkWidth('lineIdWidth', data.lineIdWidth);
  for (const [fid, fam] of Object.entries(data.families ?? {})) {
    for (const [from, to] of Object.entries(fam.templates ?? {})) {
      if (!data.files.some((f) => f.template === from)) p.check(() => fail(`families.${fid}.templates.${from}`, `no file uses the template "${from}"`, 'the template name of one of "files"'));
      if (!templates.has(to)) p.check(() => fail(`families.${fid}.templates.${from}`, `no template "${to}"`, `a file templates/${to}.mustache`));
    }
    for (const [mapName, map] of Object.entries(fam.maps ?? {})) {
      const keys = REQUIRED_MAPS[mapName];
      if (keys) for (const k of keys) if (map[k] === undefined) p.check(() => fail(`families.${fid}.maps.${mapName}.${k}`, 'missing', 'the vendor value for it'));
      if (mapName === 'keyType') checkKeyMap(`families.${fid}.maps.keyType`, map);
    }
    checkUnsupported(fam.unsupported, `families.${fid}.unsupported`);
    checkWidth(`families.${fid}.lineIdWidth`, fam.lineIdWidth);
  }
  (data.firmwareVariants ?? []).forEach((fv, i) => p.check(() => {
    if (!/^[a-z][A-Za-z0-9]*$/.test(fv.flag ?? '')) fail(`firmwareVariants[${i}].flag`, `"${fv.flag}" is not a flag name`, 'a name like legacySipServer');
    if (!/^\d+(?:\.\d+)*$/.test(fv.below ?? '')) fail(`firmwareVariants[${i}].below`, `"${fv.below}" is not a version`, 'numbers and dots, e.g. 71');
    if (fv.part !== undefined && (!Number.isInteger(fv.part) || fv.part < 0 || fv.part > 5)) fail(`firmwareVariants[${i}].part`, `${fv.part} is not a version part`, '0 to 5');
    if (!fv.source) fail(`firmwareVariants[${i}].source`, 'every fact needs a source', 'where the difference is documented');
  }));
  checkParams(data, fail, (f) => p.check(f));
  if (!data.resync?.event) p.check(() => fail('resync.event', 'missing', 'the SIP NOTIFY event, e.g. check-sync'));
  if (p.list.length) throw new VendorDataError(p.list);
  return vendor;
}

/** params: named tables of numbered parameter ranges (and the keys a model family has no setting for); models name existing tables. */
function checkParams(data: VendorData, fail: (key: string, message: string, expected?: string) => never, check: (f: () => void) => void): void {
  const tables = data.params ?? {};
  for (const [name, table] of Object.entries(tables)) {
    (table.unsupported ?? []).forEach((k, i) => check(() => {
      if (!(k in OPTIONAL_KEYS)) fail(`params.${name}.unsupported[${i}]`, `"${k}" is not a template key that may be left out`, Object.keys(OPTIONAL_KEYS).join(', '));
    }));
    for (const [list, ranges] of Object.entries(table)) check(() => {
      if (list === 'unsupported') return;
      const where = `params.${name}.${list}`;
      if (!(PARAM_LISTS as readonly string[]).includes(list)) fail(where, `"${list}" is not a list`, PARAM_LISTS.join(', '));
      if (!Array.isArray(ranges)) fail(where, 'not a list of ranges');
      (ranges as ParamRange[]).forEach((r, i) => check(() => {
        const at = `${where}[${i}]`;
        if (!Number.isInteger(r.from) || !Number.isInteger(r.to) || r.from < 1 || r.to < r.from) fail(at, `${r.from}..${r.to} is not a range`, 'whole numbers 1 ≤ from ≤ to');
        if (r.step !== undefined && !Number.isInteger(r.step)) fail(`${at}.step`, `${r.step} is not a whole number`);
        if (r.typeMap !== undefined && !data.maps?.[r.typeMap]) fail(`${at}.typeMap`, `no map "${r.typeMap}"`, 'the name of a map in maps');
        for (const k of Object.keys(r.typeMap ? data.maps?.[r.typeMap] ?? {} : {})) {
          if (!(KEY_TYPES as readonly string[]).includes(k)) fail(`maps.${r.typeMap}.${k}`, `"${k}" is not a key type`, KEY_TYPES.join(', '));
        }
        if (!r.fields || Object.keys(r.fields).length === 0) fail(`${at}.fields`, 'missing', 'field name → parameter number');
        for (const [f, v] of Object.entries(r.fields)) {
          const ok = Number.isInteger(v) || (Array.isArray(v) && v.length === 2 && v.every(Number.isInteger));
          if (!ok) fail(`${at}.fields.${f}`, `${JSON.stringify(v)} is not a parameter number`, 'a number, or [base, step]');
        }
        (ranges as ParamRange[]).slice(0, i).forEach((o, j) => {
          if ((o.module ?? 1) === (r.module ?? 1) && r.from <= o.to && o.from <= r.to) fail(at, `overlaps ${where}[${j}]`);
        });
      }));
    });
  }
  (data.models ?? []).forEach((m, i) => check(() => {
    if (m.params !== undefined && !tables[m.params]) fail(`models[${i}].params`, `no parameter table "${m.params}"`, Object.keys(tables).join(', ') || 'a params entry');
  }));
}

function compileRe(src: string, fail: (m: string) => never): RegExp {
  try {
    return new RegExp(src);
  } catch (e) {
    return fail(`not a regular expression: ${(e as Error).message}`);
  }
}

/** What a model code may hold: the characters of a file name, no path. */
const CODE_RE = /^[A-Za-z0-9._-]+$/;

function compileName(name: string, fail: (m: string) => never): { re: RegExp; scope: 'common' | 'model' | 'device'; codeName?: string } {
  if (!/^[A-Za-z0-9._{}:-]+$/.test(name)) fail(`"${name}" is not a plain file name pattern`);
  let scope: 'common' | 'model' | 'device' = 'common';
  let codeName: string | undefined;
  const parts = name.split(/(\{[A-Za-z]+(?::[a-z][a-z0-9]*)?\})/);
  const src = parts
    .map((p) => {
      if (p === '{mac}' || p === '{MAC}') {
        scope = 'device';
        return `(?<mac>[0-9a-fA-F]{12})`;
      }
      if (p === '{code}') {
        if (scope === 'common') scope = 'model';
        return '(?<code>[A-Za-z0-9-]+)';
      }
      const named = /^\{code:([a-z][a-z0-9]*)\}$/.exec(p);
      if (named) {
        if (codeName !== undefined) fail('only one {code:<name>} placeholder per file name');
        codeName = named[1];
        if (scope === 'common') scope = 'model';
        return '(?<named>[A-Za-z0-9._-]+?)';
      }
      if (/[{}:]/.test(p)) fail(`unknown placeholder ${p}`);
      return p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
  return { re: new RegExp(`^${src}$`), scope, codeName };
}

/** The family a model belongs to, if any. */
export function familyOf(vendor: VendorData, model: VendorModel | undefined): VendorFamily | undefined {
  return model?.family ? vendor.families?.[model.family] : undefined;
}

/** Whether a model asks for this file (files limited to some families are not asked by the others). */
export function fileFits(vendor: VendorData, spec: VendorFile, model: VendorModel | undefined): boolean {
  if (!spec.families) return true;
  return !!model?.family && spec.families.includes(model.family);
}

/** The template a file is rendered from for a model: its family's own, else the file's. */
export function templateFor(vendor: VendorData, spec: VendorFile, model: VendorModel | undefined): string {
  return familyOf(vendor, model)?.templates?.[spec.template] ?? spec.template;
}

/** The request name for a vendor file, given the device MAC and model code. */
export function fileNameFor(spec: VendorFile, mac?: Mac, code?: string, codes?: Record<string, string>): string {
  return spec.name
    .replace('{mac}', mac ?? '')
    .replace('{MAC}', (mac ?? '').toUpperCase())
    .replace('{code}', code ?? '')
    .replace(/\{code:([a-z][a-z0-9]*)\}/, (_, n: string) => codes?.[n] ?? '');
}

/**
 * The request name of a vendor file for this model, or undefined when the model has no such
 * file (the name needs a model code, or a named code, the model does not have).
 */
export function fileNameForModel(spec: VendorFile, mac: Mac | undefined, model: VendorModel): string | undefined {
  if (spec.name.includes('{code}') && !model.code) return undefined;
  const named = /\{code:([a-z][a-z0-9]*)\}/.exec(spec.name);
  if (named && !model.codes?.[named[1]]) return undefined;
  return fileNameFor(spec, mac, model.code, model.codes);
}
