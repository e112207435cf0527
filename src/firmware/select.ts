/**
 * Which image a phone's config names: the one rule that rendering, `config check`, `firmware
 * list|status` and rollouts call. `[template] firmware` (or a rollout's per-device override) is a
 * version of the catalogue (the image of that version made for the phone's vendor and model) or,
 * as before the catalogue, a file name in firmware_dir. A phone that already reports the version
 * is not pointed at it again: its config leaves the firmware setting out.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Template } from '../config/index.js';
import type { FirmwareImageRow } from '../store/firmware.js';

export interface FirmwareChoice {
  /** the file in firmware_dir the config names */
  file: string;
  /** its catalogue version (null: a file the catalogue does not know) */
  version: string | null;
}

export type FirmwareDecision =
  | { kind: 'none'; reason: string }
  | { kind: 'image'; choice: FirmwareChoice }
  /** the phone reports the version already: the setting is left out */
  | { kind: 'current'; choice: FirmwareChoice }
  /** the version or file is not for this vendor and model: left out, and `config check` says so */
  | { kind: 'mismatch'; reason: string };

export function modelsOf(img: Pick<FirmwareImageRow, 'models'>): string[] {
  return img.models.split(',').map((m) => m.trim()).filter(Boolean);
}

export function imageFits(img: FirmwareImageRow, vendor: string, model: string): boolean {
  return img.vendor === vendor && modelsOf(img).some((m) => m.toLowerCase() === model.toLowerCase());
}

/** What `want` (a version or a file name) means for a phone of this vendor and model. */
export function chooseImage(images: readonly FirmwareImageRow[], vendor: string, model: string, want: string): FirmwareDecision {
  if (!want) return { kind: 'none', reason: 'no firmware named' };
  const ofVersion = images.filter((i) => i.vendor === vendor && i.version === want);
  if (ofVersion.length) {
    const img = ofVersion.find((i) => imageFits(i, vendor, model));
    if (!img) return { kind: 'mismatch', reason: `firmware version ${want} has no image for model ${model} (${ofVersion.map((i) => `${i.file}: ${i.models}`).join('; ')})` };
    return { kind: 'image', choice: { file: img.file, version: img.version } };
  }
  const byFile = images.find((i) => i.file === want);
  if (byFile) {
    if (!imageFits(byFile, vendor, model)) return { kind: 'mismatch', reason: `firmware ${want} is for ${byFile.vendor} ${byFile.models}, not ${vendor} ${model}` };
    return { kind: 'image', choice: { file: byFile.file, version: byFile.version } };
  }
  // not in the catalogue: a plain file name in firmware_dir, as before the catalogue
  return { kind: 'image', choice: { file: want, version: null } };
}

/**
 * The firmware a device's config names: its override (a rollout's wave, a rollback) or else
 * its template's, left out when the phone reports that version already.
 */
export function firmwareForDevice(images: readonly FirmwareImageRow[], input: { vendor: string; model: string; template: Pick<Template, 'firmware'>; override?: string; reported?: string | null }): FirmwareDecision {
  const d = chooseImage(images, input.vendor, input.model, input.override ?? input.template.firmware);
  if (d.kind === 'image' && d.choice.version !== null && input.reported === d.choice.version) return { kind: 'current', choice: d.choice };
  return d;
}

/** The version a device is meant to run: its override's, else its template's (null: none or unknown). */
export function wantedVersion(images: readonly FirmwareImageRow[], input: { vendor: string; model: string; template?: Pick<Template, 'firmware'>; override?: string }): string | null {
  const d = chooseImage(images, input.vendor, input.model, input.override ?? input.template?.firmware ?? '');
  return d.kind === 'image' ? d.choice.version : null;
}

/**
 * `config check` of `[template] firmware`: a version or catalogue file that is not for the
 * template's vendor and model is an error (file:line); a file that is neither in the catalogue
 * nor in firmware_dir is a warning.
 */
export function checkTemplateFirmware(templates: Iterable<Template>, images: readonly FirmwareImageRow[], firmwareDir: string): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  for (const t of templates) {
    if (!t.firmware) continue;
    const src = t.sources?.get('[template]firmware');
    const at = src ? `${src.file}:${src.line}` : t.file;
    const d = chooseImage(images, t.vendor, t.model, t.firmware);
    if (d.kind === 'mismatch') errors.push(`${at}: [template] firmware: ${d.reason}`);
    else if (d.kind === 'image' && d.choice.version === null && !fs.existsSync(path.join(firmwareDir, d.choice.file))) {
      warnings.push(`${at}: [template] firmware: "${t.firmware}" is no version in the firmware catalogue and no file in ${firmwareDir} (apsctl firmware add)`);
    }
  }
  return { errors, warnings };
}
