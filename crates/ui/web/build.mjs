// Bundles the web UI into a directory of static files the lastmile-ui crate embeds.
//
//   node build.mjs [--src DIR] [--out DIR] [--node-modules DIR] [--dev]
//
// Output: index.html (referencing content-hashed assets), assets/app-<hash>.js,
// assets/app-<hash>.css, favicon.svg, each also as .gz and .br (the server picks one by
// Accept-Encoding; Node's zlib does it, so the Rust side needs no compressor), and
// manifest.json / manifest.tsv listing every file with its hash. The crate's build.rs runs this with the
// npm dependencies installed in its OUT_DIR (--node-modules); `npm run build` in this
// directory uses ./node_modules and writes ./dist.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? resolve(args[i + 1]) : dflt;
};
const src = opt('--src', here);
const out = opt('--out', join(here, 'dist'));
const nodeModules = opt('--node-modules', join(here, 'node_modules'));
const dev = args.includes('--dev');

const started = Date.now();
const result = await build({
  entryPoints: { app: join(src, 'src', 'main.tsx') },
  bundle: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: !dev,
  sourcemap: false,
  legalComments: 'none',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  nodePaths: [nodeModules],
  write: false,
  outdir: 'assets',
  entryNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': dev ? '"development"' : '"production"' },
});

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

const manifest = [];
const emit = (name, bytes, immutable) => {
  const path = join(out, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const gz = gzipSync(bytes, { level: 9 });
  const br = brotliCompressSync(bytes, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
  });
  writeFileSync(path + '.gz', gz);
  writeFileSync(path + '.br', br);
  manifest.push({ name, hash, immutable, bytes: bytes.length, gzip: gz.length, brotli: br.length });
};

let js = '';
let css = '';
for (const f of result.outputFiles) {
  // esbuild names outputs relative to outdir "assets" inside the current directory.
  const name = 'assets/' + f.path.split(/[\\/]/).pop();
  if (name.endsWith('.js')) js = name;
  if (name.endsWith('.css')) css = name;
  emit(name, Buffer.from(f.contents), true);
}
if (!js || !css) throw new Error('esbuild produced no app bundle (js: ' + js + ', css: ' + css + ')');

const favicon = readFileSync(join(src, 'favicon.svg'));
emit('favicon.svg', favicon, false);

const html = readFileSync(join(src, 'index.html'), 'utf8')
  .replaceAll('%APP_JS%', '/' + js)
  .replaceAll('%APP_CSS%', '/' + css);
emit('index.html', Buffer.from(html), false);

writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest, null, 1));
// The same, one file a line (name, hash, immutable), for build.rs to read without a JSON parser.
writeFileSync(join(out, 'manifest.tsv'), manifest.map((m) => `${m.name}\t${m.hash}\t${m.immutable ? 1 : 0}\n`).join(''));
const total = manifest.filter((m) => m.name !== 'favicon.svg');
const sum = (k) => total.reduce((a, m) => a + m[k], 0);
console.log(
  `lastmile-ui: built ${manifest.length} files in ${Date.now() - started} ms: ` +
    `${sum('bytes')} bytes, ${sum('gzip')} gzip, ${sum('brotli')} brotli`,
);
