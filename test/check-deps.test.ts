/** npm run check:deps holds the layers: it passes on the tree as it is and fails on a planted circle, an upward import or SQL outside the store. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from './support/paths.js';

/** A copy of what check:deps reads (src, scripts, vendors, the rules), with node_modules linked. */
function copyTree(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aps-deps-'));
  for (const p of ['src', 'scripts', 'vendors', '.dependency-cruiser.cjs', 'tsconfig.json', 'package.json']) fs.cpSync(path.join(ROOT, p), path.join(dir, p), { recursive: true });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

function check(dir: string) {
  const r = spawnSync(process.execPath, [path.join(dir, 'scripts/check-deps.mjs')], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

test('check:deps passes on the tree as it is', () => {
  const dir = copyTree();
  try {
    const r = check(dir);
    assert.is(r.status, 0, r.out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('check:deps fails when a store file imports app.ts (a circle and an upward import), or SQL leaves the store', () => {
  const dir = copyTree();
  try {
    fs.writeFileSync(path.join(dir, 'src/store/planted.ts'), "import { App } from '../app.js';\nexport const x = App;\n");
    fs.appendFileSync(path.join(dir, 'src/store/index.ts'), "\nimport { x } from './planted.js';\nexport const y = x;\n");
    fs.appendFileSync(path.join(dir, 'src/inventory/rules.ts'), "\nexport const q = (s: { db: { prepare(x: string): unknown } }) => s.db.prepare('SELECT 1');\n");
    const r = check(dir);
    assert.is.not(r.status, 0);
    assert.match(r.out, /no-circular/);
    assert.match(r.out, /no-upward-from-store: src\/store\/planted\.ts/, r.out);
    assert.match(r.out, /app-only-from-daemon/);
    assert.match(r.out, /sql-only-in-store: src\/inventory\/rules\.ts/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
