#!/usr/bin/env node
// CLI launcher. The sources are TypeScript run by Node's type stripping (Node >= 22.18);
// on an older system node, hand over to the Node that the project installs itself.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
if (process.features.typescript) {
  await import(main);
} else {
  const bundled = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(bundled)) {
    process.stderr.write(`latchkey needs Node >= 22.18 (this is ${process.version}); run npm ci to install it.\n`);
    process.exit(1);
  }
  const child = spawnSync(bundled, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(child.status ?? 1);
}
