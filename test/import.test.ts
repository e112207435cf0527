/**
 * apsctl import as an administrator uses it: a pasted MAC list in whatever form the labels
 * show, a CSV from a spreadsheet, a file with mistakes (all reported by line, nothing
 * imported), a dry run, phones already known, and the model question on a terminal.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { APSCTL, copyFixtureConfig, ctl } from './support/daemon.js';
import { which } from '../scripts/lib/netns.js';
import { parseImportText, splitCsvLine } from '../src/inventory/import.js';

type Cfg = ReturnType<typeof copyFixtureConfig>;
const made: Cfg[] = [];
function fresh(): Cfg & { file(name: string, text: string): string; run(...a: string[]): ReturnType<typeof ctl>; devices(): DeviceJson[] } {
  const c = copyFixtureConfig();
  made.push(c);
  return {
    ...c,
    file: (name, text) => {
      const p = path.join(c.dir, name);
      fs.writeFileSync(p, text);
      return p;
    },
    run: (...a) => ctl(c.configDir, ...a),
    devices: () => JSON.parse(ctl(c.configDir, 'device', 'list', '--json').stdout) as DeviceJson[],
  };
}
interface DeviceJson { mac: string; tenant: string; vendor: string; model: string; template: string | null; state: string; label: string; source: string; lines: { line: number; extension: string }[] }

test.after(() => {
  for (const c of made) fs.rmSync(c.dir, { recursive: true, force: true });
});

test('a MAC list in every common form, with comments and blank lines, is imported as unprovisioned phones', () => {
  const c = fresh();
  const f = c.file('macs.txt', [
    '# reception and first floor',
    '80:5e:c0:00:10:01',
    '80-5E-C0-00-10-02',
    '',
    '805e.c000.1003',
    '805EC0001004   # by the window',
    '  00:04:f2:00:10:05  ',
    '0004F2001006,',
  ].join('\r\n'));
  const r = c.run('import', f, '--tenant', 'acme', '--template', 'yealink-full,polycom-full');
  assert.is(r.status, 0, r.stderr);
  // the table of what was understood comes first
  assert.match(r.stdout, /^LINE +MAC +VENDOR +MODEL +TENANT +TEMPLATE +LABEL +LINE 1 +STATUS/);
  assert.match(r.stdout, /\n2 +80:5e:c0:00:10:01 +Yealink +T46S +acme +yealink-full +- +- +new/);
  assert.match(r.stdout, /\n8 +00:04:f2:00:10:06 +Polycom +VVX411 +acme +polycom-full +- +- +new/);
  assert.match(r.stdout, /imported 6 devices\n$/);
  const d = c.devices();
  assert.equal(d.map((x) => x.mac), ['0004f2001005', '0004f2001006', '805ec0001001', '805ec0001002', '805ec0001003', '805ec0001004']);
  assert.ok(d.every((x) => x.state === 'unprovisioned' && x.source === 'import' && x.tenant === 'acme'));
  assert.equal([...new Set(d.map((x) => `${x.vendor}/${x.model}/${x.template}`))], ['polycom/VVX411/polycom-full', 'yealink/T46S/yealink-full']);
});

test('a CSV with a header and quoted fields sets model, label and line 1 per phone', () => {
  const c = fresh();
  const f = c.file('phones.csv', [
    'MAC Address,Model,Tenant,Template,Label,Extension',
    '80:5e:c0:00:20:01,t48s,acme,yealink-full,"Reception, desk 1",101',
    '"80-5e-c0-00-20-02",,acme,yealink-full,"Say ""hello""",',
    '00:04:f2:00:20:03,VVX 400,acme,polycom-full,Lab,102',
  ].join('\n'));
  const r = c.run('import', f);
  assert.is(r.status, 0, r.stderr);
  const d = new Map(c.devices().map((x) => [x.mac, x]));
  const a = d.get('805ec0002001')!;
  assert.equal([a.model, a.label, a.state, a.lines], ['T48S', 'Reception, desk 1', 'provisioned', [{ ...a.lines[0], line: 1, extension: '101' }]]);
  const b = d.get('805ec0002002')!;
  assert.equal([b.model, b.label, b.state, b.lines.length], ['T46S', 'Say "hello"', 'unprovisioned', 0]);
  const p = d.get('0004f2002003')!;
  assert.equal([p.vendor, p.model, p.lines[0]?.extension], ['polycom', 'VVX400', '102']);
});

test('a semicolon CSV (spreadsheets in many locales) is read the same way, from standard input too', () => {
  const c = fresh();
  const r = spawnSync(process.execPath, [APSCTL, '--config', c.configDir, 'import', '-', '--tenant', 'acme', '--json'], {
    input: 'mac;model;label\n805ec0002101;T46S;"Hall; east"\n', encoding: 'utf8', timeout: 20_000,
  });
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { imported: number; rows: { line: number; mac: string; model: string; label: string; status: string }[] };
  assert.is(j.imported, 1);
  assert.equal(j.rows.map((x) => [x.line, x.mac, x.model, x.label, x.status]), [[2, '805ec0002101', 'T46S', 'Hall; east', 'new']]);
  assert.is(c.devices()[0].label, 'Hall; east');
});

test('every bad line is reported with its number and why, and nothing at all is imported', () => {
  const c = fresh();
  assert.is(c.run('device', 'add', '805ec0003099', '--tenant', 'acme', '--template', 'yealink-full').status, 0);
  assert.is(c.run('line', 'set', '805ec0003099', '1', '--extension', '103').status, 0);
  const f = c.file('bad.csv', [
    'mac,model,tenant,template,extension',
    '80:5e:c0:00:30:01,,acme,yealink-full,101', // fine
    '80:5e:c0:00:30:02,T99X,acme,yealink-full,', // 3: no such model
    '80:5e:c0:00:30:03,,nobody,yealink-full,', // 4: no such tenant
    '00:04:f2:00:30:04,,acme,yealink-full,', // 5: Polycom OUI, Yealink template
    '00:1b:21:00:30:05,,acme,,', // 6: not a phone OUI, no template
    '80:5e:c0:00:30', // 7: short MAC
    '80:5e:c0:00:30:08,,acme,yealink-full,999', // 8: no such extension
    '80:5e:c0:00:30:09,,acme,yealink-full,101', // 9: extension given twice in the file
    '80:5e:c0:00:30:10,,acme,yealink-full,103', // 10: extension held by another phone
    '80:5e:c0:00:30:01,,acme,yealink-full,', // 11: MAC twice
    '80:5e:c0:00:30:12,"T46S,acme', // 12: unclosed quote
    '80:5e:c0:00:30:13,,acme,nope,', // 13: no such template
    '80:5e:c0:00:30:14,,acme,aastra-full,', // 14: template of another vendor
    '80:5e:c0:00:30:15,,acme,yealink-full,,,extra', // 15: too many fields
  ].join('\n'));
  const r = c.run('import', f);
  assert.is(r.status, 1);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.map((l) => /^line (\d+):/.exec(l)?.[1]).filter(Boolean), ['3', '4', '5', '6', '7', '8', '9', '10', '11', '12', '13', '14', '15']);
  assert.match(r.stderr, /line 3: Yealink has no model "T99X" \(expected one of T18, /);
  assert.match(r.stderr, /line 4: no tenant "nobody" \(expected one of acme, default\)/);
  assert.match(r.stderr, /line 5: template "yealink-full" is for Yealink phones, but the OUI 00:04:f2 belongs to Polycom/);
  assert.match(r.stderr, /line 6: the OUI 00:1b:21 is not one of a supported vendor \(.*\): give it a template/);
  assert.match(r.stderr, /line 7: "80:5e:c0:00:30" is not a MAC address/);
  assert.match(r.stderr, /line 8: extension 999 does not exist in tenant acme/);
  assert.match(r.stderr, /line 9: extension 101 is also given on line 2/);
  assert.match(r.stderr, /line 10: extension 103 is already line 1 of 80:5e:c0:00:30:99/);
  assert.match(r.stderr, /line 11: 80:5e:c0:00:30:01 is also on line 2/);
  assert.match(r.stderr, /line 12: a quote opened in column 19 is not closed on this line/);
  assert.match(r.stderr, /line 13: no template "nope"/);
  assert.match(r.stderr, /line 14: template "aastra-full" is for Aastra.* phones, but the OUI 80:5e:c0 belongs to Yealink/);
  assert.match(r.stderr, /line 15: 7 fields, but the header names 5 columns/);
  assert.match(r.stderr, /nothing imported: 13 bad lines in /);
  assert.equal(c.devices().map((d) => d.mac), ['805ec0003099']);
});

test('a plain list without a model, template or terminal is refused with what to add', () => {
  const c = fresh();
  const r = c.run('import', c.file('m.txt', '805ec0004001\n'), '--tenant', 'acme');
  assert.is(r.status, 1);
  assert.match(r.stderr, /line 1: no model for this Yealink phone: add a model column, give --model, or a template of Yealink/);
  const ok = c.run('import', c.file('m.txt', '805ec0004001\n'), '--tenant', 'acme', '--model', 'T54W');
  assert.is(ok.status, 0, ok.stderr);
  assert.equal([c.devices()[0].model, c.devices()[0].template], ['T54W', null]);
});

test('a MAC of an unknown OUI takes its vendor from the template, and the table says so', () => {
  const c = fresh();
  const r = c.run('import', c.file('m.txt', '02aa00000001\n'), '--tenant', 'acme', '--template', 'snom-full');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /02:aa:00:00:00:01 +Snom \(from template\) +D735/);
});

test('--dry-run shows the table and writes nothing', () => {
  const c = fresh();
  const f = c.file('m.txt', '805ec0005001\n805ec0005002\n');
  const r = c.run('import', f, '--tenant', 'acme', '--template', 'yealink-full', '--dry-run');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /80:5e:c0:00:50:02 +Yealink +T46S +acme +yealink-full .* new/);
  assert.match(r.stdout, /dry run: 2 would be imported, 0 already known; nothing written/);
  assert.is(c.run('device', 'list').stdout, 'no devices\n');
});

test('MACs already known are listed as left alone, unchanged, and are not an error', () => {
  const c = fresh();
  assert.is(c.run('device', 'add', '805ec0006001', '--tenant', 'acme', '--template', 'yealink-full', '--model', 'T48S', '--label', 'Boss').status, 0);
  const r = c.run('import', c.file('m.txt', '80:5e:c0:00:60:01\n80:5e:c0:00:60:02\n'), '--tenant', 'acme', '--template', 'yealink-full', '--model', 'T42S');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /1 +80:5e:c0:00:60:01 +Yealink +T48S +acme +yealink-full +Boss +- +already known, left alone/);
  assert.match(r.stdout, /imported 1 device; 1 already known, left alone: 80:5e:c0:00:60:01\n/);
  const d = new Map(c.devices().map((x) => [x.mac, x]));
  // added without a line: the unprovisioned stage, left as it was
  assert.equal([d.get('805ec0006001')!.model, d.get('805ec0006001')!.label, d.get('805ec0006001')!.state], ['T48S', 'Boss', 'unprovisioned']);
  assert.is(d.get('805ec0006002')!.model, 'T42S');
});

const script = which('script');
if (!script) console.log('import model question SKIPPED: `script` (util-linux) is not installed');
(script ? test : test.skip)('on a terminal the CLI asks the model of each phone the file does not name, and re-asks a wrong answer', async () => {
  const c = fresh();
  const f = c.file('m.txt', '805ec0007001\n805ec0007002\n0004f2007003\n');
  const cmd = [process.execPath, APSCTL, '--config', c.configDir, 'import', f, '--tenant', 'acme'].map((x) => `'${x}'`).join(' ');
  // apsctl runs on the pseudo-terminal `script` makes; our pipe is what the person types.
  // Answers: a wrong model, then t48s; Enter takes the offered T48S; "?" lists Polycom's; vvx 400.
  // The pipe stays open until apsctl is done (a closed input would be Ctrl-D: cancel).
  const child = spawn(script!, ['-qec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  child.stdin.write('T99\nt48s\n\n?\nvvx 400\n');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  clearTimeout(timer);
  child.stdin.destroy();
  assert.is(status, 0, output);
  assert.match(output, /3 phones without a model: which model is each\?/);
  assert.match(output, /80:5e:c0:00:70:01 \(line 1, Yealink\): model\?/);
  assert.match(output, /Yealink has no model "T99"/);
  assert.match(output, /80:5e:c0:00:70:02 \(line 2, Yealink\): model\? \[T48S\]/);
  assert.match(output, /Polycom models: SPIP301 /);
  assert.match(output, /imported 3 devices/);
  const d = new Map(c.devices().map((x) => [x.mac, x.model]));
  assert.equal([d.get('805ec0007001'), d.get('805ec0007002'), d.get('0004f2007003')], ['T48S', 'T48S', 'VVX400']);
});

test('the parser keeps line numbers, reads quotes like a spreadsheet and finds the header', () => {
  assert.equal(splitCsvLine('a, "b, c" ,"d ""e""",', ','), { fields: ['a', 'b, c', 'd "e"', ''] });
  assert.equal(splitCsvLine('a,"b"x', ','), { error: 'text after a closing quote in column 6' });
  assert.equal(splitCsvLine('a,b"c', ','), { error: 'a quote inside an unquoted field in column 4' });
  const p = parseImportText('\uFEFFmac\tlabel\n\n# none\n805ec0008001\tx\n');
  assert.equal([p.columns, p.delimiter, p.rows], [['mac', 'label'], '\t', [{ line: 4, mac: '805ec0008001', model: undefined, tenant: undefined, template: undefined, label: 'x', extension: undefined }]]);
  const q = parseImportText('805ec0008001,T46S\n');
  assert.match(q.errors[0].why, /several fields but no header line/);
  const h = parseImportText('mac,colour\n805ec0008001,red\n');
  assert.equal(h.errors, [{ line: 1, why: 'unknown column "colour" (expected mac, model, tenant, template, label, extension)' }]);
});

test.run();
