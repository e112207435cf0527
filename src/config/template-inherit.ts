/**
 * Templates inherit: `[template] extends = NAME` takes every key of templates.d/NAME.ini (and
 * of its parent, and so on); the child's keys win, [template] vendor and model included unless
 * the child sets them. The result is one ini file whose every key still knows the file and
 * line it came from, so an error names the place to fix and `apsctl template show` prints
 * where each effective key comes from. A circle or a missing parent is an error with file:line.
 */
import path from 'node:path';
import { ApsError } from '../errors.js';
import type { IniFile } from './ini-file.js';

/** Where an effective key of a template comes from. */
export interface KeySource {
  file: string;
  line: number;
}

export interface InheritedIni extends IniFile {
  /** `[section]key` → the file and line it comes from */
  sources: Map<string, KeySource>;
  /** the chain of templates, the child first */
  chain: string[];
}

const nameOf = (f: IniFile) => path.basename(f.file, '.ini');

/** Resolves `extends` for every template file (by template name = file name without .ini). */
export function inheritTemplates(files: IniFile[]): Map<string, InheritedIni> {
  const byName = new Map(files.map((f) => [nameOf(f), f]));
  const done = new Map<string, InheritedIni>();
  const resolve = (f: IniFile, stack: string[]): InheritedIni => {
    const name = nameOf(f);
    const hit = done.get(name);
    if (hit) return hit;
    const parentName = f.sections.get('template')?.get('extends');
    let merged: InheritedIni;
    if (!parentName) {
      merged = own(f);
    } else {
      const parent = byName.get(parentName);
      if (!parent) {
        throw f.error('template', 'extends', `no template "${parentName}" to extend`, `one of ${[...byName.keys()].filter((n) => n !== name).join(', ') || '(no other template)'}`);
      }
      if (stack.includes(parentName)) {
        throw f.error('template', 'extends', `templates extend each other in a circle: ${[...stack, name, parentName].slice(stack.indexOf(parentName)).join(' → ')}`, 'a chain that ends in a template without extends');
      }
      merged = overlay(resolve(parent, [...stack, name]), f);
    }
    done.set(name, merged);
    return merged;
  };
  for (const f of files) resolve(f, []);
  return done;
}

function own(f: IniFile): InheritedIni {
  const sources = new Map<string, KeySource>();
  for (const [sec, keys] of f.sections) for (const k of keys.keys()) sources.set(`[${sec}]${k}`, { file: f.file, line: f.lineOf(sec, k) });
  return { ...f, sources, chain: [nameOf(f)] };
}

/** The parent's keys with the child's on top; `extends` itself is the child's own. */
function overlay(parent: InheritedIni, child: IniFile): InheritedIni {
  const sections = new Map<string, Map<string, string>>();
  const sources = new Map(parent.sources);
  for (const [sec, keys] of parent.sections) sections.set(sec, new Map(keys));
  for (const [sec, keys] of child.sections) {
    const into = sections.get(sec) ?? new Map<string, string>();
    for (const [k, v] of keys) {
      into.set(k, v);
      sources.set(`[${sec}]${k}`, { file: child.file, line: child.lineOf(sec, k) });
    }
    sections.set(sec, into);
  }
  // the child is the template: its name, its file; a key it did not set is found in its parent's file
  const where = (sec: string, key?: string): KeySource => sources.get(key === undefined ? `[${sec}]` : `[${sec}]${key}`) ?? { file: child.file, line: child.lineOf(sec, key) };
  return {
    file: child.file,
    sections,
    sources,
    chain: [nameOf(child), ...parent.chain],
    lineOf: (sec, key) => where(sec, key).line,
    error: (sec, key, message, expected) => {
      const w = key === undefined ? { file: child.file, line: child.lineOf(sec) } : where(sec, key);
      return new ApsError('APS_ERR_CONFIG', message, {
        file: w.file,
        line: w.line || undefined,
        key: key === undefined ? `[${sec}]` : `[${sec}] ${key}`,
        expected,
      });
    },
  };
}
