// For UI work without rebuilding the binary: rebuilds the bundle on every change and serves
// it, passing API requests to a running lastmile.
//
//   npm ci && node dev.mjs [http://127.0.0.1:7070] [port 7071]
import { context } from 'esbuild';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const upstream = new URL(process.argv[2] || 'http://127.0.0.1:7070');
const port = Number(process.argv[3] || 7071);

let bundle = { js: '', css: '' };
const ctx = await context({
  entryPoints: [join(here, 'src', 'main.tsx')],
  bundle: true,
  format: 'esm',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  sourcemap: 'inline',
  write: false,
  outdir: 'out',
  logLevel: 'info',
  plugins: [
    {
      name: 'keep-in-memory',
      setup(b) {
        b.onEnd((r) => {
          for (const f of r.outputFiles ?? []) {
            if (f.path.endsWith('.js')) bundle.js = f.text;
            if (f.path.endsWith('.css')) bundle.css = f.text;
          }
        });
      },
    },
  ],
});
await ctx.watch();

const page = () =>
  readFileSync(join(here, 'index.html'), 'utf8').replaceAll('%APP_JS%', '/dev/app.js').replaceAll('%APP_CSS%', '/dev/app.css');

http
  .createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/dev/app.js') return res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle.js);
    if (path === '/dev/app.css') return res.writeHead(200, { 'content-type': 'text/css' }).end(bundle.css);
    if (path === '/favicon.svg') return res.writeHead(200, { 'content-type': 'image/svg+xml' }).end(readFileSync(join(here, 'favicon.svg')));
    const api = /^\/(api|loki)\//.test(path) || path === '/metrics' || path.startsWith('/-/');
    if (!api) return res.writeHead(200, { 'content-type': 'text/html' }).end(page());
    const p = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    p.on('error', (e) => res.writeHead(502).end(`lastmile at ${upstream} did not answer: ${e.message}\n`));
    req.pipe(p);
  })
  .listen(port, '127.0.0.1', () => console.log(`UI on http://127.0.0.1:${port}/ (API from ${upstream.origin})`));
