// Worker-thread entry: loads the TypeScript engine thread through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('./engine-thread-main.ts');
