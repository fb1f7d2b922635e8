// Unit tests of the UI's pure logic (no browser, no server): the editor's lexer and
// completion contexts, durations and steps, formatting, log line → trace links, and the
// self-time arithmetic the home page blames slow services with. The TypeScript is bundled
// by esbuild (already a build dependency) into a temporary module and imported.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { build } from 'esbuild';

const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');
let dir;
let m;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lastmile-ui-logic-'));
  const entry = join(dir, 'entry.ts');
  writeFileSync(
    entry,
    ['promql', 'time', 'format', 'links', 'red'].map((f) => `export * from ${JSON.stringify(join(src, f))};`).join('\n'),
  );
  const out = join(dir, 'logic.mjs');
  await build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'node', outfile: out, logLevel: 'error', jsx: 'automatic', jsxImportSource: 'preact' });
  m = await import(pathToFileURL(out).href);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('the lexer gives back its input and classes its tokens', () => {
  const q = 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="api", route=~"/a.*"}[5m]))) # p99';
  const toks = m.tokenize(q);
  assert.equal(toks.map((t) => t[1]).join(''), q);
  const kind = (text) => toks.find((t) => t[1] === text)?.[0];
  assert.equal(kind('histogram_quantile'), 'fn');
  assert.equal(kind('sum'), 'fn');
  assert.equal(kind('by'), 'kw');
  assert.equal(kind('le'), 'label', 'names inside by (…) are labels');
  assert.equal(kind('http_request_duration_seconds_bucket'), 'metric');
  assert.equal(kind('job'), 'label');
  assert.equal(kind('"api"'), 'str');
  assert.equal(kind('5m'), 'dur');
  assert.equal(kind('0.99'), 'num');
  assert.equal(kind('# p99'), 'comment');
  // An unterminated string still round-trips.
  assert.equal(m.tokenize('up{job="a').map((t) => t[1]).join(''), 'up{job="a');
});

test('completion contexts: names, labels in braces and groupings, values, durations', () => {
  const at = (s) => m.completionContext(s.replace('|', ''), s.indexOf('|'));
  assert.deepEqual(at('rat|'), { kind: 'name', prefix: 'rat', from: 0 });
  assert.deepEqual(at('sum(rate(http_req|'), { kind: 'name', prefix: 'http_req', from: 9 });
  assert.deepEqual(at('up{|'), { kind: 'label', prefix: '', from: 3, metric: 'up' });
  assert.deepEqual(at('up{job="a", ins|'), { kind: 'label', prefix: 'ins', from: 12, metric: 'up' });
  assert.deepEqual(at('up{job=|'), { kind: 'value', prefix: '', from: 7, metric: 'up', label: 'job', quoted: false });
  assert.deepEqual(at('up{job=~"ap|'), { kind: 'value', prefix: 'ap', from: 9, metric: 'up', label: 'job', quoted: true });
  assert.deepEqual(at('sum by (jo|) (up)'), { kind: 'label', prefix: 'jo', from: 8, metric: 'up' });
  assert.deepEqual(at('rate(up[|'), { kind: 'duration', prefix: '', from: 8 });
  assert.deepEqual(at('rate(up[5|'), { kind: 'duration', prefix: '5', from: 8 });
  assert.deepEqual(at('up{job="a"} |'), { kind: 'none' });
  // A closed brace is not "inside".
  assert.equal(at('up{job="a"} + dow|').kind, 'name');
});

test('durations, steps and rate windows', () => {
  assert.equal(m.parseDuration('1h30m'), 5400);
  assert.equal(m.parseDuration('250ms'), 0.25);
  assert.equal(m.parseDuration('2d'), 172800);
  assert.equal(m.parseDuration('15'), 15);
  assert.equal(m.parseDuration('5x'), null);
  assert.equal(m.parseDuration('m5'), null);
  assert.equal(m.parseDuration(''), null);
  assert.equal(m.fmtDuration(5400), '1h30m');
  assert.equal(m.fmtDuration(0.25), '250ms');
  assert.equal(m.fmtGoDuration(90000), '90000s', 'Go durations have no days');
  assert.equal(m.autoStep(3600), 15);
  assert.equal(m.autoStep(3600, 90), 60);
  assert.equal(m.autoStep(7 * 86400), 3600);
  assert.equal(m.rateWindow(15), '1m');
  assert.equal(m.rateWindow(60), '4m');
  const q = new URLSearchParams('from=100&to=200');
  assert.deepEqual(m.rangeFrom(q, '1h', 5000), { start: 100, end: 200, relative: null });
  assert.deepEqual(m.rangeFrom(new URLSearchParams('range=15m'), '1h', 5000), { start: 4100, end: 5000, relative: '15m' });
  assert.deepEqual(m.rangeFrom(new URLSearchParams('range=bogus'), '1h', 5000), { start: 1400, end: 5000, relative: '1h' });
});

test('formatting', () => {
  assert.equal(m.fmtSeconds(0.000_000_5), '500ns');
  assert.equal(m.fmtSeconds(0.0123), '12.3ms');
  assert.equal(m.fmtSeconds(1.5), '1.5s');
  assert.equal(m.fmtSeconds(125), '2m 05s');
  assert.equal(m.fmtNum(12345), '12.3k');
  assert.equal(m.fmtNum(0.5), '0.5');
  assert.equal(m.fmtNum(NaN), '–');
  assert.equal(m.fmtBytes(1536), '1.5 KiB');
  assert.equal(m.fmtPct(0.0612), '6.1%');
  assert.equal(m.fmtLabels({ __name__: 'up', job: 'a"b' }), 'up{job="a\\"b"}');
  assert.equal(m.guessUnit('histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m])))'), 'seconds');
  assert.equal(m.guessUnit('rate(http_requests_total[5m])'), 'none');
  assert.equal(m.guessUnit('go_memstats_heap_inuse_bytes'), 'bytes');
});

test('log lines lead to their trace (and span)', () => {
  const id = '4bf92f3577b34da6a3ce929d0e0e4736';
  assert.deepEqual(m.traceRef(`level=info msg="paid" trace_id=${id} span_id=00f067aa0ba902b7`, {}), { trace: id, span: '00f067aa0ba902b7' });
  assert.deepEqual(m.traceRef(`{"traceId":"${id.toUpperCase()}","msg":"x"}`, {}), { trace: id, span: undefined });
  assert.deepEqual(m.traceRef(`traceparent: 00-${id}-00f067aa0ba902b7-01`, {}), { trace: id, span: undefined });
  assert.deepEqual(m.traceRef('trace_id=4bf92f35-77b3-4da6-a3ce-929d0e0e4736', {}), { trace: id, span: undefined });
  assert.deepEqual(m.traceRef('no id here', { trace_id: id, span_id: 'ab' }), { trace: id, span: 'ab' });
  assert.equal(m.traceRef('request 4bf92f3577b34da6 took 3s', {}), undefined, 'a bare hex token is not a trace id');
});

test('self time: a span minus the union of its children, overlaps counted once', () => {
  const s = (spanId, parentSpanId, start, end) => ({ spanId, parentSpanId, service: 'x', name: spanId, start, end, error: false });
  const st = m.selfTimes([s('root', undefined, 0, 100), s('a', 'root', 10, 40), s('b', 'root', 30, 60), s('c', 'b', 35, 80), s('d', 'root', 90, 120)]);
  assert.equal(st.get('root'), 100 - 50 - 10, 'children cover 10..60 and 90..100 (clipped)');
  assert.equal(st.get('b'), 30 - 25, 'c is clipped to b');
  assert.equal(st.get('c'), 45);
  assert.equal(st.get('d'), 30);
});
