#!/usr/bin/env node
// npm run check:deps: the layers of src/ (.dependency-cruiser.cjs), and the rules a module
// graph cannot show: SQL and the database handle only in src/store/, no vendor name in src/.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cruise = spawnSync(process.execPath, [path.join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs'), 'src', 'scripts', '--config', '.dependency-cruiser.cjs', '--output-type', 'err', '--no-progress'], { cwd: root, encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } });
process.stdout.write(cruise.stdout);
process.stderr.write(cruise.stderr);
let failed = cruise.status !== 0;

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}
const vendorNames = fs.existsSync(path.join(root, 'vendors'))
  ? fs.readdirSync(path.join(root, 'vendors')).flatMap((id) => {
      const f = path.join(root, 'vendors', id, 'vendor.json');
      if (!fs.existsSync(f)) return [];
      const v = JSON.parse(fs.readFileSync(f, 'utf8'));
      return [v.id, v.name].filter((n) => typeof n === 'string' && n.length >= 4);
    })
  : [];
const nameRe = vendorNames.length ? new RegExp(`\\b(${[...new Set(vendorNames)].map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|')})\\b`, 'i') : null;
for (const file of walk(path.join(root, 'src'))) {
  const rel = path.relative(root, file);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!rel.startsWith('src/store/') && /\.db\b\s*\.|\.prepare\(/.test(line)) {
      console.log(`  error sql-only-in-store: ${rel}:${i + 1}: the database is used outside src/store/`);
      failed = true;
    }
    const m = nameRe?.exec(line);
    if (m) {
      console.log(`  error no-vendor-in-src: ${rel}:${i + 1}: names the vendor "${m[1]}" (vendors are data: vendors/<id>/)`);
      failed = true;
    }
  });
}
if (failed) {
  console.log('check:deps failed');
  process.exit(1);
}
console.log('check:deps: layers hold, no circle, SQL only in src/store/, no vendor name in src/');
