// One trace, correlated: the waterfall on a time axis with the critical path marked, span
// details, the trace's log lines in time order (a line selects its span), the metric
// exemplars that point here and the RED of every service it touched.
import { useEffect, useMemo, useState } from 'preact/hooks';

import { Chart } from '../chart';
import { type CorrelatedLog, type CorrelatedSpan, type Correlation, type OtlpTrace, correlate, isNotAvailable, loki, otlpText, tempo, useAsync } from '../api';
import { fmtClockMs, fmtDateTime, fmtLabels, fmtNanos, fmtNum, fmtSeconds } from '../format';
import { CALLS, LATENCY } from '../red';
import { Link, hrefKeepTime, setParams, useLoc } from '../router';
import { colorFor } from '../theme';
import { CopyButton, Empty, ErrorBox, Loading, NotAvailable, Panel, ServiceChip } from '../ui';

interface Row {
  span: CorrelatedSpan;
  depth: number;
  children: number;
  start: number;
  dur: number;
}

/** Spans in tree order (children by start time), with their depth. */
function treeOrder(spans: CorrelatedSpan[]): Row[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const kids = new Map<string, CorrelatedSpan[]>();
  const roots: CorrelatedSpan[] = [];
  for (const s of spans) {
    if (s.parentSpanId && ids.has(s.parentSpanId)) kids.set(s.parentSpanId, [...(kids.get(s.parentSpanId) ?? []), s]);
    else roots.push(s);
  }
  const byStart = (a: CorrelatedSpan, b: CorrelatedSpan) => Number(a.startTimeUnixNano) - Number(b.startTimeUnixNano);
  const out: Row[] = [];
  const seen = new Set<string>();
  const walk = (s: CorrelatedSpan, depth: number) => {
    if (seen.has(s.spanId)) return;
    seen.add(s.spanId);
    const c = (kids.get(s.spanId) ?? []).sort(byStart);
    out.push({ span: s, depth, children: c.length, start: Number(s.startTimeUnixNano), dur: Number(s.durationNanos) });
    c.forEach((k) => walk(k, depth + 1));
  };
  roots.sort(byStart).forEach((r) => walk(r, 0));
  return out;
}

/** About six ticks at a round interval. */
function ticks(totalNs: number): number[] {
  if (totalNs <= 0) return [0];
  const raw = totalNs / 6;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = 0; t <= totalNs * 1.0001; t += step) out.push(t);
  return out;
}

/** Where a bar's duration goes: after the bar, before it, or inside a bar that fills the row. */
function durLabel(startFrac: number, endFrac: number): { cls: string; style: Record<string, string> } {
  if (endFrac <= 0.82) return { cls: '', style: { left: `${endFrac * 100}%` } };
  if (startFrac >= 0.15) return { cls: 'before', style: { right: `${(1 - startFrac) * 100}%` } };
  return { cls: 'in-bar', style: { right: `${(1 - endFrac) * 100}%` } };
}

/** The value of a `[ms, v]` series nearest to `ms`. */
function at(series: [number, number][], ms: number): number | undefined {
  let best: [number, number] | undefined;
  for (const p of series) if (!best || Math.abs(p[0] - ms) < Math.abs(best[0] - ms)) best = p;
  return best?.[1];
}

function level(l: CorrelatedLog): string {
  const v = (l.labels.level ?? l.labels.detected_level ?? l.labels.severity ?? '').toLowerCase();
  if (v) return v;
  const m = /\b(?:level|lvl|severity)["=:\s]+"?(\w+)/i.exec(l.line);
  return m ? m[1].toLowerCase() : '';
}

const levelClass = (lv: string) => (/^(err|error|fatal|crit|panic)/.test(lv) ? 'bad' : /^warn/.test(lv) ? 'warn' : 'muted');

export function TraceView(props: { id: string }) {
  const { q } = useLoc();
  const data = useAsync((s) => correlate(props.id, s), [props.id]);
  // Resource attributes (instance, version, SDK) are in the OTLP form only.
  const otlp = useAsync((s) => tempo.trace(props.id, s), [props.id]);
  const logsApi = useAsync(async (s) => {
    try {
      await loki.labels(undefined, undefined, s);
      return true;
    } catch (e) {
      if (isNotAvailable(e)) return false;
      return true;
    }
  }, []);

  if (data.error)
    return (
      <div class="page">
        <div class="crumbs">
          <Link href={hrefKeepTime('/traces')}>Traces</Link> /
        </div>
        <h1 class="mono">{props.id}</h1>
        <ErrorBox error={data.error} what="the trace" />
      </div>
    );
  if (!data.data) return <div class="page"><Loading what="the trace" /></div>;
  return <TraceBody c={data.data} selected={q.get('span')} logsAvailable={logsApi.data !== false} resources={otlp.data ? resourcesBySpan(otlp.data) : undefined} />;
}

/** Each span's resource attributes, from the OTLP form of the trace. */
function resourcesBySpan(t: OtlpTrace): Map<string, [string, string][]> {
  const m = new Map<string, [string, string][]>();
  for (const b of t.batches ?? []) {
    const attrs = (b.resource?.attributes ?? []).map((a) => [a.key, otlpText(a.value)] as [string, string]);
    for (const ss of b.scopeSpans ?? []) for (const sp of ss.spans ?? []) m.set(sp.spanId, attrs);
  }
  return m;
}

function TraceBody(props: { c: Correlation; selected: string | null; logsAvailable: boolean; resources?: Map<string, [string, string][]> }) {
  const { c } = props;
  const rows = useMemo(() => treeOrder(c.spans), [c]);
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  const critOnly = useLoc().q.get('crit') === '1';
  const setCritOnly = (on: boolean) => setParams({ crit: on ? '1' : null }, { replace: true });
  const t0 = Number(c.startTimeUnixNano);
  const total = Math.max(1, Number(c.durationNanos));
  const logs = useMemo(() => [...c.logs].sort((a, b) => Number(a.timestampNs) - Number(b.timestampNs)), [c]);
  const logsBySpan = useMemo(() => {
    const m = new Map<string, CorrelatedLog[]>();
    for (const l of logs) if (l.spanId) m.set(l.spanId, [...(m.get(l.spanId) ?? []), l]);
    return m;
  }, [logs]);
  const byId = useMemo(() => new Map(c.spans.map((s) => [s.spanId, s])), [c]);
  const services = [...new Set(c.spans.map((s) => s.service))];

  // Rows under a collapsed span are hidden.
  const visible: Row[] = [];
  let hideBelow = -1;
  for (const r of rows) {
    if (hideBelow >= 0 && r.depth > hideBelow) continue;
    hideBelow = collapsed.has(r.span.spanId) ? r.depth : -1;
    if (critOnly && !r.span.criticalPath) continue;
    visible.push(r);
  }
  const sel = props.selected && byId.has(props.selected) ? props.selected : null;
  const select = (id: string | null, scroll = false) => {
    setParams({ span: id }, { replace: true });
    if (id && scroll) {
      requestAnimationFrame(() => document.querySelector(`[data-span-id="${id}"]`)?.scrollIntoView({ block: 'nearest', behavior: 'smooth' }));
    }
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (e.ctrlKey || e.metaKey || e.altKey || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName)) return;
      const i = visible.findIndex((r) => r.span.spanId === sel);
      if (e.key === 'j' || e.key === 'ArrowDown') {
        e.preventDefault();
        const next = visible[Math.min(visible.length - 1, i + 1)];
        if (next) select(next.span.spanId, true);
      } else if (e.key === 'k' || e.key === 'ArrowUp') {
        e.preventDefault();
        const prev = visible[Math.max(0, i - 1)];
        if (prev) select(prev.span.spanId, true);
      } else if (e.key === 'Escape' && sel) {
        select(null);
      } else if ((e.key === 'ArrowLeft' || e.key === 'ArrowRight') && sel) {
        const n = new Set(collapsed);
        if (e.key === 'ArrowLeft') n.add(sel);
        else n.delete(sel);
        setCollapsed(n);
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  const errors = c.errorSpanIds.length;
  const slowest = c.slowestSpanId ? byId.get(c.slowestSpanId) : undefined;
  // Where the errors start: failed spans none of whose children failed.
  const failedParents = new Set(c.spans.filter((s) => s.status === 'STATUS_CODE_ERROR' && s.parentSpanId).map((s) => s.parentSpanId!));
  const origins = c.spans.filter((s) => s.status === 'STATUS_CODE_ERROR' && !failedParents.has(s.spanId));
  const tk = ticks(total);
  const selSpan = sel ? byId.get(sel) : undefined;
  const pct = (ns: number) => `${(ns / total) * 100}%`;

  return (
    <div class="page trace-page">
      <div class="page-head">
        <div class="crumbs">
          <Link href={hrefKeepTime('/traces')}>Traces</Link> /
        </div>
        <h1>
          <ServiceChip name={c.rootService} /> <span class="op-name">{c.rootName}</span>
          <span class="h1-dur">{fmtNanos(total)}</span>
        </h1>
        <div class="trace-meta">
          <span class="mono" data-testid="trace-id">
            {c.traceId}
          </span>
          <CopyButton text={c.traceId} label="copy id" />
          <span>{fmtDateTime(t0 / 1e6)}</span>
          <span data-testid="span-count">{c.spans.length} spans</span>
          <span>{services.length} services</span>
          {errors > 0 && <span class="tag bad">{errors} error spans</span>}
          <span class="grow" />
          <Link class="btn small" href={hrefKeepTime('/logs', { q: `{job=~".+"} |= "${c.traceId}"` })}>
            Search logs
          </Link>
          <a class="btn small" href={`/api/traces/${c.traceId}`} target="_blank" rel="noreferrer">
            OTLP JSON
          </a>
        </div>
        {origins.map((o) => (
          <p class="insight bad" key={o.spanId} data-testid="error-insight">
            The error starts in <b>{o.service}</b> › <code>{o.name}</code>
            {o.statusMessage ? (
              <>
                : <b>{o.statusMessage}</b>
              </>
            ) : (
              ''
            )}
            .{' '}
            <button type="button" class="linkish" onClick={() => select(o.spanId, true)}>
              Show span
            </button>
          </p>
        ))}
        {slowest && (
          <p class="insight" data-testid="slowest-insight">
            Most of the time goes to <b>{slowest.service}</b> › <code>{slowest.name}</code>:{' '}
            <b>{fmtNanos(Number(slowest.selfTimeNanos))}</b> of its own time ({Math.round((Number(slowest.selfTimeNanos) / total) * 100)}% of the trace).{' '}
            <button type="button" class="linkish" onClick={() => select(slowest.spanId, true)}>
              Show span
            </button>
          </p>
        )}
      </div>

      <div class={`trace-grid ${selSpan ? 'with-details' : ''}`}>
        <Panel
          class="waterfall-panel"
          title="Waterfall"
          actions={
            <>
              <span class="legend-inline">
                <span class="crit-key" /> critical path
              </span>
              <label class="check">
                <input type="checkbox" checked={critOnly} onChange={(e) => setCritOnly((e.target as HTMLInputElement).checked)} /> only the critical path
              </label>
            </>
          }
        >
          <div class="waterfall" role="tree" aria-label="spans" data-testid="waterfall" data-rows={visible.length}>
            <div class="wf-axis">
              <div class="wf-name wf-services">
                {services.map((s) => (
                  <ServiceChip key={s} name={s} small />
                ))}
              </div>
              <div class="wf-track">
                {tk.map((t) => (
                  <span key={t} class="wf-tick" style={{ left: pct(t) }}>
                    {fmtNanos(t)}
                  </span>
                ))}
              </div>
            </div>
            {visible.map((r) => {
              const s = r.span;
              const off = r.start - t0;
              const err = s.status === 'STATUS_CODE_ERROR';
              const spanLogs = logsBySpan.get(s.spanId) ?? [];
              const label = durLabel(off / total, (off + r.dur) / total);
              return (
                <div
                  key={s.spanId}
                  class={`wf-row ${sel === s.spanId ? 'sel' : ''} ${s.criticalPath ? 'crit' : ''} ${err ? 'err' : ''}`}
                  role="treeitem"
                  aria-selected={sel === s.spanId}
                  aria-level={r.depth + 1}
                  data-testid="span-row"
                  data-span-id={s.spanId}
                  data-critical={s.criticalPath ? 'true' : 'false'}
                  onClick={() => select(sel === s.spanId ? null : s.spanId)}
                >
                  <div class="wf-name" style={{ paddingLeft: `${8 + r.depth * 14}px` }}>
                    {r.children > 0 ? (
                      <button
                        type="button"
                        class="caret"
                        aria-label={collapsed.has(s.spanId) ? 'expand' : 'collapse'}
                        onClick={(e) => {
                          e.stopPropagation();
                          const n = new Set(collapsed);
                          if (n.has(s.spanId)) n.delete(s.spanId);
                          else n.add(s.spanId);
                          setCollapsed(n);
                        }}
                      >
                        {collapsed.has(s.spanId) ? '▸' : '▾'}
                      </button>
                    ) : (
                      <span class="caret-space" />
                    )}
                    <i class="dot" style={{ background: colorFor(s.service) }} />
                    <span class="wf-svc">{s.service}</span>
                    <span class="wf-op" title={s.name}>
                      {s.name}
                    </span>
                    {err && <span class="tag bad tiny">error</span>}
                    {s.spanId === c.slowestSpanId && <span class="tag warn tiny">slowest</span>}
                  </div>
                  <div class="wf-track">
                    {tk.map((t) => (
                      <span key={t} class="wf-grid" style={{ left: pct(t) }} />
                    ))}
                    <span
                      class="wf-bar"
                      style={{ left: pct(off), width: `max(2px, ${pct(r.dur)})`, background: colorFor(s.service) }}
                      title={`${fmtNanos(r.dur)} (self ${fmtNanos(Number(s.selfTimeNanos))})`}
                    />
                    {spanLogs.map((l, i) => (
                      <span key={i} class={`wf-log ${levelClass(level(l))}`} style={{ left: pct(Number(l.timestampNs) - t0) }} title={l.line} />
                    ))}
                    <span class={`wf-dur ${label.cls}`} style={label.style}>
                      {fmtNanos(r.dur)}
                    </span>
                  </div>
                </div>
              );
            })}
          </div>
        </Panel>
        {selSpan && <SpanDetails span={selSpan} resource={props.resources?.get(selSpan.spanId)} t0={t0} logs={logsBySpan.get(selSpan.spanId) ?? []} parent={selSpan.parentSpanId ? byId.get(selSpan.parentSpanId) : undefined} onClose={() => select(null)} onSelect={(id) => select(id, true)} />}
      </div>

      <Panel title={<span data-testid="log-count" data-count={logs.length}>Logs ({logs.length})</span>} testId="trace-logs">
        {logs.length === 0 ? (
          props.logsAvailable ? (
            <Empty>No log lines carry this trace id.</Empty>
          ) : (
            <NotAvailable feature="Log store">
              <span>Log lines of this trace appear here once lastmile stores logs (Loki push, OTLP logs).</span>
            </NotAvailable>
          )
        ) : (
          <LogLines logs={logs} t0={t0} byId={byId} selected={sel} onSelect={(id) => select(id, true)} />
        )}
      </Panel>

      {c.exemplars.length > 0 && (
        <Panel title={`Metrics pointing at this trace (${c.exemplars.length} exemplars)`}>
          <table class="data">
            <tbody>
              {c.exemplars.map((e, i) => (
                <tr key={i}>
                  <td>
                    <Link class="mono small" href={hrefKeepTime('/explore', { q: fmtLabels(e.series) })}>
                      {fmtLabels(e.series)}
                    </Link>
                  </td>
                  <td class="num">{fmtNum(e.value)}</td>
                  <td class="nowrap muted">{fmtClockMs(e.timestamp)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Panel>
      )}

      {c.services.length > 0 && (
        <Panel title="Services in this trace, around the time it ran">
          <div class="red-grid">
            {c.services.map((s) => (
              <div class="red-card" key={s.service}>
                <div class="red-card-head">
                  <Link href={hrefKeepTime(`/services/${encodeURIComponent(s.service)}`)}>
                    <ServiceChip name={s.service} />
                  </Link>
                  <span class="muted small" title="at the time of this trace">
                    {fmtNum(at(s.rate, t0 / 1e6))} req/s · p99 {fmtSeconds(at(s.p99, t0 / 1e6))}
                  </span>
                </div>
                <Chart
                  series={[
                    { label: 'p50', points: s.p50.map(([t, v]) => [t / 1000, v] as [number, number]), color: '#4c7ef3' },
                    { label: 'p99', points: s.p99.map(([t, v]) => [t / 1000, v] as [number, number]), color: '#e8833a' },
                  ]}
                  unit="seconds"
                  height={110}
                  legend={false}
                  marker={t0 / 1e9}
                />
              </div>
            ))}
          </div>
          <p class="muted small">
            From span metrics <code>{CALLS}</code> and <code>{LATENCY}</code>; the line marks this trace.
          </p>
        </Panel>
      )}
    </div>
  );
}

function SpanDetails(props: {
  span: CorrelatedSpan;
  resource?: [string, string][];
  parent?: CorrelatedSpan;
  t0: number;
  logs: CorrelatedLog[];
  onClose: () => void;
  onSelect: (id: string) => void;
}) {
  const s = props.span;
  const start = Number(s.startTimeUnixNano);
  const attrs = Object.entries(s.attributes);
  const err = s.status === 'STATUS_CODE_ERROR';
  const opQuery = `histogram_quantile(0.99, sum by (le) (rate(${LATENCY}{service=${JSON.stringify(s.service)}, span_name=${JSON.stringify(s.name)}}[5m])))`;
  return (
    <aside class="span-details panel" aria-label="span details" data-testid="span-details" data-span-id={s.spanId}>
      <header class="panel-head">
        <h2 class="op-name">{s.name}</h2>
        <button type="button" class="btn ghost icon" onClick={props.onClose} aria-label="close span details" title="close (Esc)">
          ×
        </button>
      </header>
      <div class="kv">
        <span>Service</span>
        <span>
          <ServiceChip name={s.service} />
        </span>
        <span>Status</span>
        <span class={err ? 'bad-text' : ''}>
          {s.status.replace('STATUS_CODE_', '').toLowerCase()}
          {s.statusMessage ? `: ${s.statusMessage}` : ''}
        </span>
        <span>Kind</span>
        <span>{s.kind.replace('SPAN_KIND_', '').toLowerCase()}</span>
        <span>Duration</span>
        <span>
          <b>{fmtNanos(Number(s.durationNanos))}</b> (own time {fmtNanos(Number(s.selfTimeNanos))})
        </span>
        <span>Starts at</span>
        <span>
          +{fmtNanos(start - props.t0)} · {fmtClockMs(start / 1e6)}
        </span>
        <span>Critical path</span>
        <span>{s.criticalPath ? 'yes: this span determined the trace’s duration' : 'no'}</span>
        <span>Span id</span>
        <span class="mono">{s.spanId}</span>
        {props.parent && (
          <>
            <span>Parent</span>
            <span>
              <button type="button" class="linkish" onClick={() => props.onSelect(props.parent!.spanId)}>
                {props.parent.service} › {props.parent.name}
              </button>
            </span>
          </>
        )}
      </div>
      <h3>Attributes</h3>
      {attrs.length ? (
        <table class="attrs">
          <tbody>
            {attrs.map(([k, v]) => (
              <tr key={k}>
                <th>{k}</th>
                <td>{v}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p class="muted">none</p>
      )}
      {props.resource && props.resource.length > 0 && (
        <>
          <h3>Process</h3>
          <table class="attrs">
            <tbody>
              {props.resource.map(([k, v]) => (
                <tr key={k}>
                  <th>{k}</th>
                  <td>{v}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {s.events.length > 0 && (
        <>
          <h3>Events</h3>
          <ul class="events">
            {s.events.map((e, i) => (
              <li key={i}>
                <span class="muted">+{fmtNanos(Number(e.timeUnixNano) - props.t0)}</span> <b>{e.name}</b>
                {Object.entries(e.attributes).map(([k, v]) => (
                  <div key={k} class="small">
                    <span class="muted">{k}</span> {v}
                  </div>
                ))}
              </li>
            ))}
          </ul>
        </>
      )}
      {props.logs.length > 0 && (
        <>
          <h3>Logs of this span ({props.logs.length})</h3>
          <ul class="span-logs">
            {props.logs.map((l, i) => (
              <li key={i} class="mono small">
                <span class={`tag tiny ${levelClass(level(l))}`}>{level(l) || 'log'}</span> {l.line}
              </li>
            ))}
          </ul>
        </>
      )}
      <h3>Go further</h3>
      <div class="link-list">
        <Link href={hrefKeepTime('/explore', { q: opQuery })}>p99 of this operation</Link>
        <Link href={hrefKeepTime('/traces', { service: s.service, operation: s.name })}>Other traces of this operation</Link>
        <Link href={hrefKeepTime('/go', { job: s.service })}>Go runtime of {s.service}</Link>
      </div>
    </aside>
  );
}

function LogLines(props: { logs: CorrelatedLog[]; t0: number; byId: Map<string, CorrelatedSpan>; selected: string | null; onSelect: (id: string) => void }) {
  return (
    <ol class="log-lines" data-testid="trace-log-lines">
      {props.logs.map((l, i) => {
        const span = l.spanId ? props.byId.get(l.spanId) : undefined;
        const lv = level(l);
        const svc = l.labels.service_name ?? l.labels.service ?? l.labels.job ?? span?.service ?? '';
        return (
          <li
            key={i}
            class={`log-line ${span ? 'linked' : ''} ${span && props.selected === span.spanId ? 'sel' : ''}`}
            data-testid="log-line"
            data-span-id={l.spanId ?? ''}
            tabIndex={span ? 0 : undefined}
            role={span ? 'button' : undefined}
            title={span ? `select span ${span.service} › ${span.name}` : undefined}
            onClick={() => span && props.onSelect(span.spanId)}
            onKeyDown={(e) => {
              if (span && (e.key === 'Enter' || e.key === ' ')) {
                e.preventDefault();
                props.onSelect(span.spanId);
              }
            }}
          >
            <span class="log-time">+{fmtNanos(Number(l.timestampNs) - props.t0)}</span>
            <span class={`tag tiny ${levelClass(lv)}`}>{lv || 'log'}</span>
            {svc && <ServiceChip name={svc} small />}
            <span class="log-text">{l.line}</span>
            {span && <span class="log-span">→ {span.name}</span>}
          </li>
        );
      })}
    </ol>
  );
}
