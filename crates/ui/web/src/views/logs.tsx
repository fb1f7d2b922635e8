// Logs: a LogQL box over the Loki-compatible API, the streams that matched, a volume
// histogram, and the lines, each carrying a trace id linking to its trace (and span).
import { useEffect, useMemo, useState } from 'preact/hooks';

import { Chart } from '../chart';
import { type Labels, type LokiData, isNotAvailable, loki, points, useAsync } from '../api';
import { type Completer, type Completion, QueryEditor } from '../editor';
import { fmtClockMs, fmtDateTime, fmtLabels, fmtNum } from '../format';
import { Link, href, setParams, useLoc } from '../router';
import { traceRef } from '../links';
import { autoStep, fmtDuration } from '../time';
import { Empty, ErrorBox, Loading, NotAvailable, Panel, useRange } from '../ui';

const LOGQL_WORDS: [string, string][] = [
  ['json', 'parser: JSON fields become labels'],
  ['logfmt', 'parser: key=value fields become labels'],
  ['line_format', 'rewrite the line from a template'],
  ['label_format', 'rename or template labels'],
  ['count_over_time', 'lines per range'],
  ['rate', 'lines per second'],
  ['bytes_over_time', 'bytes per range'],
  ['sum', 'aggregation'],
  ['by', 'grouping'],
];

function logCompleter(start: number, end: number): Completer {
  return async (ctx, signal) => {
    if (ctx.kind === 'label') return (await loki.labels(start, end, signal)).map((l): Completion => ({ label: l, kind: 'label' }));
    if (ctx.kind === 'value') return (await loki.labelValues(ctx.label, start, end, signal)).map((v): Completion => ({ label: v, kind: 'value' }));
    if (ctx.kind === 'name') return LOGQL_WORDS.map(([w, d]): Completion => ({ label: w, kind: 'function', detail: d }));
    if (ctx.kind === 'duration') return ['1m', '5m', '15m', '1h'].map((d): Completion => ({ label: d, kind: 'duration' }));
    return [];
  };
}

interface Line {
  ts: number;
  line: string;
  labels: Labels;
  stream: number;
}

export function Logs() {
  const { q } = useLoc();
  const query = q.get('q') ?? '';
  const limit = Number(q.get('limit')) || 500;
  const range = useRange('1h');
  const [text, setText] = useState(query);
  useEffect(() => setText(query), [query]);
  const available = useAsync(async (s) => {
    try {
      return { labels: await loki.labels(range.start, range.end, s) };
    } catch (e) {
      if (isNotAvailable(e)) return { labels: null };
      throw e;
    }
  }, [range.start, range.end]);
  const complete = useMemo(() => logCompleter(range.start, range.end), [range.start, range.end]);
  const run = () => setParams({ q: text.trim() || null });

  if (available.data && available.data.labels === null) {
    return (
      <div class="page">
        <div class="page-head">
          <h1>Logs</h1>
        </div>
        <NotAvailable feature="Log store">
          <span>
            This lastmile answers no Loki API (<code>/loki/api/v1/query_range</code>). Once the log store is part of the build, logs pushed
            with the Loki API or OTLP appear here, each line linked to its trace.
          </span>
        </NotAvailable>
      </div>
    );
  }
  return (
    <div class="page">
      <div class="page-head">
        <h1>Logs</h1>
        <p class="sub">
          LogQL over lastmile's log store: a stream selector, then filters and parsers, e.g. <code>{'{job="checkout"} |= "error" | json'}</code>.
        </p>
      </div>
      <div class="query-bar">
        <QueryEditor value={text} onChange={setText} onRun={run} complete={complete} label="LogQL query" placeholder='{job="checkout"} |= "error"' testId="logql" />
        <div class="query-actions">
          <button type="button" class="btn primary" onClick={run} data-testid="run-logs">
            Run
          </button>
        </div>
      </div>
      {available.error && <ErrorBox error={available.error} what="log labels" />}
      {!query && available.data?.labels && <LabelBrowser labels={available.data.labels} start={range.start} end={range.end} />}
      {query && <LogResults query={query} start={range.start} end={range.end} limit={limit} />}
    </div>
  );
}

function LabelBrowser(props: { labels: string[]; start: number; end: number }) {
  const [label, setLabel] = useState(props.labels.includes('job') ? 'job' : (props.labels[0] ?? ''));
  const values = useAsync((s) => (label ? loki.labelValues(label, props.start, props.end, s) : Promise.resolve([])), [label, props.start, props.end]);
  if (!props.labels.length) return <Empty>No log streams in this time range.</Empty>;
  return (
    <Panel title="Streams by label">
      <div class="label-browser">
        <ul class="label-names" aria-label="label names">
          {props.labels.map((l) => (
            <li key={l}>
              <button type="button" class={l === label ? 'active' : ''} onClick={() => setLabel(l)}>
                {l}
              </button>
            </li>
          ))}
        </ul>
        <div class="label-values">
          {values.data?.map((v) => (
            <Link key={v} class="chip" href={href('/logs', { q: `{${label}=${JSON.stringify(v)}}`, range: new URLSearchParams(location.search).get('range') })}>
              {v}
            </Link>
          ))}
          {values.loading && <Loading />}
        </div>
      </div>
    </Panel>
  );
}

function isMetricQuery(q: string): boolean {
  return /^\s*(sum|avg|min|max|count|topk|bottomk|count_over_time|rate|bytes_over_time|bytes_rate|sum_over_time|avg_over_time|max_over_time|min_over_time|quantile_over_time|absent_over_time|stddev_over_time)\b/.test(q);
}

function LogResults(props: { query: string; start: number; end: number; limit: number }) {
  const { query, start, end, limit } = props;
  const metric = isMetricQuery(query);
  const step = autoStep(end - start, 120);
  const res = useAsync<LokiData>(
    (s) => loki.queryRange({ query, start, end, limit, direction: 'backward', step: metric ? step : undefined }, s),
    [query, start, end, limit],
  );
  const volume = useAsync<LokiData | null>(
    (s) => (metric ? Promise.resolve(null) : loki.queryRange({ query: `sum(count_over_time(${query} [${fmtDuration(step)}]))`, start, end, step }, s)),
    [query, start, end, step],
  );
  const [onlyStream, setOnlyStream] = useState<number | null>(null);
  useEffect(() => setOnlyStream(null), [query]);

  if (res.error) return <ErrorBox error={res.error} what="logs" />;
  if (!res.data) return <Loading what="logs" />;
  const d = res.data;
  if (d.resultType !== 'streams') {
    const series = d.resultType === 'matrix' ? d.result.map((s) => ({ label: fmtLabels(s.metric), points: points(s) })) : [];
    return (
      <Panel>
        <Chart series={series} testId="logs-chart" onZoom={(a, b) => setParams({ from: a, to: b, range: null })} />
      </Panel>
    );
  }
  const streams = d.result;
  const lines: Line[] = [];
  streams.forEach((s, i) => {
    for (const v of s.values) lines.push({ ts: Number(v[0]) / 1e6, line: v[1], labels: v[2] ? { ...s.stream, ...v[2] } : s.stream, stream: i });
  });
  lines.sort((a, b) => b.ts - a.ts);
  const shown = onlyStream === null ? lines : lines.filter((l) => l.stream === onlyStream);
  // Labels every stream shares say nothing per line; show only the ones that differ.
  const varying = new Set<string>();
  if (streams.length > 1) {
    const keys = new Set(streams.flatMap((s) => Object.keys(s.stream)));
    for (const k of keys) if (new Set(streams.map((s) => s.stream[k])).size > 1) varying.add(k);
  }
  const vol = volume.data && volume.data.resultType === 'matrix' ? volume.data.result.map((s) => ({ label: 'lines', points: points(s), color: '#4c7ef3' })) : [];
  return (
    <>
      <Panel title="Volume" testId="log-volume">
        {volume.error ? (
          <p class="muted small">Volume unavailable: {volume.error.message}</p>
        ) : (
          <Chart series={vol} bars height={110} legend={false} onZoom={(a, b) => setParams({ from: a, to: b, range: null })} empty="No lines in this range." />
        )}
      </Panel>
      <div class="logs-grid">
        <Panel title={`Streams (${streams.length})`} class="streams-panel">
          <ul class="streams" data-testid="streams">
            {streams.map((s, i) => (
              <li key={i}>
                <button type="button" class={onlyStream === i ? 'active' : ''} onClick={() => setOnlyStream(onlyStream === i ? null : i)} title="show only this stream">
                  <span class="mono small">{fmtLabels(s.stream, false)}</span>
                  <span class="count">{fmtNum(s.values.length)}</span>
                </button>
              </li>
            ))}
          </ul>
        </Panel>
        <Panel
          title={
            <span data-testid="log-line-count" data-count={shown.length}>
              {shown.length} lines{lines.length >= limit ? ` (the newest ${limit})` : ''}
            </span>
          }
          class="lines-panel"
        >
          {shown.length === 0 ? (
            <Empty>No log lines match in this time range.</Empty>
          ) : (
            <ol class="log-lines" data-testid="log-lines">
              {shown.map((l, i) => {
                const ref = traceRef(l.line, l.labels);
                return (
                  <li key={i} class="log-line" data-testid="logs-line">
                    <span class="log-time" title={fmtDateTime(l.ts)}>
                      {fmtClockMs(l.ts)}
                    </span>
                    {[...varying].map((k) => (
                      <span key={k} class="chip tiny" title={k}>
                        {l.labels[k]}
                      </span>
                    ))}
                    <span class="log-text">{l.line}</span>
                    {ref && (
                      <Link class="log-trace" href={href(`/traces/${ref.trace}`, { span: ref.span })} data-testid="log-trace-link" title={`open trace ${ref.trace}`}>
                        trace →
                      </Link>
                    )}
                  </li>
                );
              })}
            </ol>
          )}
        </Panel>
      </div>
    </>
  );
}
