// Home: the fleet at a glance. RED per service from span metrics, and the services that
// need attention (slow, failing) with the operation to blame, one click from their traces.
import { prom, tempo, useAsync } from '../api';
import { fmtNum, fmtPct, fmtSeconds } from '../format';
import { type Findings, type Red, errorRatio, failing, findCulprits, loadRed, slowThreshold, spiky } from '../red';
import { Link, hrefKeepTime } from '../router';
import { autoStep, fmtGoDuration } from '../time';
import { Empty, ErrorBox, Loading, Panel, Stat, useRange } from '../ui';
import { ServiceTable, TraceList } from './services';

export function Home() {
  const range = useRange('1h');
  const step = autoStep(range.end - range.start, 90);
  const reds = useAsync((s) => loadRed(range.start, range.end, step, s), [range.start, range.end, step]);
  const tsdb = useAsync((s) => prom.tsdb(1, s), [range.end]);
  const findings = useAsync<Findings>(
    (s) => (reds.data ? findCulprits(reds.data, range.start, range.end, s) : new Promise<Findings>(() => undefined)),
    [reds.data],
  );

  const window = { start: Math.floor(range.start), end: Math.ceil(range.end) };
  // The search API lists the most recent first: ask for the traces slower than the
  // fleet's usual p99 and keep the slowest of them.
  const slowest = useAsync(async (s) => {
    if (!reds.data) return new Promise<never>(() => undefined);
    const usual = Math.max(0.001, ...reds.data.map((r) => r.p99Usual));
    const found = await tempo.search({ limit: 200, minDuration: fmtGoDuration(usual), ...window }, s);
    return found.sort((a, b) => b.durationMs - a.durationMs).slice(0, 8);
  }, [reds.data]);
  const failedTraces = useAsync((s) => tempo.search({ status: 'error', limit: 8, ...window }, s), [range.start, range.end]);
  const list = reds.data ?? [];
  const totalRate = list.reduce((a, r) => a + (r.last.rate ?? 0), 0);
  const calls = list.reduce((a, r) => a + r.calls, 0);
  // Requests that failed anywhere would be counted once per hop; the entry points' errors
  // are what users saw, but without a service graph the fleet-wide ratio is the honest one.
  const failed = list.reduce((a, r) => a + r.failed, 0);
  const worstP99 = list.reduce<Red | undefined>((a, r) => (!a || (r.last.p99 ?? 0) > (a.last.p99 ?? 0) ? r : a), undefined);

  return (
    <div class="page">
      <div class="page-head">
        <h1>Fleet</h1>
        <p class="sub">Rate, errors and latency of every service that sends traces, from span metrics.</p>
      </div>
      <div class="stats">
        <Stat label="services" value={reds.data ? list.length : '…'} testId="stat-services" />
        <Stat label="server spans / s now" value={reds.data ? fmtNum(totalRate) : '…'} />
        <Stat label="spans failed in range" value={reds.data ? fmtPct(calls ? failed / calls : 0) : '…'} tone={calls && failed / calls >= 0.01 ? 'bad' : undefined} />
        <Stat
          label={worstP99 ? `highest p99 now (${worstP99.name})` : 'highest p99 now'}
          value={worstP99 ? fmtSeconds(worstP99.last.p99) : '…'}
        />
        <Stat label="active series" value={tsdb.data ? fmtNum(tsdb.data.headStats.numSeries) : '…'} />
      </div>
      {reds.error && <ErrorBox error={reds.error} what="span metrics" />}
      {reds.loading && !reds.data && <Loading what="the fleet" />}
      {reds.data && !list.length && (
        <Empty>
          No span metrics in this time range. Send traces over OTLP (or run <code>lastmile serve --demo</code>) and services appear here with
          their rate, errors and latency.
        </Empty>
      )}
      {list.length > 0 && <Attention reds={list} findings={findings.data} settled={!!findings.data || !!findings.error} />}
      {list.length > 0 && (
        <Panel title="Services" actions={<Link href={hrefKeepTime('/services')}>all services →</Link>} testId="services-panel">
          <ServiceTable reds={list} findings={findings.data} range={range} />
        </Panel>
      )}
      {list.length > 0 && (
        <div class="grid2">
          <Panel title="Slowest traces" actions={<Link href={hrefKeepTime('/traces')}>search →</Link>}>
            <TraceList a={slowest} showService />
          </Panel>
          <Panel title="Latest failed traces" actions={<Link href={hrefKeepTime('/traces', { status: 'error' })}>all →</Link>}>
            <TraceList a={failedTraces} showService />
          </Panel>
        </div>
      )}
    </div>
  );
}

function Attention(props: { reds: Red[]; findings?: Findings; settled: boolean }) {
  const { reds, findings, settled } = props;
  const slow = reds.filter(spiky);
  const failed = reds.filter(failing);
  // With trace analysis the culprit leads and the services that only pass its latency or
  // errors on are listed as affected; without it, every suspicious service shows.
  // The culprit leads even when its own RED looks calmer than its callers' (time spent
  // in a client span, say); without a culprit every suspicious service shows.
  const pick = (list: Red[], culprit?: string) => {
    const c = reds.filter((r) => r.name === culprit);
    return list.length && c.length ? c : list;
  };
  const slowCards = settled ? pick(slow, findings?.slow?.service) : [];
  const failCards = settled ? pick(failed, findings?.failing?.service) : [];
  const leads = new Set([...slowCards, ...failCards].map((r) => r.name));
  const affected = [...new Set([...slow, ...failed].map((r) => r.name))].filter((n) => !leads.has(n));
  if (!slow.length && !failed.length) {
    return (
      <div class="all-good" data-testid="all-good">
        <b>All services look healthy</b> in this range: no error ratio over 1% and no p99 spikes.
      </div>
    );
  }
  return (
    <section class="attention" aria-label="needs attention" data-testid="attention">
      <div class="attention-cards">
      {slowCards.map((r) => (
        <article class="finding warn" key={`slow-${r.name}`} data-testid="finding-slow" data-service={r.name}>
          <div class="finding-kind">Slow</div>
          <h3>
            <Link href={hrefKeepTime(`/services/${encodeURIComponent(r.name)}`)}>{r.name}</Link> is slow
          </h3>
          <p>
            p99 reached <b>{fmtSeconds(r.p99Max)}</b>; usually {fmtSeconds(r.p99Usual)}.
            {findings?.slow && (
              <>
                {' '}
                In {findings.slow.traces} sampled slow traces, <b>{fmtPct(findings.slow.share)}</b> of the time is spent in{' '}
                <code>
                  {findings.slow.service === r.name ? '' : `${findings.slow.service} › `}
                  {findings.slow.operation}
                </code>
                .
              </>
            )}
          </p>
          <div class="finding-actions">
            <Link class="btn primary" data-testid="slow-traces-link" href={hrefKeepTime('/traces', { service: r.name, minDuration: slowThreshold(r) })}>
              Slow traces →
            </Link>
            <Link class="btn" href={hrefKeepTime(`/services/${encodeURIComponent(r.name)}`)}>
              Service
            </Link>
          </div>
        </article>
      ))}
      {failCards.map((r) => (
        <article class="finding bad" key={`fail-${r.name}`} data-testid="finding-failing" data-service={r.name}>
          <div class="finding-kind">Failing</div>
          <h3>
            <Link href={hrefKeepTime(`/services/${encodeURIComponent(r.name)}`)}>{r.name}</Link> is failing
          </h3>
          <p>
            <b>{fmtPct(errorRatio(r))}</b> of its requests failed ({fmtNum(r.failed)} of {fmtNum(r.calls)}).
            {findings?.failing && (
              <>
                {' '}
                The errors in {findings.failing.traces} sampled failed traces start at{' '}
                <code>
                  {findings.failing.service === r.name ? '' : `${findings.failing.service} › `}
                  {findings.failing.operation}
                </code>
                {findings.failing.share < 0.99 ? ` (${fmtPct(findings.failing.share)} of them)` : ''}.
              </>
            )}
          </p>
          <div class="finding-actions">
            <Link class="btn primary" data-testid="failed-traces-link" href={hrefKeepTime('/traces', { service: r.name, status: 'error' })}>
              Failed traces →
            </Link>
            <Link class="btn" href={hrefKeepTime(`/services/${encodeURIComponent(r.name)}`)}>
              Service
            </Link>
          </div>
        </article>
      ))}
      {!settled && (
        <div class="finding pending" role="status">
          <span class="spinner" aria-hidden="true" /> Sampling slow and failed traces to find the cause…
        </div>
      )}
      </div>
      {settled && affected.length > 0 && (
        <p class="affected" data-testid="affected">
          Also affected, through their calls to {[...leads].join(' and ')}: {affected.join(', ')}.
        </p>
      )}
    </section>
  );
}
