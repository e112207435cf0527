/** Where this installation's own files are: the project root (src/ when run from source, dist/src/ when built). */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const INSTALL_DIR = fs.existsSync(path.join(HERE, '../vendors')) ? path.resolve(HERE, '..') : path.resolve(HERE, '../..');
export const DEFAULT_VENDORS_DIR = path.join(INSTALL_DIR, 'vendors');
