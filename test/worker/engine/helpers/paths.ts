import { fileURLToPath } from 'node:url';

/** Repository root (this file is test/worker/engine/helpers/paths.ts). */
export const PACKAGE_ROOT_FOR_TESTS = fileURLToPath(new URL('../../../../', import.meta.url));
