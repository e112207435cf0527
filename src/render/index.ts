/**
 * request → device → template → bytes. Renders a vendor file for a device (or a common
 * file for a model), escaping per file format, applies the IP/DNS map, and caches the
 * result. A cache entry is valid while the configuration generation and the device's
 * revision are the ones it was rendered from: any input change drops it.
 */
import { configSource } from '../inventory/multicell.js';
import type { Mac } from '../mac.js';
import { defaultModel } from '../inventory/rules.js';
import crypto from 'node:crypto';
import Mustache from 'mustache';
import { ApsError } from '../errors.js';
import { DEFAULT_TENANT, type Config, type Template } from '../config/index.js';
import { readTemplate } from '../config/template.js';
import { parseIni } from '../config/ini-file.js';
import type { DeviceRow, Store } from '../store/index.js';
import { fileFits, templateFor, type CompiledFile, type FileMatch, type Vendor, type VendorModel, type VendorRegistry } from '../vendors/registry.js';
import { pinStore } from '../store/pin.js';
import { buildView } from './view.js';
import { applyIpMap, compileIpMap } from './ipmap.js';
import { FirmwareStore } from '../store/firmware.js';
import { firmwareForDevice } from '../firmware/select.js';

// Mustache caches parsed templates itself (keyed by text); we keep our own rendered cache.
export interface Rendered {
  body: Buffer;
  etag: string;
  warnings: string[];
  contentType: string;
}

const XML_ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
/** XML: the five entities. Control characters other than tab are dropped. */
export function escapeXml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => XML_ESC[c]).replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '');
}
/** key = value files: nothing to escape, but a line break would start a new setting. */
export function escapeText(s: unknown): string {
  return String(s).replace(/[\r\n\x00]/g, ' ');
}

interface CacheEntry {
  gen: number;
  rev: number;
  value: Rendered;
}

export interface RenderDeps {
  registry: VendorRegistry;
  store: Store;
  config: () => Config;
  /** bumped on every configuration (re)load */
  generation: () => number;
  maxCacheBytes?: number;
}

export class Renderer {
  private readonly cache = new Map<string, CacheEntry>();
  private cacheBytes = 0;
  private readonly maxBytes: number;
  hits = 0;
  misses = 0;
  private readonly firmware: FirmwareStore;

  constructor(private readonly deps: RenderDeps) {
    this.maxBytes = deps.maxCacheBytes ?? 64 * 1024 * 1024;
    this.firmware = new FirmwareStore(deps.store);
  }

  /** Renders a file for a known device, or a common/model file when device is undefined. */
  render(match: FileMatch, device?: DeviceRow): Rendered {
    const gen = this.deps.generation();
    // the firmware a phone reports selects parameter variants where its vendor has them
    const fw = match.file.vendor.firmwareVariants?.length ? device?.firmware ?? '' : '';
    const key = `${device?.mac ?? '*'}|${match.file.vendor.id}|${match.file.spec.name}|${match.model?.id ?? ''}|${fw}`;
    const hit = this.cache.get(key);
    // a tied base changes with its primary too (revisions only grow: the sum does whenever either does)
    const rev = device ? device.rev + (device.shares_with ? configSource(this.deps.store, device).rev : 0) : 0;
    if (hit && hit.gen === gen && hit.rev === rev) {
      // refresh LRU position
      this.cache.delete(key);
      this.cache.set(key, hit);
      this.hits++;
      return hit.value;
    }
    this.misses++;
    const value = this.renderUncached(match.file, match.model, device);
    if (hit) this.drop(key, hit);
    this.cache.set(key, { gen, rev, value });
    this.cacheBytes += value.body.length;
    while (this.cacheBytes > this.maxBytes && this.cache.size > 1) {
      const [k, e] = this.cache.entries().next().value as [string, CacheEntry];
      this.drop(k, e);
    }
    return value;
  }

  private ipMaps = new Map<string, { gen: number; map: ReturnType<typeof compileIpMap> }>();
  private ipMapFor(tenantId: string, tenantMap: Parameters<typeof compileIpMap>[0], globalMap: Parameters<typeof compileIpMap>[1]) {
    const gen = this.deps.generation();
    const hit = this.ipMaps.get(tenantId);
    if (hit && hit.gen === gen) return hit.map;
    const map = compileIpMap(tenantMap, globalMap);
    this.ipMaps.set(tenantId, { gen, map });
    return map;
  }

  clear(): void {
    this.cache.clear();
    this.cacheBytes = 0;
  }

  stats(): { entries: number; bytes: number; hits: number; misses: number } {
    return { entries: this.cache.size, bytes: this.cacheBytes, hits: this.hits, misses: this.misses };
  }

  private drop(k: string, e: CacheEntry) {
    this.cache.delete(k);
    this.cacheBytes -= e.value.body.length;
  }

  renderUncached(file: CompiledFile, fileModel: VendorModel | undefined, device?: DeviceRow): Rendered {
    const config = this.deps.config();
    const vendor = file.vendor;
    const warnings: string[] = [];
    let model = fileModel;
    let template: Template;
    let tenantId = DEFAULT_TENANT;
    let lines = undefined;
    // a tied base of a multicell system is served its primary's lines, template and stage under its own MAC
    const own = device;
    if (device?.shares_with) {
      const primary = configSource(this.deps.store, device);
      device = { ...primary, mac: device.mac, label: device.label || primary.label, rev: device.rev };
    }
    if (device) {
      model = this.deps.registry.model(vendor.id, device.model);
      if (!model) throw new ApsError('APS_ERR_TEMPLATE', `device ${device.mac}: ${vendor.name} has no model "${device.model}"`, { key: device.mac });
      tenantId = device.tenant;
      const t = device.template ? config.templates.get(device.template) : undefined;
      if (device.template && !t) warnings.push(`template "${device.template}" no longer exists: built-in defaults used`);
      template = t ?? defaultTemplate(vendor, model);
      lines = this.deps.store.lines((own?.shares_with ?? device.mac) as Mac);
    } else {
      // a common file is rendered for the vendor's default model, or the first model that asks for it
      const dm = defaultModel(vendor).model;
      model = model ?? (fileFits(vendor, file.spec, dm) ? dm : vendor.models.find((m) => fileFits(vendor, file.spec, m)) ?? dm);
      template = defaultTemplate(vendor, model);
    }
    const tenant = config.tenants.get(tenantId) ?? config.tenants.get(DEFAULT_TENANT)!;
    const credentials = device ? this.deps.store.credentials(device.mac) : undefined;
    // one system registers as one unprov account: its primary's
    const acct = device?.state === 'unprovisioned' ? pinStore(this.deps.store).unprovAccountOf((own?.shares_with ?? device.mac) as Mac, config.settings.provisioning.unprovPrefix) : undefined;
    const unprov = acct && { account: acct.account, password: acct.secret };
    // the image its config names (src/firmware/select.ts): a rollout's override, else the template's; none when it runs that version
    let firmware: { file: string; version: string | null } | null | undefined;
    if (device) {
      // a tied base is pointed at an image by its own override and its own reported version
      const override = this.firmware.override(device.mac)?.version;
      if (override || template.firmware) {
        const d = firmwareForDevice(this.firmware.images(), { vendor: vendor.id, model: model.id, template, override, reported: own?.firmware ?? device.firmware });
        firmware = d.kind === 'image' ? d.choice : null;
        if (d.kind === 'mismatch') warnings.push(`firmware: ${d.reason}: left out`);
      }
    }
    const view = buildView({ config, vendor, model, tenant, template, device, lines, credentials, unprov, firmware }, { warnings });
    const templateName = templateFor(vendor, file.spec, model);
    const text = vendor.templates.get(templateName)!;
    let out: string;
    try {
      out = Mustache.render(text, view, (name) => vendor.templates.get(name), {
        escape: file.spec.format === 'xml' ? escapeXml : escapeText,
      });
    } catch (e) {
      throw new ApsError('APS_ERR_TEMPLATE', `rendering ${vendor.id}/templates/${templateName}.mustache failed: ${(e as Error).message}`, {
        file: `${vendor.dir}/templates/${templateName}.mustache`,
      });
    }
    out = applyIpMap(out, this.ipMapFor(tenant.id, tenant.ipDnsMap, config.settings.ipDnsMap));
    if (file.spec.lineEnding === 'crlf') out = out.replace(/\r?\n/g, '\r\n');
    const body = Buffer.from(out, 'utf8');
    return {
      body,
      etag: '"' + crypto.createHash('sha1').update(body).digest('base64url') + '"',
      warnings,
      contentType: file.spec.format === 'xml' ? 'application/xml; charset=utf-8' : 'text/plain; charset=utf-8',
    };
  }
}

const defaults = new Map<string, Template>();
/** The template of a device that has none: every tab at its documented default. */
export function defaultTemplate(vendor: Vendor, model: VendorModel): Template {
  const k = `${vendor.id}/${model.id}`;
  let t = defaults.get(k);
  if (!t) {
    t = readTemplate(parseIni(`[template]\nvendor = ${vendor.id}\nmodel = ${model.id}\n`, '(built-in defaults).ini'));
    defaults.set(k, t);
  }
  return t;
}
