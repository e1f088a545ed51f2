// The demo page's bundle is committed so that `go build` needs no npm: it
// must be what `npm run build:demo` makes from the sources now.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

test('internal/demo/static/app.js is a fresh build of internal/demo/src', async () => {
  // build/test/ is two levels below the package.
  const script = resolve(import.meta.dirname, '../../scripts/build-demo.mjs');
  const { buildDemo, demoBundle } = (await import(pathToFileURL(script).href)) as {
    buildDemo: (outfile: string) => Promise<void>;
    demoBundle: string;
  };
  const dir = mkdtempSync(join(tmpdir(), 'sb-demo-'));
  try {
    const fresh = join(dir, 'app.js');
    await buildDemo(fresh);
    const committed = readFileSync(demoBundle, 'utf8');
    assert.ok(committed === readFileSync(fresh, 'utf8'), 'internal/demo/static/app.js is stale: run `npm run build:demo` in clients/js and commit it');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
