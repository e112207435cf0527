import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const VENDORS_DIR = path.join(ROOT, 'vendors');
export const FIXTURE_CONFIG = path.join(ROOT, 'test/fixtures/config');
export const GOLDEN_DIR = path.join(ROOT, 'test/golden');
