/**
 * apsctl import FILE|- : a list of MACs (or a CSV with a header) into the device list, all
 * or nothing. Shows what it understood first; asks for a missing model on a terminal.
 */
import { assignLine } from '../../inventory/lines.js';
import fs from 'node:fs';
import readline from 'node:readline/promises';
import { ApsError } from '../../errors.js';
import { macColon, type Mac } from '../../mac.js';
import { modelChoices, parseImportText, planImport, type ImportPlan, type PlannedRow } from '../../inventory/import.js';
import type { Store } from '../../store/index.js';
import type { Vendor, VendorRegistry } from '../../vendors/registry.js';
import { openStore, out, usage, type CliCommand, type Ctx } from '../context.js';
import { table } from '../table.js';

export const MAX_IMPORT_BYTES = 16 * 1024 * 1024;

function readInput(file: string): string {
  let buf: Buffer;
  try {
    if (file === '-') {
      buf = fs.readFileSync(0);
    } else {
      const st = fs.statSync(file);
      if (!st.isFile()) throw new ApsError('APS_ERR_USAGE', `${file} is not a regular file`, { file, expected: 'a text file, or - for standard input' });
      if (st.size > MAX_IMPORT_BYTES) throw new ApsError('APS_ERR_USAGE', `${file} is ${st.size} bytes, more than ${MAX_IMPORT_BYTES}`, { file });
      buf = fs.readFileSync(file);
    }
  } catch (e) {
    if (e instanceof ApsError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ApsError('APS_ERR_NOT_FOUND', `no file ${file}`, { file });
    throw new ApsError('APS_ERR_USAGE', `cannot read ${file === '-' ? 'standard input' : file}: ${code ?? (e as Error).message}`, { file });
  }
  if (buf.length > MAX_IMPORT_BYTES) throw new ApsError('APS_ERR_USAGE', `the input is more than ${MAX_IMPORT_BYTES} bytes`, { file });
  return buf.toString('utf8');
}

const STATUS_TEXT = { new: 'new', known: 'already known, left alone' } as const;

function rowJson(r: PlannedRow) {
  return {
    line: r.line, mac: r.mac, status: r.status, vendor: r.vendor?.id ?? null, vendorBy: r.vendorBy,
    model: r.model, modelBy: r.modelBy, tenant: r.tenant, template: r.template, label: r.label, extension: r.extension,
  };
}

function planTable(plan: ImportPlan): string {
  return table(
    ['LINE', 'MAC', 'VENDOR', 'MODEL', 'TENANT', 'TEMPLATE', 'LABEL', 'LINE 1', 'STATUS'],
    plan.rows.map((r) => [
      r.line, macColon(r.mac), r.vendor ? r.vendor.name + (r.vendorBy === 'template' ? ' (from template)' : '') : '-',
      r.model ?? '?', r.tenant, r.template ?? '-', r.label || '-', r.extension ?? '-', STATUS_TEXT[r.status],
    ]),
  );
}

/**
 * Asks for each row without a model; the answer must be a model of the row's vendor. Lines
 * typed (or pasted) ahead are queued, not lost: answers are read from the line iterator.
 */
async function askModels(rows: PlannedRow[], registry: VendorRegistry): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const lines = rl[Symbol.asyncIterator]();
  const last = new Map<string, string>(); // vendor → the last answer, offered for the next phone
  try {
    for (const r of rows) {
      const v = r.vendor as Vendor;
      for (let tries = 0; ; tries++) {
        if (tries >= 10) return false;
        const offer = last.get(v.id) ?? r.suggestedModel ?? '';
        rl.setPrompt(`${macColon(r.mac)} (line ${r.line}, ${v.name}): model? ${offer ? `[${offer}] ` : ''}`);
        rl.prompt();
        const next = await lines.next();
        if (next.done) return false; // input closed (Ctrl-D)
        let answer = String(next.value).trim();
        if (answer === '' && offer) answer = offer;
        if (answer === '?' || answer === '') {
          process.stderr.write(`${v.name} models: ${v.models.map((m) => m.id).join(' ')}\n`);
          continue;
        }
        const m = registry.model(v.id, answer);
        if (!m) {
          process.stderr.write(`${v.name} has no model "${answer}" (expected one of ${modelChoices(v)}; ? lists them all)\n`);
          continue;
        }
        r.model = m.id;
        r.modelBy = 'asked';
        last.set(v.id, m.id);
        break;
      }
    }
    return true;
  } finally {
    rl.close();
  }
}

/** Writes every new row in one transaction; re-checks what another apsctl may have changed. */
function commit(store: Store, rows: PlannedRow[], source: string): void {
  store.transaction(() => {
    for (const r of rows) {
      store.addDevice({
        mac: r.mac, tenant: r.tenant, vendor: r.vendor!.id, model: r.model!, template: r.template,
        state: r.extension ? 'provisioned' : 'unprovisioned', label: r.label, source: 'import',
      });
      if (r.extension) {
        try {
          assignLine(store, r.tenant, { mac: r.mac, idx: 1, extension: r.extension, label: '', cid_source: 'from', local_port: '', srtp: false });
        } catch (e) {
          if (e instanceof ApsError && e.code === 'APS_ERR_EXISTS') throw new ApsError('APS_ERR_EXISTS', `line ${r.line}: ${e.message}`, e.context);
          throw e;
        }
      }
    }
    store.event('import', null, `from=${source} added=${rows.length}`);
  });
}

async function runImport(ctx: Ctx, pos: string[], o: Record<string, string | boolean | undefined>): Promise<number> {
  if (pos.length !== 1) usage('import takes one file name, or - for standard input');
  const file = pos[0];
  const dryRun = o['dry-run'] === true;
  const templates = ((o.template as string | undefined) ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  for (const name of templates) {
    if (!ctx.config.templates.has(name)) {
      throw new ApsError('APS_ERR_NOT_FOUND', `no template "${name}"`, { key: '--template', expected: `one of ${[...ctx.config.templates.keys()].join(', ') || '(none: add templates.d/<name>.ini)'}` });
    }
  }
  const byVendor = new Map<string, string>();
  for (const name of templates) {
    const v = ctx.config.templates.get(name)!.vendor;
    if (byVendor.has(v)) usage(`--template names two templates of vendor ${v} (${byVendor.get(v)} and ${name}): give one per vendor`);
    byVendor.set(v, name);
  }
  const tenant = (o.tenant as string | undefined) ?? ctx.config.settings.discovery.tenant;
  if (o.tenant !== undefined && !ctx.config.tenants.has(tenant)) {
    throw new ApsError('APS_ERR_NOT_FOUND', `no tenant "${tenant}"`, { key: '--tenant', expected: `one of ${[...ctx.config.tenants.keys()].join(', ')} (tenants.d/<id>.ini)` });
  }
  const text = readInput(file);
  const parsed = parseImportText(text);
  const store = openStore(ctx);
  // a terminal to ask on: not when the list itself comes from standard input
  const willAsk = !dryRun && file !== '-' && process.stdin.isTTY === true && o.model === undefined;
  const plan = planImport(parsed, { tenant, templates, model: o.model as string | undefined, willAsk }, {
    config: ctx.config,
    registry: ctx.registry,
    known: (mac: Mac) => store.device(mac),
    extensionHolder: (t, e) => store.lineWithExtension(t, e),
  });
  if (!parsed.rows.length && !plan.errors.length) plan.errors.push({ line: 0, why: 'no MAC addresses in the input' });

  const report = (imported: number) => {
    if (ctx.json) out(JSON.stringify({ dryRun, imported, rows: plan.rows.map(rowJson), errors: plan.errors }, null, 2) + '\n');
  };
  const fresh = plan.rows.filter((r) => r.status === 'new');
  const known = plan.rows.filter((r) => r.status === 'known');

  if (plan.errors.length) {
    if (!ctx.json && plan.rows.length) out(planTable(plan));
    report(0);
    for (const e of plan.errors) process.stderr.write(e.line ? `line ${e.line}: ${e.why}\n` : `${e.why}\n`);
    process.stderr.write(`nothing imported: ${plan.errors.length} bad line${plan.errors.length === 1 ? '' : 's'} in ${file === '-' ? 'standard input' : file}\n`);
    return 1;
  }

  const toAsk = fresh.filter((r) => r.model === null);
  if (toAsk.length) {
    process.stderr.write(`${toAsk.length} phone${toAsk.length === 1 ? '' : 's'} without a model: which model is each? (? lists the models)\n`);
    if (!(await askModels(toAsk, ctx.registry))) {
      process.stderr.write('import cancelled: nothing imported\n');
      return 1;
    }
  }

  if (!ctx.json) out(planTable(plan));
  if (dryRun) {
    report(0);
    if (!ctx.json) out(`dry run: ${fresh.length} would be imported, ${known.length} already known; nothing written\n`);
    return 0;
  }
  if (fresh.length) commit(store, fresh, file === '-' ? 'stdin' : file);
  report(fresh.length);
  if (!ctx.json) {
    out(`imported ${fresh.length} device${fresh.length === 1 ? '' : 's'}`);
    const names = known.slice(0, 20).map((r) => macColon(r.mac)).join(', ') + (known.length > 20 ? ', … (see the table)' : '');
    out(known.length ? `; ${known.length} already known, left alone: ${names}\n` : '\n');
  }
  return 0;
}

export const commands: CliCommand[] = [
  {
    name: 'import',
    usage: 'import FILE|- [--tenant T] [--template X[,Y]] [--model M] [--dry-run]\n                          add the MACs of a list (one per line, any form) or of a CSV with a\n                          header mac,model,tenant,template,label,extension: all or nothing',
    options: { 'dry-run': { type: 'boolean' } },
    run: runImport,
  },
];
