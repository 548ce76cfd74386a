#!/usr/bin/env node
// Entry point of the `t2i` command: loads the TypeScript sources through tsx (no build step).
import { register } from 'tsx/esm/api';

// We pin @aws-sdk/* to a release that supports Node 20; its notice about future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
register();
await import('../services/cli/main.ts');
