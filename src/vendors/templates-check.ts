/** A hardware template must name a known vendor and one of its models: checked at load and at every reload. */
import type { Config } from '../config/index.js';
import { ApsError } from '../errors.js';
import type { VendorRegistry } from './registry.js';

export function checkTemplates(config: Config, registry: VendorRegistry): void {
  for (const t of config.templates.values()) {
    const v = registry.get(t.vendor);
    if (!v) {
      throw new ApsError('APS_ERR_CONFIG', `no vendor "${t.vendor}"`, {
        file: t.file, line: t.lines?.vendor, key: '[template] vendor', expected: `one of ${registry.list().map((x) => x.id).join(', ')}`,
      });
    }
    if (!registry.model(v.id, t.model)) {
      throw new ApsError('APS_ERR_CONFIG', `${v.name} has no model "${t.model}"`, {
        file: t.file, line: t.lines?.model, key: '[template] model', expected: `one of ${v.models.map((m) => m.id).join(', ')}`,
      });
    }
  }
}
