/** A hardware template must name a known vendor and one of its models: checked at load and at every reload. */
import type { Config } from '../config/index.js';
import { ApsError } from '../errors.js';
import type { VendorRegistry } from './registry.js';

export function checkTemplates(config: Config, registry: VendorRegistry): void {
  for (const t of config.templates.values()) {
    // an inherited vendor or model is reported where it is written (the parent's file)
    const at = (key: 'vendor' | 'model') => t.sources?.get(`[template]${key}`) ?? { file: t.file, line: t.lines?.[key] ?? 0 };
    const v = registry.get(t.vendor);
    if (!v) {
      throw new ApsError('APS_ERR_CONFIG', `no vendor "${t.vendor}"`, {
        file: at('vendor').file, line: at('vendor').line || undefined, key: '[template] vendor', expected: `one of ${registry.list().map((x) => x.id).join(', ')}`,
      });
    }
    if (!registry.model(v.id, t.model)) {
      throw new ApsError('APS_ERR_CONFIG', `${v.name} has no model "${t.model}"`, {
        file: at('model').file, line: at('model').line || undefined, key: '[template] model', expected: `one of ${v.models.map((m) => m.id).join(', ')}`,
      });
    }
  }
}
