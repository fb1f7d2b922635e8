// Cardinality: where the series come from (top metrics, label names by distinct values,
// label pairs), from /api/v1/status/tsdb; a metric's labels on click; and the guard's
// overflow and limits once the rules engine reports them.
import { type CardinalityGuard, type SelfSample, type TsdbStatus, prom, selfMetrics, useAsync } from '../api';
import { fmtBytes, fmtDateTime, fmtNum } from '../format';
import { Link, hrefKeepTime, setParams, useLoc } from '../router';
import { Empty, ErrorBox, Loading, NotAvailable, Panel, Stat, useRefreshTick } from '../ui';

function Bars(props: { rows: { name: string; value: number }[]; unit?: 'bytes'; link?: (name: string) => string; onPick?: (name: string) => void; testId?: string }) {
  const max = Math.max(1, ...props.rows.map((r) => r.value));
  return (
    <table class="data bars" data-testid={props.testId}>
      <tbody>
        {props.rows.map((r) => (
          <tr key={r.name}>
            <td class="bar-name">
              {props.onPick ? (
                <button type="button" class="linkish mono" onClick={() => props.onPick!(r.name)}>
                  {r.name}
                </button>
              ) : props.link ? (
                <Link class="mono" href={props.link(r.name)}>
                  {r.name}
                </Link>
              ) : (
                <span class="mono">{r.name}</span>
              )}
            </td>
            <td class="bar-cell">
              <span class="hbar" style={{ width: `${(r.value / max) * 100}%` }} />
            </td>
            <td class="num">{props.unit === 'bytes' ? fmtBytes(r.value) : fmtNum(r.value)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function Cardinality() {
  const { q } = useLoc();
  const metric = q.get('metric');
  const focus = q.get('label');
  const tick = useRefreshTick();
  const st = useAsync<TsdbStatus>((s) => prom.tsdb(20, s, focus ?? undefined), [tick, focus]);
  const self = useAsync((s) => selfMetrics(s), [tick]);
  const refused = (self.data ?? []).filter((m) => /(overflow|refused|rejected|dropped|limit)/.test(m.name) && !m.name.endsWith('_bucket'));
  return (
    <div class="page">
      <div class="page-head">
        <h1>Cardinality</h1>
        <p class="sub">Which metrics and labels make the series, from the in-memory head (<code>/api/v1/status/tsdb</code>).</p>
      </div>
      {st.error && <ErrorBox error={st.error} what="TSDB status" />}
      {!st.data && st.loading && <Loading what="TSDB status" />}
      {st.data && (
        <>
          <div class="stats">
            <Stat label="series in the head" value={fmtNum(st.data.headStats.numSeries)} testId="head-series" />
            <Stat label="label pairs" value={fmtNum(st.data.headStats.numLabelPairs)} />
            {st.data.headStats.numSamples !== undefined && <Stat label="samples in the head" value={fmtNum(st.data.headStats.numSamples)} />}
            {st.data.headStats.chunkBytes !== undefined && <Stat label="chunk bytes" value={fmtBytes(st.data.headStats.chunkBytes)} />}
            <Stat
              label="head covers"
              value={st.data.headStats.maxTime > st.data.headStats.minTime ? `${Math.round((st.data.headStats.maxTime - st.data.headStats.minTime) / 60000)} min` : '–'}
              hint={`${fmtDateTime(st.data.headStats.minTime)} → ${fmtDateTime(st.data.headStats.maxTime)}`}
            />
          </div>
          {metric && <MetricLabels metric={metric} />}
          {focus && <LabelValues label={focus} counts={st.data.seriesCountByFocusLabelValue} />}
          <div class="grid3">
            <Panel title="Top metrics by series">
              <Bars rows={st.data.seriesCountByMetricName} onPick={(n) => setParams({ metric: n })} testId="top-metrics" />
            </Panel>
            <Panel title="Label names by distinct values">
              <Bars rows={st.data.labelValueCountByLabelName} onPick={(n) => setParams({ label: n })} testId="top-labels" />
            </Panel>
            <Panel title="Label pairs by series">
              <Bars rows={st.data.seriesCountByLabelValuePair} />
            </Panel>
            <Panel title="Memory by label name">
              <Bars rows={st.data.memoryInBytesByLabelName} unit="bytes" />
            </Panel>
          </div>
        </>
      )}
      {st.data && <Guard guard={st.data.cardinalityGuard} refused={refused} />}
    </div>
  );
}

function MetricLabels(props: { metric: string }) {
  const series = useAsync((s) => prom.series(props.metric, undefined, undefined, s), [props.metric]);
  const counts = new Map<string, Set<string>>();
  for (const s of series.data ?? []) for (const [k, v] of Object.entries(s)) if (k !== '__name__') (counts.get(k) ?? counts.set(k, new Set()).get(k)!).add(v);
  const rows = [...counts].map(([name, vals]) => ({ name, value: vals.size })).sort((a, b) => b.value - a.value);
  return (
    <Panel
      title={
        <>
          <span class="mono">{props.metric}</span>: {series.data ? `${fmtNum(series.data.length)} series` : '…'}
        </>
      }
      actions={
        <>
          <Link href={hrefKeepTime('/explore', { q: props.metric, tab: 'table' })}>query</Link>
          <button type="button" class="btn ghost small" onClick={() => setParams({ metric: null })}>
            close
          </button>
        </>
      }
      testId="metric-labels"
    >
      {series.error && <ErrorBox error={series.error} what="series" />}
      {series.data && (rows.length ? <Bars rows={rows} /> : <Empty>No labels besides the name.</Empty>)}
    </Panel>
  );
}

/** The cardinality guard (rule engine): budgets, overflow, growth and the rules at work. */
function Guard(props: { guard?: CardinalityGuard | null; refused: SelfSample[] }) {
  const g = props.guard;
  if (!g) {
    return (
      <Panel title="Cardinality guard">
        <NotAvailable feature="Cardinality budgets and overflow">
          <span>
            Series budgets, overflow counts and the label rules that limit series come with the rule engine; this build's{' '}
            <code>/api/v1/status/tsdb</code> reports no <code>cardinalityGuard</code>.
          </span>
        </NotAvailable>
      </Panel>
    );
  }
  const overflow = g.overflow ?? [];
  const limits = g.limits ?? [];
  const growth = (g.growthLastHour ?? []).filter((m) => m.createdLastHour > 0);
  return (
    <Panel title="Cardinality guard" testId="guard">
      <div class="stats">
        <Stat label="series tracked" value={fmtNum(g.trackedSeries)} />
        <Stat label="global budget" value={g.maxSeries ? fmtNum(g.maxSeries) : 'none'} />
        <Stat
          label="samples refused (overflow)"
          value={fmtNum(overflow.reduce((a, o) => a + o.samples, 0))}
          tone={overflow.length ? 'bad' : 'good'}
        />
        <Stat label="rules at work" value={fmtNum(limits.length)} />
      </div>
      <div class="grid2">
        <div>
          <h3>Overflow: refused, counted, never silent</h3>
          {overflow.length ? (
            <table class="data" data-testid="overflow">
              <thead>
                <tr>
                  <th>Metric</th>
                  <th>Limit</th>
                  <th class="num">Budget</th>
                  <th class="num">Series refused</th>
                  <th class="num">Samples refused</th>
                </tr>
              </thead>
              <tbody>
                {overflow.map((o) => (
                  <tr key={o.metric}>
                    <td class="mono small">{o.metric}</td>
                    <td>{o.limit}</td>
                    <td class="num">{fmtNum(o.budget)}</td>
                    <td class="num">{fmtNum(o.seriesRefused)}</td>
                    <td class="num bad-text">{fmtNum(o.samples)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <Empty>No metric is over its budget.</Empty>
          )}
          <h3>Rules limiting series</h3>
          {limits.length ? (
            <table class="data">
              <tbody>
                {limits.map((l, i) => (
                  <tr key={i}>
                    <td>
                      <b>{l.rule}</b>
                      <div class="muted small">{l.detail}</div>
                    </td>
                    <td class="mono small">{l.what}</td>
                    <td class="num">{fmtNum(l.count)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <Empty>No rule has had to act.</Empty>
          )}
        </div>
        <div>
          <h3>New series in the last hour</h3>
          {growth.length ? (
            <table class="data bars">
              <tbody>
                {growth.map((m) => (
                  <tr key={m.metric}>
                    <td class="bar-name mono">{m.metric}</td>
                    <td class="bar-cell">
                      <span class="hbar" style={{ width: `${Math.min(100, (m.series / Math.max(1, m.budget || m.series)) * 100)}%` }} title={m.budget ? `${m.series} of a budget of ${m.budget}` : undefined} />
                    </td>
                    <td class="num">+{fmtNum(m.createdLastHour)}</td>
                    <td class="num muted">{m.budget ? `${fmtNum(m.series)} / ${fmtNum(m.budget)}` : fmtNum(m.series)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <Empty>No metric gained series in the last hour.</Empty>
          )}
          {props.refused.length > 0 && (
            <>
              <h3>Refused at ingest (self-metrics)</h3>
              <table class="data">
                <tbody>
                  {props.refused.map((m, i) => (
                    <tr key={i}>
                      <td class="mono small">
                        {m.name}
                        {Object.keys(m.labels).length ? ` ${JSON.stringify(m.labels)}` : ''}
                      </td>
                      <td class="num">{fmtNum(m.value)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
        </div>
      </div>
    </Panel>
  );
}

/** One label's values: series per value when the API counts them (focusLabel), else the values. */
function LabelValues(props: { label: string; counts?: { name: string; value: number }[] | null }) {
  const values = useAsync((s) => (props.counts ? Promise.resolve(null) : prom.labelValues(props.label, undefined, s)), [props.label, !!props.counts]);
  const close = (
    <button type="button" class="btn ghost small" onClick={() => setParams({ label: null })}>
      close
    </button>
  );
  return (
    <Panel
      title={
        <>
          Label <span class="mono">{props.label}</span>
        </>
      }
      actions={close}
      testId="label-values"
    >
      {props.counts && <Bars rows={props.counts} />}
      {values.error && <ErrorBox error={values.error} what="label values" />}
      {values.data && (
        <>
          <p class="muted small">{fmtNum(values.data.length)} distinct values (this build does not count series per value).</p>
          <div class="chips">
            {values.data.slice(0, 200).map((v) => (
              <span key={v} class="chip mono small">
                {v}
              </span>
            ))}
          </div>
        </>
      )}
    </Panel>
  );
}
