/**
 * MAC list import (apsctl import): text → rows, and rows → a plan checked against the
 * configuration, the vendors and the state database. Pure: no I/O, no questions asked; the
 * CLI reads the file, asks for missing models on a terminal and writes the plan in one
 * transaction.
 *
 * Accepted input:
 * - one MAC per line in any common form (80:5e:c0:12:34:56, 80-5E-C0-12-34-56,
 *   805e.c012.3456, 805EC0123456); blank lines and lines starting with # are skipped, and a
 *   "# …" after a MAC is a comment;
 * - or CSV with a header line naming its columns: mac (required), model, tenant, template,
 *   label, extension, in any order. The delimiter is the one the header uses: comma,
 *   semicolon (spreadsheets in many locales) or tab. Fields may be quoted ("a, ""b""");
 *   a quoted field may not span lines.
 * Every problem is reported with its line number; nothing is dropped silently.
 */
import { templateFits } from './rules.js';
import type { Config, Template } from '../config/index.js';
import { macColon, parseMac, type Mac } from '../mac.js';
import type { Vendor, VendorRegistry } from '../vendors/registry.js';

export const IMPORT_COLUMNS = ['mac', 'model', 'tenant', 'template', 'label', 'extension'] as const;
export type ImportColumn = (typeof IMPORT_COLUMNS)[number];

/** Header spellings read as our columns (compared without case, spaces, "_" and "-"). */
const COLUMN_ALIASES: Record<string, ImportColumn> = {
  mac: 'mac', macaddress: 'mac', macaddr: 'mac',
  model: 'model',
  tenant: 'tenant',
  template: 'template',
  label: 'label',
  extension: 'extension', ext: 'extension', exten: 'extension',
};

export interface ImportRow {
  /** 1-based line number in the input */
  line: number;
  mac: Mac;
  model?: string;
  tenant?: string;
  template?: string;
  label?: string;
  extension?: string;
}

export interface LineError {
  line: number;
  why: string;
}

export interface ParsedImport {
  rows: ImportRow[];
  errors: LineError[];
  /** the columns of the header line, or null for a plain list of MACs */
  columns: ImportColumn[] | null;
  delimiter: ',' | ';' | '\t' | null;
}

export const MAX_LABEL = 64;

/**
 * Splits one CSV line at `delim`, honouring double quotes ("" inside quotes is one quote).
 * Returns the fields (untrimmed) or the reason the line cannot be read.
 */
export function splitCsvLine(line: string, delim: string): { fields: string[] } | { error: string } {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    // one field starting at i
    let j = i;
    while (j < line.length && (line[j] === ' ' || line[j] === '\t') && line[j] !== delim) j++;
    if (line[j] === '"') {
      let val = '';
      let k = j + 1;
      for (;;) {
        if (k >= line.length) return { error: `a quote opened in column ${j + 1} is not closed on this line` };
        if (line[k] === '"') {
          if (line[k + 1] === '"') {
            val += '"';
            k += 2;
            continue;
          }
          k++;
          break;
        }
        val += line[k++];
      }
      while (k < line.length && line[k] !== delim && (line[k] === ' ' || line[k] === '\t')) k++;
      if (k < line.length && line[k] !== delim) return { error: `text after a closing quote in column ${k + 1}` };
      fields.push(val);
      if (k >= line.length) return { fields };
      i = k + 1;
      continue;
    }
    const end = line.indexOf(delim, i);
    const raw = end < 0 ? line.slice(i) : line.slice(i, end);
    if (raw.includes('"')) return { error: `a quote inside an unquoted field in column ${i + raw.indexOf('"') + 1}` };
    fields.push(raw);
    if (end < 0) return { fields };
    i = end + 1;
  }
}

function normalizeColumn(name: string): string {
  return name.trim().toLowerCase().replace(/[\s_-]/g, '');
}

function delimiterOf(line: string): ',' | ';' | '\t' | null {
  for (const d of [',', ';', '\t'] as const) if (line.includes(d)) return d;
  return null;
}

/** Is this (first significant) line a header? Only when it names the mac column. */
function headerColumns(line: string): { delim: ',' | ';' | '\t' | null; names: string[] } | null {
  const delim = delimiterOf(line);
  const split = delim ? splitCsvLine(line, delim) : { fields: [line] };
  if (!('fields' in split)) return null;
  const names = split.fields.map((f) => f.trim());
  if (!names.some((n) => COLUMN_ALIASES[normalizeColumn(n)] === 'mac')) return null;
  return { delim, names };
}

const macHint = 'a MAC address in one of the forms 80:5e:c0:12:34:56, 80-5E-C0-12-34-56, 805e.c012.3456, 805EC0123456';

/** Reads an import file's text. Never throws: every problem is a LineError. */
export function parseImportText(text: string): ParsedImport {
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/);
  const rows: ImportRow[] = [];
  const errors: LineError[] = [];
  let columns: ImportColumn[] | null = null;
  let delimiter: ParsedImport['delimiter'] = null;
  let sawFirst = false;
  const seen = new Map<string, number>();

  const addRow = (row: ImportRow) => {
    const prev = seen.get(row.mac);
    if (prev !== undefined) {
      errors.push({ line: row.line, why: `${macColon(row.mac)} is also on line ${prev}` });
      return;
    }
    seen.set(row.mac, row.line);
    rows.push(row);
  };

  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    const raw = lines[n];
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(raw)) {
      errors.push({ line: lineNo, why: 'control characters: this does not look like a text file' });
      sawFirst = true;
      continue;
    }

    if (!sawFirst) {
      sawFirst = true;
      const h = parseMac(trimmed) ? null : headerColumns(trimmed);
      if (h) {
        delimiter = h.delim;
        const cols: ImportColumn[] = [];
        for (const name of h.names) {
          const col = COLUMN_ALIASES[normalizeColumn(name)];
          if (!col) {
            errors.push({ line: lineNo, why: `unknown column "${name}" (expected ${IMPORT_COLUMNS.join(', ')})` });
          } else if (cols.includes(col)) {
            errors.push({ line: lineNo, why: `column "${col}" is named twice` });
          }
          cols.push(col ?? ('?' as ImportColumn));
        }
        // with a bad header the data lines are still read, so every problem shows at once
        columns = cols;
        continue;
      }
    }

    if (columns) {
      const split = delimiter ? splitCsvLine(raw, delimiter) : { fields: [raw] };
      if ('error' in split) {
        errors.push({ line: lineNo, why: split.error });
        continue;
      }
      const fields = split.fields.map((f) => f.trim());
      while (fields.length > columns.length && fields[fields.length - 1] === '') fields.pop();
      if (fields.length > columns.length) {
        errors.push({ line: lineNo, why: `${fields.length} fields, but the header names ${columns.length} columns` });
        continue;
      }
      const rec: Partial<Record<ImportColumn, string>> = {};
      columns.forEach((c, i) => {
        const v = fields[i] ?? '';
        if (v !== '') rec[c] = v;
      });
      if (!rec.mac) {
        errors.push({ line: lineNo, why: 'no MAC address in the mac column' });
        continue;
      }
      const mac = parseMac(rec.mac);
      if (!mac) {
        errors.push({ line: lineNo, why: `"${rec.mac}" is not ${macHint}` });
        continue;
      }
      if (rec.label !== undefined && rec.label.length > MAX_LABEL) {
        errors.push({ line: lineNo, why: `the label is ${rec.label.length} characters long (at most ${MAX_LABEL})` });
        continue;
      }
      if (rec.extension !== undefined && !/^[A-Za-z0-9_.+*#-]{1,32}$/.test(rec.extension)) {
        errors.push({ line: lineNo, why: `"${rec.extension}" is not an extension number` });
        continue;
      }
      addRow({ line: lineNo, mac, model: rec.model, tenant: rec.tenant, template: rec.template, label: rec.label, extension: rec.extension });
      continue;
    }

    // a plain list: one MAC per line, an optional "# comment" after it
    const value = trimmed.replace(/\s+#.*$/, '').trim();
    const mac = parseMac(value);
    if (mac) {
      addRow({ line: lineNo, mac });
      continue;
    }
    const d = delimiterOf(value);
    const parts = d ? value.split(d).map((x) => x.trim().replace(/^"(.*)"$/, '$1')) : [];
    const first = parts.length ? parseMac(parts[0]) : null;
    if (first && parts.slice(1).every((x) => x === '')) {
      addRow({ line: lineNo, mac: first }); // a one-column spreadsheet export: "805ec0123456,"
    } else if (first) {
      errors.push({ line: lineNo, why: `several fields but no header line: start the file with a header such as mac${d}model${d}tenant${d}template${d}label${d}extension` });
    } else {
      errors.push({ line: lineNo, why: `"${value.length > 40 ? value.slice(0, 40) + '…' : value}" is not ${macHint}` });
    }
  }
  return { rows, errors, columns, delimiter };
}

// ------------------------------------------------------------------------------ the plan

export interface ImportDefaults {
  /** --tenant, else [discovery] tenant */
  tenant: string;
  /** --template (a comma list: at most one per vendor) */
  templates: string[];
  /** --model */
  model?: string;
  /** true when the CLI will ask for a missing model on a terminal */
  willAsk: boolean;
}

export interface PlanDeps {
  config: Config;
  registry: VendorRegistry;
  /** the device row of a MAC already in the database, if any */
  known(mac: Mac): { tenant: string; vendor: string; model: string; template: string | null; label: string } | undefined;
  /** who already holds this extension in this tenant */
  extensionHolder(tenant: string, extension: string): { mac: Mac; idx: number } | undefined;
}

export interface PlannedRow {
  line: number;
  mac: Mac;
  status: 'new' | 'known';
  vendor: Vendor | null;
  /** how the vendor was recognised */
  vendorBy: 'oui' | 'template' | null;
  /** canonical model id; null = still to be asked */
  model: string | null;
  modelBy: 'file' | 'flag' | 'template' | 'asked' | null;
  /** the answer offered when asking (the template's model) */
  suggestedModel: string | null;
  tenant: string;
  template: string | null;
  label: string;
  extension: string | null;
}

export interface ImportPlan {
  rows: PlannedRow[];
  errors: LineError[];
}

function listOf(xs: string[], max = 12): string {
  return xs.length > max ? `${xs.slice(0, max).join(', ')}, … (${xs.length} in all: apsctl vendor list)` : xs.join(', ');
}

/** The models a vendor has, for an error message. */
export function modelChoices(v: Vendor): string {
  return listOf(v.models.map((m) => m.id));
}


/**
 * Checks every row against the configuration, the vendors and the database. A row of an
 * already-known MAC is kept with status "known" (left alone, not an error).
 */
export function planImport(parsed: ParsedImport, defaults: ImportDefaults, deps: PlanDeps): ImportPlan {
  const { config, registry } = deps;
  const errors: LineError[] = [...parsed.errors];
  const rows: PlannedRow[] = [];
  const extInFile = new Map<string, number>();
  const defaultTemplates = defaults.templates.map((n) => config.templates.get(n)).filter((t): t is Template => !!t);

  for (const r of parsed.rows) {
    const fail = (why: string) => errors.push({ line: r.line, why });
    const tenant = r.tenant ?? defaults.tenant;
    const known = deps.known(r.mac);
    if (known) {
      rows.push({
        line: r.line, mac: r.mac, status: 'known', vendor: registry.get(known.vendor) ?? null, vendorBy: null,
        model: known.model, modelBy: null, suggestedModel: null, tenant: known.tenant, template: known.template, label: known.label, extension: null,
      });
      continue;
    }
    if (!config.tenants.has(tenant)) {
      fail(`no tenant "${tenant}" (expected one of ${[...config.tenants.keys()].join(', ')})`);
      continue;
    }
    const ouiVendor = registry.vendorOfMac(r.mac) ?? null;
    const oui = macColon(r.mac).slice(0, 8);

    // the template: the row's own, else the --template of this vendor
    let tpl: Template | undefined;
    if (r.template) {
      tpl = config.templates.get(r.template);
      if (!tpl) {
        fail(`no template "${r.template}" (expected one of ${listOf([...config.templates.keys()]) || '(none: add templates.d/<name>.ini)'})`);
        continue;
      }
    } else if (defaultTemplates.length) {
      tpl = ouiVendor ? defaultTemplates.find((t) => t.vendor === ouiVendor.id) : defaultTemplates.length === 1 ? defaultTemplates[0] : undefined;
    }
    if (tpl && !templateFits(tpl, tenant)) {
      fail(`template "${tpl.name}" belongs to tenant ${tpl.tenant}, not ${tenant} (expected a global template or one of this tenant)`);
      continue;
    }
    const tplVendor = tpl ? registry.get(tpl.vendor) ?? null : null;
    if (ouiVendor && tplVendor && ouiVendor.id !== tplVendor.id) {
      fail(`template "${tpl!.name}" is for ${tplVendor.name} phones, but the OUI ${oui} belongs to ${ouiVendor.name}`);
      continue;
    }
    const vendor = ouiVendor ?? tplVendor;
    if (!vendor) {
      const why = defaultTemplates.length > 1 ? 'several --template given, so it is not clear which applies' : 'give it a template (template column or --template) to say which vendor it is';
      fail(`the OUI ${oui} is not one of a supported vendor (${registry.list().map((v) => v.name).join(', ')}): ${why}`);
      continue;
    }

    // the model: the file's, else --model, else asked (terminal), else the template's
    let model: string | null = null;
    let modelBy: PlannedRow['modelBy'] = null;
    const wanted = r.model ?? defaults.model;
    if (wanted !== undefined) {
      const m = registry.model(vendor.id, wanted);
      if (!m) {
        fail(`${vendor.name} has no model "${wanted}" (expected one of ${modelChoices(vendor)})`);
        continue;
      }
      model = m.id;
      modelBy = r.model !== undefined ? 'file' : 'flag';
    }
    const suggested = tpl && tplVendor?.id === vendor.id ? registry.model(vendor.id, tpl.model)?.id ?? null : null;
    if (!model && !defaults.willAsk) {
      if (!suggested) {
        fail(`no model for this ${vendor.name} phone: add a model column, give --model, or a template of ${vendor.name}`);
        continue;
      }
      model = suggested;
      modelBy = 'template';
    }

    // line 1's extension
    let extension: string | null = null;
    if (r.extension !== undefined) {
      const ext = config.extensions.get(`${tenant}/${r.extension}`);
      if (!ext) {
        fail(`extension ${r.extension} does not exist in tenant ${tenant} (expected an [<number>] section with tenant = ${tenant} in extensions.d/*.ini)`);
        continue;
      }
      const holder = deps.extensionHolder(tenant, r.extension);
      if (holder) {
        fail(`extension ${r.extension} is already line ${holder.idx} of ${macColon(holder.mac)}`);
        continue;
      }
      const prev = extInFile.get(`${tenant}/${r.extension}`);
      if (prev !== undefined) {
        fail(`extension ${r.extension} is also given on line ${prev}`);
        continue;
      }
      extInFile.set(`${tenant}/${r.extension}`, r.line);
      extension = r.extension;
    }

    rows.push({
      line: r.line, mac: r.mac, status: 'new', vendor, vendorBy: ouiVendor ? 'oui' : 'template',
      model, modelBy, suggestedModel: suggested, tenant, template: tpl?.name ?? null, label: r.label ?? '', extension,
    });
  }
  errors.sort((a, b) => a.line - b.line);
  rows.sort((a, b) => a.line - b.line);
  return { rows, errors };
}
