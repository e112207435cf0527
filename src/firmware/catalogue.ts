/**
 * The firmware catalogue: images copied into firmware_dir (atomically: a temporary file in the
 * same folder, fsync, rename, fsync of the folder) and recorded with vendor, models, version,
 * size and sha256; removal refused while a template, a rollout or an override uses the image.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { Config } from '../config/index.js';
import { ApsError } from '../errors.js';
import { FirmwareStore, type FirmwareImageRow } from '../store/firmware.js';
import type { Store } from '../store/index.js';
import type { VendorRegistry } from '../vendors/registry.js';
import { chooseImage } from './select.js';

export interface CatalogueDeps {
  store: Store;
  registry: VendorRegistry;
  config: Config;
}

const NAME_RE = /^[A-Za-z0-9._+-]+$/;

async function sha256Of(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  await pipeline(fs.createReadStream(file), async function* (src) {
    for await (const chunk of src) h.update(chunk as Buffer);
  });
  return h.digest('hex');
}

/** Copies `src` to `dest` through a temporary file beside it; returns size and sha256. Never leaves a partial `dest`. */
async function atomicCopy(src: string, dest: string): Promise<{ size: number; sha256: string }> {
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.${process.pid}.tmp`);
  const h = crypto.createHash('sha256');
  let size = 0;
  const hash = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    await pipeline(fs.createReadStream(src), hash, fs.createWriteStream('', { fd, autoClose: false }));
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, dest);
  const dfd = fs.openSync(path.dirname(dest), 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
  return { size, sha256: h.digest('hex') };
}

export async function addImage(deps: CatalogueDeps, opts: { file: string; vendor: string; models: string[]; version: string; name?: string }): Promise<FirmwareImageRow & { copied: boolean }> {
  const vendor = deps.registry.get(opts.vendor);
  if (!vendor) throw new ApsError('APS_ERR_NOT_FOUND', `no vendor "${opts.vendor}"`, { key: '--vendor', expected: `one of ${deps.registry.list().map((v) => v.id).join(', ')}` });
  if (!opts.models.length) throw new ApsError('APS_ERR_USAGE', 'firmware add needs --models M[,M…]', { key: '--models' });
  const models = opts.models.map((m) => {
    const vm = deps.registry.model(vendor.id, m);
    if (!vm) throw new ApsError('APS_ERR_NOT_FOUND', `${vendor.name} has no model "${m}"`, { key: '--models', expected: `some of ${vendor.models.map((x) => x.id).join(', ')}` });
    return vm.id;
  });
  if (!/^[A-Za-z0-9._+-]+$/.test(opts.version)) throw new ApsError('APS_ERR_USAGE', `"${opts.version}" is not a version`, { key: '--version', expected: 'letters, digits and . _ + -, e.g. 66.86.0.15' });
  const name = opts.name ?? path.basename(opts.file);
  if (!NAME_RE.test(name)) throw new ApsError('APS_ERR_USAGE', `"${name}" is not a plain file name`, { key: 'FILE', expected: 'letters, digits and . _ + -' });
  let st: fs.Stats;
  try {
    st = fs.statSync(opts.file);
  } catch (e) {
    throw new ApsError('APS_ERR_NOT_FOUND', `cannot read ${opts.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: opts.file });
  }
  if (!st.isFile()) throw new ApsError('APS_ERR_USAGE', `${opts.file} is not a file`, { file: opts.file });
  const fw = new FirmwareStore(deps.store);
  const dir = deps.config.settings.server.firmwareDir;
  fs.mkdirSync(dir, { recursive: true });
  const dest = path.join(dir, name);
  const known = fw.image(name);
  const srcSha = await sha256Of(opts.file);
  if (fs.existsSync(dest)) {
    const destSha = known?.sha256 ?? (await sha256Of(dest));
    if (destSha !== srcSha) throw new ApsError('APS_ERR_FIRMWARE', `${dest} exists with other bytes (sha256 ${destSha.slice(0, 16)}…, the new file ${srcSha.slice(0, 16)}…)`, { file: dest, expected: 'another file name for another image, or apsctl firmware remove first' });
    if (known) {
      if (known.vendor !== vendor.id || known.version !== opts.version || known.models !== models.join(',')) {
        throw new ApsError('APS_ERR_FIRMWARE', `${name} is in the catalogue already as ${known.vendor} ${known.models} version ${known.version}`, { key: name, expected: 'apsctl firmware remove first to record it otherwise' });
      }
      return { ...known, copied: false };
    }
  }
  const dup = fw.images().find((i) => i.vendor === vendor.id && i.version === opts.version && i.models.split(',').some((m) => models.includes(m)));
  if (dup) throw new ApsError('APS_ERR_FIRMWARE', `${dup.file} is already ${vendor.name} version ${opts.version} for ${dup.models}`, { key: '--models', expected: 'one image per vendor, model and version' });
  let copied = false;
  let size = st.size;
  if (!fs.existsSync(dest)) {
    const r = await atomicCopy(opts.file, dest);
    if (r.sha256 !== srcSha) {
      fs.rmSync(dest, { force: true });
      throw new ApsError('APS_ERR_FIRMWARE', `${opts.file} changed while it was copied`, { file: opts.file });
    }
    size = r.size;
    copied = true;
  }
  const row: FirmwareImageRow = { file: name, vendor: vendor.id, models: models.join(','), version: opts.version, size, sha256: srcSha, added_at: Date.now() };
  try {
    fw.addImage(row);
  } catch (e) {
    if (copied) fs.rmSync(dest, { force: true });
    throw e;
  }
  return { ...row, copied };
}

/** Who uses an image: templates that choose it, unfinished rollouts of its version, overrides that point at it. */
export function usersOf(deps: CatalogueDeps, img: FirmwareImageRow): { templates: string[]; rollouts: number[]; overrides: number } {
  const fw = new FirmwareStore(deps.store);
  const images = fw.images();
  const templates = [...deps.config.templates.values()]
    .filter((t) => t.vendor === img.vendor && t.firmware && (() => {
      const d = chooseImage(images, t.vendor, t.model, t.firmware);
      return d.kind === 'image' && d.choice.file === img.file;
    })())
    .map((t) => t.name);
  const models = new Set(img.models.split(','));
  const rollouts = fw.activeRollouts().filter((r) => r.vendor === img.vendor && r.version === img.version && r.models.split(',').some((m) => models.has(m))).map((r) => r.id);
  let overrides = 0;
  for (const o of fw.overrides()) {
    const d = deps.store.device(o.mac);
    if (!d) continue;
    const c = chooseImage(images, d.vendor, d.model, o.version);
    if (c.kind === 'image' && c.choice.file === img.file) overrides++;
  }
  return { templates, rollouts, overrides };
}

export function removeImage(deps: CatalogueDeps, file: string): FirmwareImageRow {
  const fw = new FirmwareStore(deps.store);
  const img = fw.image(file);
  if (!img) throw new ApsError('APS_ERR_NOT_FOUND', `no firmware "${file}" in the catalogue`, { expected: 'a FILE from apsctl firmware list' });
  const u = usersOf(deps, img);
  const why = [
    u.templates.length ? `template${u.templates.length > 1 ? 's' : ''} ${u.templates.join(', ')}` : '',
    u.rollouts.length ? `rollout${u.rollouts.length > 1 ? 's' : ''} ${u.rollouts.join(', ')}` : '',
    u.overrides ? `${u.overrides} phone${u.overrides > 1 ? 's' : ''} pointed at it by a rollout or rollback` : '',
  ].filter(Boolean);
  if (why.length) throw new ApsError('APS_ERR_FIRMWARE', `firmware ${file} (version ${img.version}) is in use by ${why.join(' and ')}`, { key: file, expected: 'change the templates, finish or abort the rollout first' });
  fw.removeImage(file);
  fs.rmSync(path.join(deps.config.settings.server.firmwareDir, file), { force: true });
  return img;
}
