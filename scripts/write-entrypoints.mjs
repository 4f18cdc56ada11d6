// tsc compiles src/, migrations/ and test/ side by side (rootDir "."), so the app lands in
// dist/src/. These two shims give deployments stable entry points: `node dist/main.js` and
// `node dist/cli.js migrate` (e.g. a Kubernetes Job), whatever the internal layout.
import { mkdirSync, writeFileSync, chmodSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
writeFileSync('dist/main.js', "import './src/main.js';\n");
writeFileSync('dist/cli.js', "#!/usr/bin/env node\nimport './src/cli.js';\n");
chmodSync('dist/cli.js', 0o755);
