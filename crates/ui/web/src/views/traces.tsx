// Trace search: service, operation, status, duration bounds, tags and the time range, all
// in the URL; results as a duration-over-time scatter and a table.
import { useEffect, useState } from 'preact/hooks';

import { type TraceSummary, tempo, useAsync } from '../api';
import { fmtClock, fmtDateTime, fmtSeconds } from '../format';
import { Link, href, navigate, setParams, useLoc } from '../router';
import { parseDuration } from '../time';
import { Empty, ErrorBox, Loading, Panel, ServiceChip, useRange, useWidth } from '../ui';

const FIELDS = ['service', 'operation', 'status', 'minDuration', 'maxDuration', 'tags', 'limit'] as const;
type Form = Record<(typeof FIELDS)[number], string>;

function formFrom(q: URLSearchParams): Form {
  const f = {} as Form;
  for (const k of FIELDS) f[k] = q.get(k) ?? '';
  return f;
}

export function TraceSearch() {
  const { q } = useLoc();
  const range = useRange('1h');
  const applied = formFrom(q);
  const [form, setForm] = useState<Form>(applied);
  const key = FIELDS.map((k) => applied[k]).join('|');
  useEffect(() => setForm(formFrom(q)), [key]);

  const services = useAsync((s) => tempo.tagValues('service.name', s), []);
  const operations = useAsync((s) => tempo.tagValues('name', s), []);
  const limit = Number(applied.limit) || 50;
  const results = useAsync(
    (s) =>
      tempo.search(
        {
          service: applied.service || undefined,
          operation: applied.operation || undefined,
          status: applied.status || undefined,
          minDuration: applied.minDuration || undefined,
          maxDuration: applied.maxDuration || undefined,
          tags: applied.tags || undefined,
          limit,
          start: Math.floor(range.start),
          end: Math.ceil(range.end),
        },
        s,
      ),
    [key, range.start, range.end],
  );

  const bad = (k: 'minDuration' | 'maxDuration') => form[k] !== '' && parseDuration(form[k]) === null;
  const submit = (e: Event) => {
    e.preventDefault();
    if (bad('minDuration') || bad('maxDuration')) return;
    setParams({ ...form, limit: form.limit && form.limit !== '50' ? form.limit : null });
  };
  const set = (k: keyof Form) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });

  return (
    <div class="page">
      <div class="page-head">
        <h1>Traces</h1>
      </div>
      <form class="search-form" onSubmit={submit} aria-label="trace search">
        <label>
          Service
          <select value={form.service} onChange={set('service')} data-testid="f-service">
            <option value="">any</option>
            {(services.data ?? []).map((s) => (
              <option key={s}>{s}</option>
            ))}
            {form.service && !(services.data ?? []).includes(form.service) && <option>{form.service}</option>}
          </select>
        </label>
        <label>
          Operation
          <input list="ops" value={form.operation} onInput={set('operation')} placeholder="any" data-testid="f-operation" />
          <datalist id="ops">
            {(operations.data ?? []).map((o) => (
              <option key={o} value={o} />
            ))}
          </datalist>
        </label>
        <label>
          Status
          <select value={form.status} onChange={set('status')} data-testid="f-status">
            <option value="">any</option>
            <option value="error">error</option>
            <option value="ok">ok</option>
            <option value="unset">unset</option>
          </select>
        </label>
        <label class={bad('minDuration') ? 'invalid' : ''}>
          Min duration
          <input value={form.minDuration} onInput={set('minDuration')} placeholder="e.g. 500ms" size={8} data-testid="f-min" />
        </label>
        <label class={bad('maxDuration') ? 'invalid' : ''}>
          Max duration
          <input value={form.maxDuration} onInput={set('maxDuration')} placeholder="e.g. 2s" size={8} />
        </label>
        <label class="grow">
          Tags
          <input value={form.tags} onInput={set('tags')} placeholder='http.route="/cart" db.system=postgresql' data-primary-input />
        </label>
        <label>
          Limit
          <input value={form.limit} onInput={set('limit')} placeholder="50" size={4} inputMode="numeric" />
        </label>
        <button class="btn primary" type="submit">
          Search
        </button>
      </form>
      {results.error && <ErrorBox error={results.error} what="traces" />}
      {results.loading && !results.data && <Loading what="traces" />}
      {results.data && (
        <Panel
          testId="trace-search-results"
          data={{ start: Math.floor(range.start), end: Math.ceil(range.end), limit }}
          title={
            <span data-testid="trace-count" data-count={results.data.length}>
              {results.data.length} {results.data.length === 1 ? 'trace' : 'traces'}
              {results.data.length >= limit ? ` (the ${limit} most recent)` : ''}
            </span>
          }
        >
          {results.data.length === 0 ? (
            <Empty>No traces match in this time range. Widen the range or loosen a filter.</Empty>
          ) : (
            <>
              <Scatter traces={results.data} start={range.start} end={range.end} />
              <TraceTable traces={results.data} />
            </>
          )}
        </Panel>
      )}
    </div>
  );
}

function Scatter(props: { traces: TraceSummary[]; start: number; end: number }) {
  const [ref, width] = useWidth<HTMLDivElement>();
  return (
    <div ref={ref} class="scatter-wrap">
      {width > 0 && <ScatterSvg {...props} W={width} />}
    </div>
  );
}

function ScatterSvg(props: { traces: TraceSummary[]; start: number; end: number; W: number }) {
  const W = props.W;
  const H = 140;
  const pad = { l: 56, r: 10, t: 10, b: 22 };
  const ts = props.traces.map((t) => Number(t.startTimeUnixNano) / 1e9);
  const t0 = Math.min(props.start, ...ts);
  const t1 = Math.max(props.end, ...ts);
  const maxD = Math.max(...props.traces.map((t) => t.durationMs), 1);
  const x = (t: number) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (W - pad.l - pad.r);
  const y = (d: number) => H - pad.b - (d / maxD) * (H - pad.t - pad.b);
  const ticks = [0, 0.5, 1].map((f) => f * maxD);
  const xticks = [0, 0.25, 0.5, 0.75, 1].map((f) => t0 + f * (t1 - t0));
  return (
    <svg class="scatter" width={W} height={H} viewBox={`0 0 ${W} ${H}`} role="img" aria-label="trace durations over time">
      {ticks.map((d) => (
        <g key={d}>
          <line x1={pad.l} x2={W - pad.r} y1={y(d)} y2={y(d)} class="grid" />
          <text x={pad.l - 6} y={y(d) + 4} text-anchor="end" class="axis">
            {fmtSeconds(d / 1000)}
          </text>
        </g>
      ))}
      {xticks.map((t, i) => (
        <text key={t} x={x(t)} y={H - 6} text-anchor={i === 0 ? 'start' : i === xticks.length - 1 ? 'end' : 'middle'} class="axis">
          {fmtClock(t * 1000)}
        </text>
      ))}
      {props.traces.map((t, i) => (
        <a key={t.traceID} href={`/traces/${t.traceID}`} onClick={(e) => { e.preventDefault(); navigate(href(`/traces/${t.traceID}`)); }}>
          <circle cx={x(ts[i])} cy={y(t.durationMs)} r={t.errorCount ? 5 : 4} class={t.errorCount ? 'dot err' : 'dot'}>
            <title>
              {t.rootServiceName}: {t.rootTraceName} · {fmtSeconds(t.durationMs / 1000)}
              {t.errorCount ? ` · ${t.errorCount} errors` : ''}
            </title>
          </circle>
        </a>
      ))}
    </svg>
  );
}

function TraceTable(props: { traces: TraceSummary[] }) {
  const maxD = Math.max(...props.traces.map((t) => t.durationMs), 1);
  return (
    <div class="table-wrap">
      <table class="data traces-table" data-testid="trace-results">
        <thead>
          <tr>
            <th>Start</th>
            <th>Trace</th>
            <th class="num">Duration</th>
            <th class="num">Spans</th>
            <th>Services</th>
          </tr>
        </thead>
        <tbody>
          {props.traces.map((t) => {
            const start = Number(t.startTimeUnixNano) / 1e6;
            const d = t.durationNanos ? Number(t.durationNanos) / 1e9 : t.durationMs / 1000;
            return (
              <tr key={t.traceID} data-testid="trace-row" data-trace-id={t.traceID}>
                <td class="nowrap" title={fmtDateTime(start)}>
                  {fmtClock(start)}
                </td>
                <td>
                  <Link href={`/traces/${t.traceID}`} class="trace-link">
                    <ServiceChip name={t.rootServiceName} small /> <span class="op-name">{t.rootTraceName}</span>
                  </Link>
                  <span class="trace-id">{t.traceID.slice(0, 12)}</span>
                  {t.errorCount > 0 && <span class="tag bad">{t.errorCount} {t.errorCount === 1 ? 'error' : 'errors'}</span>}
                </td>
                <td class="num">
                  <div class="dur-cell">
                    <span class="dur-bar" style={{ width: `${Math.max(2, (t.durationMs / maxD) * 100)}%` }} />
                    <span>{fmtSeconds(d)}</span>
                  </div>
                </td>
                <td class="num">{t.spanCount}</td>
                <td>
                  <span class="svc-list">
                    {t.services.map((s) => (
                      <ServiceChip key={s.name} name={s.name} small />
                    ))}
                  </span>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
