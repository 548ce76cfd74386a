import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The package root (where package.json, models/ and schemas/ live), whatever the working directory. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const DEFAULT_MODEL_DIR = path.join(PACKAGE_ROOT, 'models', 'tiny-flux-shapes');
export const SCHEMAS_DIR = path.join(PACKAGE_ROOT, 'schemas');
