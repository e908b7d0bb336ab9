// Bundle the client into dist/: assets/app.js (esbuild), assets/app.css, assets/favicon.svg and
// index.html with a content hash on the asset URLs. Everything the page loads comes from here
// and config.js: nothing is fetched from the internet at run time.
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const assets = join(dist, 'assets');

await rm(dist, { recursive: true, force: true });
await mkdir(assets, { recursive: true });
await esbuild.build({
  entryPoints: [join(root, 'src/main.js')],
  outfile: join(assets, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
await copyFile(join(root, 'src/styles.css'), join(assets, 'app.css'));
await copyFile(join(root, 'src/favicon.svg'), join(assets, 'favicon.svg'));
const hash = createHash('sha256');
for (const name of ['app.js', 'app.css']) hash.update(await readFile(join(assets, name)));
const version = hash.digest('hex').slice(0, 12);
const html = (await readFile(join(root, 'src/index.html'), 'utf8')).replaceAll('__BUILD__', version);
await writeFile(join(dist, 'index.html'), html);
await writeFile(join(dist, 'BUILD'), `${version}\n`);
console.log(`built services/web/dist (version ${version})`);
