// Services: the RED table (shared with Home) and one service's page — its charts, its
// operations, its slowest and failed traces, and links to its metrics and Go runtime.
import { Chart, Sparkline } from '../chart';
import { prom, tempo, useAsync } from '../api';
import { fmtAgo, fmtNum, fmtPct, fmtSeconds } from '../format';
import { type Findings, type Red, errorRatio, failing, findCulprits, loadRed, redQueries, slowThreshold, spiky } from '../red';
import { Link, href, hrefKeepTime, setParams } from '../router';
import { colorFor } from '../theme';
import { type TimeRange, autoStep } from '../time';
import { Empty, ErrorBox, Loading, Panel, ServiceChip, Stat, useRange } from '../ui';

export function ServiceTable(props: { reds: Red[]; findings?: Findings; range: TimeRange; linkBase?: string; operations?: boolean }) {
  const { reds, findings, range } = props;
  return (
    <div class="table-wrap">
      <table class="data red-table">
        <thead>
          <tr>
            <th>{props.operations ? 'Operation' : 'Service'}</th>
            <th class="num">Requests / s</th>
            <th class="num">Errors</th>
            <th class="num">p50</th>
            <th class="num">p99</th>
            <th>Traces</th>
          </tr>
        </thead>
        <tbody>
          {reds.map((r) => {
            const culpritSlow = !props.operations && findings?.slow?.service === r.name;
            const culpritFail = !props.operations && findings?.failing?.service === r.name;
            const isSlow = spiky(r) || culpritSlow;
            const isFailing = failing(r) || culpritFail;
            const svc = props.operations ? undefined : r.name;
            const traceParams = props.operations ? { service: props.linkBase, operation: r.name } : { service: r.name };
            return (
              <tr key={r.name} class={culpritFail ? 'row-bad' : culpritSlow ? 'row-warn' : ''} data-testid="service-row" data-service={r.name}>
                <td>
                  {svc ? (
                    <Link href={hrefKeepTime(`/services/${encodeURIComponent(r.name)}`)} class="row-title">
                      <ServiceChip name={r.name} />
                    </Link>
                  ) : (
                    <span class="row-title op-name">{r.name}</span>
                  )}
                  <span class="flags">
                    {isSlow && (
                      <span class={`tag ${culpritSlow ? 'warn' : 'muted'}`} title={`p99 up to ${fmtSeconds(r.p99Max)}, usually ${fmtSeconds(r.p99Usual)}`}>
                        {culpritSlow || !findings?.slow ? 'slow' : 'p99 spikes'}
                      </span>
                    )}
                    {isFailing && (
                      <span class={`tag ${culpritFail ? 'bad' : 'muted'}`}>
                        {culpritFail || !findings?.failing ? 'failing' : 'errors from downstream'}
                      </span>
                    )}
                  </span>
                </td>
                <td class="num">
                  <div class="cell-spark">
                    <Sparkline points={r.rate} color={colorFor(r.name)} start={range.start} end={range.end} title={`requests/s, now ${fmtNum(r.last.rate)}`} />
                    <span>{fmtNum(r.last.rate)}</span>
                  </div>
                </td>
                <td class="num">
                  <div class="cell-spark">
                    <Sparkline
                      points={r.errorRatio}
                      color={r.failed > 0 ? 'var(--bad)' : 'var(--muted)'}
                      max={Math.max(0.05, ...r.errorRatio.map((p) => p[1]))}
                      start={range.start}
                      end={range.end}
                      title={`error ratio, ${fmtPct(errorRatio(r))} over the range`}
                    />
                    <span class={isFailing ? 'bad-text' : ''}>{fmtPct(errorRatio(r))}</span>
                  </div>
                </td>
                <td class="num">{fmtSeconds(r.last.p50)}</td>
                <td class="num">
                  <div class="cell-spark">
                    <Sparkline points={r.p99} color="var(--warn)" start={range.start} end={range.end} title={`p99, up to ${fmtSeconds(r.p99Max)}`} />
                    <span class={isSlow ? 'warn-text' : ''}>{fmtSeconds(r.last.p99)}</span>
                  </div>
                </td>
                <td class="links">
                  <Link href={hrefKeepTime('/traces', { ...traceParams, minDuration: slowThreshold(r) })} data-testid="row-slow-traces" title={`traces slower than ${slowThreshold(r)}`}>
                    slow
                  </Link>
                  <Link href={hrefKeepTime('/traces', { ...traceParams, status: 'error' })} data-testid="row-failed-traces">
                    failed
                  </Link>
                  <Link href={hrefKeepTime('/traces', traceParams)}>all</Link>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function Services() {
  const range = useRange('1h');
  const step = autoStep(range.end - range.start, 90);
  const reds = useAsync((s) => loadRed(range.start, range.end, step, s), [range.start, range.end, step]);
  const findings = useAsync<Findings>(
    (s) => (reds.data ? findCulprits(reds.data, range.start, range.end, s) : new Promise<Findings>(() => undefined)),
    [reds.data],
  );
  return (
    <div class="page">
      <div class="page-head">
        <h1>Services</h1>
        <p class="sub">RED per service from span metrics (server spans): requests per second, error ratio, p50 and p99 latency.</p>
      </div>
      {reds.error && <ErrorBox error={reds.error} what="span metrics" />}
      {reds.loading && !reds.data && <Loading what="services" />}
      {reds.data && !reds.data.length && <Empty>No services have sent spans in this time range.</Empty>}
      {reds.data && reds.data.length > 0 && (
        <Panel>
          <ServiceTable reds={reds.data} findings={findings.data} range={range} />
        </Panel>
      )}
    </div>
  );
}

export function ServiceDetail(props: { name: string }) {
  const { name } = props;
  const range = useRange('1h');
  const step = autoStep(range.end - range.start, 200);
  const window = { start: Math.floor(range.start), end: Math.ceil(range.end) };
  const red = useAsync(async (s) => (await loadRed(range.start, range.end, step, s, name)).find(() => true), [name, range.start, range.end, step]);
  // Every span kind: a slow database call is a client span of this service.
  const ops = useAsync((s) => loadRed(range.start, range.end, autoStep(range.end - range.start, 60), s, name, 'span_name', false), [name, range.start, range.end]);
  const slowTraces = useAsync(
    (s) => (red.data ? tempo.search({ service: name, minDuration: slowThreshold(red.data), limit: 8, ...window }, s) : Promise.resolve([])),
    [name, red.data],
  );
  const failedTraces = useAsync((s) => tempo.search({ service: name, status: 'error', limit: 8, ...window }, s), [name, range.start, range.end]);
  const goMetrics = useAsync((s) => prom.series(`{__name__=~"go_goroutines|go_ebpf_gc_cycles_total", job=${JSON.stringify(name)}}`, range.start, range.end, s), [name, range.end]);
  const r = red.data;
  const qs = redQueries(step, name);
  const zoom = (a: number, b: number) => setParams({ from: a, to: b, range: null });
  return (
    <div class="page">
      <div class="page-head">
        <div class="crumbs">
          <Link href={hrefKeepTime('/services')}>Services</Link> /
        </div>
        <h1>
          <ServiceChip name={name} />
        </h1>
        <div class="head-links">
          <Link class="btn" href={hrefKeepTime('/traces', { service: name })}>
            Traces
          </Link>
          <Link class="btn" href={hrefKeepTime('/logs', { q: `{service_name=${JSON.stringify(name)}}` })}>
            Logs
          </Link>
          <Link class="btn" href={hrefKeepTime('/explore', { q: qs.p99 })}>
            Metrics
          </Link>
          {goMetrics.data && goMetrics.data.length > 0 && (
            <Link class="btn" href={hrefKeepTime('/go', { job: name })}>
              Go runtime
            </Link>
          )}
        </div>
      </div>
      {red.error && <ErrorBox error={red.error} what="span metrics" />}
      {red.loading && !red.data && <Loading what={name} />}
      {red.data === undefined && !red.loading && !red.error && <Empty>No span metrics for {name} in this time range.</Empty>}
      {r && (
        <>
          <div class="stats">
            <Stat label="requests / s now" value={fmtNum(r.last.rate)} />
            <Stat label="errors in range" value={fmtPct(errorRatio(r))} tone={failing(r) ? 'bad' : undefined} hint={`${fmtNum(r.failed)} of ${fmtNum(r.calls)}`} />
            <Stat label="p50 now" value={fmtSeconds(r.last.p50)} />
            <Stat label="p99 now" value={fmtSeconds(r.last.p99)} tone={spiky(r) ? 'warn' : undefined} />
            <Stat label="p99 peak" value={fmtSeconds(r.p99Max)} tone={spiky(r) ? 'warn' : undefined} />
          </div>
          <div class="grid2">
            <Panel title="Requests / s">
              <Chart series={[{ label: 'requests/s', points: r.rate, color: colorFor(name) }, { label: 'errors/s', points: r.errors, color: '#d9475c' }]} height={180} onZoom={zoom} />
            </Panel>
            <Panel title="Latency">
              <Chart
                series={[
                  { label: 'p50', points: r.p50, color: '#4c7ef3' },
                  { label: 'p99', points: r.p99, color: '#e8833a' },
                ]}
                unit="seconds"
                height={180}
                onZoom={zoom}
              />
            </Panel>
          </div>
        </>
      )}
      <Panel title="Operations" testId="operations">
        {ops.error && <ErrorBox error={ops.error} what="operations" />}
        {ops.data && <ServiceTable reds={ops.data} range={range} operations linkBase={name} />}
        {ops.loading && !ops.data && <Loading />}
      </Panel>
      <div class="grid2">
        <Panel title={r ? `Slow traces (over ${slowThreshold(r)})` : 'Slow traces'}>
          <TraceList a={slowTraces} />
        </Panel>
        <Panel title="Failed traces">
          <TraceList a={failedTraces} />
        </Panel>
      </div>
    </div>
  );
}

export function TraceList(props: { a: ReturnType<typeof useAsync<Awaited<ReturnType<typeof tempo.search>>>>; showService?: boolean }) {
  const { a } = props;
  if (a.error) return <ErrorBox error={a.error} what="traces" />;
  if (!a.data) return <Loading />;
  if (!a.data.length) return <Empty>None in this time range.</Empty>;
  return (
    <ul class="trace-list">
      {a.data.map((t) => (
        <li key={t.traceID}>
          <Link href={href(`/traces/${t.traceID}`)}>
            {props.showService && <ServiceChip name={t.rootServiceName} small />}
            <span class="op-name">{t.rootTraceName}</span>
            <span class="muted">{fmtAgo(Number(t.startTimeUnixNano) / 1e6)}</span>
            <b>{fmtSeconds(t.durationMs / 1000)}</b>
            {t.errorCount > 0 && <span class="tag bad">{t.errorCount} errors</span>}
          </Link>
        </li>
      ))}
    </ul>
  );
}
