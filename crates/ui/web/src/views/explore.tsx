// Metrics explorer: a PromQL editor with completion from the API, a range chart with
// exemplar dots (a click opens the trace), an instant table, and a metric browser.
import { useEffect, useMemo, useState } from 'preact/hooks';

import { type ChartExemplar, Chart } from '../chart';
import { type MetricMeta, type QueryData, points, prom, useAsync } from '../api';
import { type Completer, type Completion, QueryEditor } from '../editor';
import { fmtDateTime, fmtLabels, fmtNum, fmtUnit, guessUnit } from '../format';
import { AGGREGATIONS, DURATIONS, FUNCTIONS, KEYWORDS } from '../promql';
import { PALETTE } from '../theme';
import { Link, href, navigate, setParams, timeParams, useLoc } from '../router';
import { autoStep, fmtDuration, parseDuration } from '../time';
import { Empty, ErrorBox, Loading, Panel, useRange } from '../ui';

const EXAMPLES: [string, string][] = [
  ['Requests per second by service', 'sum by (service) (rate(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER"}[5m]))'],
  ['p99 latency by service (with exemplars)', 'histogram_quantile(0.99, sum by (service, le) (rate(traces_spanmetrics_latency_bucket{span_kind="SPAN_KIND_SERVER"}[5m])))'],
  ['Error ratio by service', 'sum by (service) (rate(traces_spanmetrics_calls_total{status_code="STATUS_CODE_ERROR"}[5m])) / sum by (service) (rate(traces_spanmetrics_calls_total[5m]))'],
  ['HTTP p95 by route', 'histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))'],
  ['Goroutines by job', 'sum by (job) (go_goroutines)'],
];

// Completion sources, cached for the page's life (metric names change rarely).
let metricNames: Promise<string[]> | null = null;
let metadata: Promise<Record<string, MetricMeta[]>> | null = null;
const labelCache = new Map<string, Promise<string[]>>();
const valueCache = new Map<string, Promise<string[]>>();

const completer: Completer = async (ctx, signal) => {
  switch (ctx.kind) {
    case 'name': {
      metricNames ??= prom.labelValues('__name__').catch(() => ((metricNames = null), []));
      metadata ??= prom.metadata().catch(() => ((metadata = null), {}));
      const [names, meta] = await Promise.all([metricNames, metadata]);
      const out: Completion[] = names.map((n) => {
        const base = n.replace(/_(bucket|count|sum)$/, '');
        const m = meta[n]?.[0] ?? meta[base]?.[0];
        return { label: n, kind: 'metric', detail: m ? `${m.type}${m.help ? ' · ' + m.help : ''}` : undefined };
      });
      out.push(...AGGREGATIONS.map((a): Completion => ({ label: a, kind: 'aggregation', detail: 'aggregation' })));
      out.push(...FUNCTIONS.map(([f, sig]): Completion => ({ label: f, kind: 'function', detail: sig })));
      out.push(...KEYWORDS.map((k): Completion => ({ label: k, kind: 'keyword' })));
      return out;
    }
    case 'label': {
      const key = ctx.metric ?? '';
      if (!labelCache.has(key)) labelCache.set(key, prom.labels(ctx.metric, signal).catch(() => (labelCache.delete(key), [])));
      return (await labelCache.get(key)!).filter((l) => l !== '__name__').map((l): Completion => ({ label: l, kind: 'label' }));
    }
    case 'value': {
      const key = `${ctx.metric ?? ''}\u0000${ctx.label}`;
      if (!valueCache.has(key)) valueCache.set(key, prom.labelValues(ctx.label, ctx.metric, signal).catch(() => (valueCache.delete(key), [])));
      return (await valueCache.get(key)!).map((v): Completion => ({ label: v, kind: 'value' }));
    }
    case 'duration':
      return DURATIONS.map((d): Completion => ({ label: d, kind: 'duration' }));
    default:
      return [];
  }
};

function traceIdOf(labels: Record<string, string>): string | undefined {
  return labels.trace_id ?? labels.traceID ?? labels.traceId ?? labels.TraceID;
}

export function Explore() {
  const { q } = useLoc();
  const query = q.get('q') ?? '';
  const tab = q.get('tab') === 'table' ? 'table' : 'graph';
  const showEx = q.get('ex') !== '0';
  const range = useRange('1h');
  const auto = autoStep(range.end - range.start);
  const stepParam = q.get('step') ?? '';
  const step = parseDuration(stepParam) ?? auto;
  const [text, setText] = useState(query);
  const [stepText, setStepText] = useState(stepParam);
  useEffect(() => setText(query), [query]);
  useEffect(() => setStepText(stepParam), [stepParam]);

  const run = () => setParams({ q: text.trim() || null, step: stepText.trim() || null });
  const format = async () => {
    try {
      setText(await prom.formatQuery(text));
    } catch {
      /* the run shows the parse error */
    }
  };

  return (
    <div class="page">
      <div class="page-head">
        <h1>Metrics</h1>
        <p class="sub">
          PromQL over lastmile's store. <kbd>Enter</kbd> runs, <kbd>Shift+Enter</kbd> adds a line, <kbd>Ctrl+Space</kbd> completes.
        </p>
      </div>
      <div class="query-bar">
        <QueryEditor value={text} onChange={setText} onRun={run} complete={completer} label="PromQL query" placeholder="Enter a PromQL expression, e.g. rate(http_requests_total[5m])" testId="promql" />
        <div class="query-actions">
          <button type="button" class="btn primary" onClick={run} data-testid="run-query">
            Run
          </button>
          <button type="button" class="btn" onClick={format} title="format the query (/api/v1/format_query)">
            Format
          </button>
        </div>
      </div>
      <div class="toolbar">
        <div class="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={tab === 'graph'} class={tab === 'graph' ? 'active' : ''} onClick={() => setParams({ tab: null })}>
            Graph
          </button>
          <button type="button" role="tab" aria-selected={tab === 'table'} class={tab === 'table' ? 'active' : ''} onClick={() => setParams({ tab: 'table' })} data-testid="tab-table">
            Table
          </button>
        </div>
        {tab === 'graph' && (
          <>
            <label class="inline">
              Step
              <input
                value={stepText}
                placeholder={fmtDuration(auto)}
                size={6}
                onInput={(e) => setStepText((e.target as HTMLInputElement).value)}
                onKeyDown={(e) => e.key === 'Enter' && run()}
                class={stepText && parseDuration(stepText) === null ? 'invalid' : ''}
                aria-label="step"
              />
            </label>
            <label class="check">
              <input type="checkbox" checked={showEx} onChange={(e) => setParams({ ex: (e.target as HTMLInputElement).checked ? null : '0' })} /> exemplars
            </label>
          </>
        )}
      </div>
      {!query && <Browser onPick={(m) => setParams({ q: m })} />}
      {query && tab === 'graph' && <Graph query={query} start={range.start} end={range.end} step={step} exemplars={showEx} />}
      {query && tab === 'table' && <Table query={query} time={range.end} />}
    </div>
  );
}

function Graph(props: { query: string; start: number; end: number; step: number; exemplars: boolean }) {
  const { query, start, end, step } = props;
  const res = useAsync((s) => prom.queryRange(query, start, end, step, s), [query, start, end, step]);
  const ex = useAsync((s) => (props.exemplars ? prom.exemplars(query, start, end, s) : Promise.resolve([])), [query, start, end, props.exemplars]);
  const unit = guessUnit(query);
  const matrix = res.data?.resultType === 'matrix' ? res.data.result : [];
  const series = useMemo(() => matrix.map((s, i) => ({ label: fmtLabels(s.metric), points: points(s), color: PALETTE[i % PALETTE.length] })), [res.data]);
  const exemplars = useMemo<ChartExemplar[]>(() => {
    const out: ChartExemplar[] = [];
    // An exemplar takes the colour of the result series whose labels its series carries.
    const colorOf = (labels: Record<string, string>) => {
      const i = matrix.findIndex((m) => Object.entries(m.metric).every(([k, v]) => k === '__name__' || labels[k] === v));
      return i >= 0 && matrix.length > 1 ? PALETTE[i % PALETTE.length] : undefined;
    };
    for (const s of ex.data ?? []) {
      const color = colorOf(s.seriesLabels);
      for (const e of s.exemplars) {
        const id = traceIdOf(e.labels);
        if (!id) continue;
        out.push({
          t: e.timestamp,
          v: Number(e.value),
          traceId: id,
          color,
          title: `trace ${id}\n${fmtUnit(Number(e.value), unit)} at ${fmtDateTime(e.timestamp * 1000)}\n${fmtLabels(s.seriesLabels)}`,
        });
      }
    }
    return out;
  }, [ex.data, res.data, unit]);
  if (res.error) return <ErrorBox error={res.error} what="the query" />;
  if (!res.data) return <Loading what="the query" />;
  if (res.data.resultType !== 'matrix') return <ErrorBox error={new Error(`expected a range result, got ${res.data.resultType}`)} />;
  const npoints = series.reduce((a, s) => a + s.points.length, 0);
  return (
    <Panel testId="graph-panel" data={{ start, end, step }}>
      <div class="result-stats" data-testid="result-stats">
        <span data-testid="series-count" data-count={series.length}>
          {series.length} series
        </span>
        <span>{fmtNum(npoints)} points</span>
        <span>step {fmtDuration(step)}</span>
        {props.exemplars && <span data-testid="exemplar-count">{exemplars.length} exemplars</span>}
        {res.took !== undefined && <span>{Math.round(res.took)} ms</span>}
        {res.loading && <span class="spinner" aria-label="loading" />}
      </div>
      <Chart
        series={series}
        unit={unit}
        height={340}
        exemplars={exemplars}
        onExemplar={(e) => navigate(href(`/traces/${e.traceId}`))}
        onZoom={(a, b) => setParams({ from: a, to: b, range: null })}
        testId="chart"
        empty="The query returned no series in this time range."
      />
      {exemplars.length > 0 && <p class="muted small">Each dot is an exemplar: a sample that carries a trace id. Click one to open its trace.</p>}
    </Panel>
  );
}

function Table(props: { query: string; time: number }) {
  const res = useAsync<QueryData>((s) => prom.query(props.query, props.time, s), [props.query, props.time]);
  const unit = guessUnit(props.query);
  if (res.error) return <ErrorBox error={res.error} what="the query" />;
  if (!res.data) return <Loading what="the query" />;
  const d = res.data;
  return (
    <Panel testId="table-panel">
      <div class="result-stats">
        <span>at {fmtDateTime(props.time * 1000)}</span>
        {res.took !== undefined && <span>{Math.round(res.took)} ms</span>}
      </div>
      {d.resultType === 'vector' &&
        (d.result.length ? (
          <table class="data" data-testid="instant-table">
            <thead>
              <tr>
                <th>Series ({d.result.length})</th>
                <th class="num">Value</th>
              </tr>
            </thead>
            <tbody>
              {[...d.result]
                .sort((a, b) => Number(b.value[1]) - Number(a.value[1]))
                .map((s, i) => (
                  <tr key={i}>
                    <td class="mono small">{fmtLabels(s.metric)}</td>
                    <td class="num" title={s.value[1]}>
                      {fmtUnit(Number(s.value[1]), unit)}
                    </td>
                  </tr>
                ))}
            </tbody>
          </table>
        ) : (
          <Empty>Empty result.</Empty>
        ))}
      {d.resultType === 'matrix' && (
        <table class="data">
          <tbody>
            {d.result.map((s, i) => (
              <tr key={i}>
                <td class="mono small">{fmtLabels(s.metric)}</td>
                <td class="mono small">
                  {s.values.map(([t, v]) => (
                    <div key={t}>
                      {v} @{t}
                    </div>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {(d.resultType === 'scalar' || d.resultType === 'string') && (
        <div class="scalar">
          {d.resultType}: <b>{d.result[1]}</b>
        </div>
      )}
    </Panel>
  );
}

function Browser(props: { onPick: (q: string) => void }) {
  const meta = useAsync((s) => Promise.all([prom.labelValues('__name__', undefined, s), prom.metadata(s)]), []);
  const [filter, setFilter] = useState('');
  return (
    <div class="grid2 browser">
      <Panel title="Try">
        <ul class="examples">
          {EXAMPLES.map(([title, expr]) => (
            <li key={expr}>
              <Link href={href('/explore', { ...timeParams(), q: expr })}>
                <b>{title}</b>
                <code>{expr}</code>
              </Link>
            </li>
          ))}
        </ul>
      </Panel>
      <Panel title="Metrics" actions={<input type="search" placeholder="filter" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} aria-label="filter metrics" />}>
        {meta.error && <ErrorBox error={meta.error} what="metric names" />}
        {meta.data && (
          <ul class="metric-list">
            {meta.data[0]
              .filter((n) => n.includes(filter))
              .map((n) => {
                const m = meta.data![1][n]?.[0] ?? meta.data![1][n.replace(/_(bucket|count|sum)$/, '')]?.[0];
                return (
                  <li key={n}>
                    <button type="button" class="linkish mono" onClick={() => props.onPick(n)}>
                      {n}
                    </button>
                    {m && (
                      <span class="muted small">
                        {' '}
                        <span class="tag tiny">{m.type}</span> {m.help}
                      </span>
                    )}
                  </li>
                );
              })}
          </ul>
        )}
      </Panel>
    </div>
  );
}
