// Imported first by main.ts, so it runs before any other module loads: Node keeps the compiled
// (and type-stripped) code of every module on disk and reuses it on the next start, which saves
// about a fifth of start-up CPU. Best effort: a read-only install just compiles as before.
import module from 'node:module';
import { fileURLToPath } from 'node:url';

module.enableCompileCache?.(fileURLToPath(new URL('../node_modules/.cache/latchkey/compile-cache', import.meta.url)));
