/**
 * The inventory's small rules, each stated once and called by the CLI, import, scan, discovery,
 * PnP, PIN registration and the renderer alike.
 */
import { ApsError } from '../errors.js';
import type { Vendor, VendorModel } from '../vendors/registry.js';

/** A hardware template fits a tenant when it is global (tenant = *) or that tenant's own. */
export function templateFits(t: { tenant: string }, tenant: string): boolean {
  return t.tenant === '*' || t.tenant === tenant;
}

/** Throws APS_ERR_USAGE when `t` does not fit `tenant` (`key`: the option or setting that named it). */
export function requireTemplateFits(t: { name: string; tenant: string }, tenant: string, key?: string): void {
  if (!templateFits(t, tenant)) {
    throw new ApsError('APS_ERR_USAGE', `template "${t.name}" belongs to tenant ${t.tenant}, not ${tenant}`, { key, expected: 'a global template (tenant = *) or one of this tenant' });
  }
}

/**
 * The model of a device that nothing identified: the model of its template when the template is
 * of the same vendor, else the vendor's first model. `assumed` says which, for the reason shown.
 */
export function defaultModel(vendor: Vendor, template?: { vendor: string; model: string; name?: string }): { model: VendorModel; assumed: string } {
  if (template && template.vendor === vendor.id) {
    const m = vendor.models.find((x) => x.id === template.model);
    if (m) return { model: m, assumed: ` from template ${template.name ?? template.model}` };
  }
  return { model: vendor.models[0]!, assumed: `, the first ${vendor.id} model` };
}
