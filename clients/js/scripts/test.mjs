// npm test: type-checks and builds the client, its tests and the demo page, builds
// `switchboard` from this repository into a temporary directory for the
// end-to-end tests, and runs every test file with Node's test runner.
// Extra arguments go to node --test (e.g. --test-name-pattern=drain).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const pkg = resolve(import.meta.dirname, '..');
const repo = resolve(pkg, '../..');
const tsc = join(pkg, 'node_modules/.bin/tsc');
for (const config of ['tsconfig.json', 'tsconfig.test.json', 'tsconfig.demo.json']) {
  if (spawnSync(tsc, ['-p', config], { cwd: pkg, stdio: 'inherit' }).status !== 0) {
    console.error(`tsc -p ${config} failed`);
    process.exit(1);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'sb-js-'));
let status = 1;
try {
  const bin = join(dir, 'switchboard');
  execFileSync(process.env.GO || 'go', ['build', '-o', bin, './cmd/switchboard'], { cwd: repo, stdio: 'inherit' });
  const tests = join(pkg, 'build/test');
  const files = readdirSync(tests).filter((f) => f.endsWith('.test.js')).sort().map((f) => join(tests, f));
  const res = spawnSync(process.execPath, ['--test', '--enable-source-maps', ...process.argv.slice(2), ...files], {
    cwd: pkg, stdio: 'inherit', env: { ...process.env, SWITCHBOARD_BIN: bin },
  });
  status = res.status ?? 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
