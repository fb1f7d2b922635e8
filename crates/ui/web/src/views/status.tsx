// Status: version, storage sizes and traffic (from lastmile's own /metrics), blocks, the
// effective configuration and the rules version, each where this build serves it.
import { type Async, type RulesStatus, type SelfSample, configStatus, isNotAvailable, prom, rulesStatus, selfMetrics, useAsync } from '../api';
import { fmtAgo, fmtBytes, fmtDateTime, fmtNum, fmtPct, fmtSeconds } from '../format';
import { Empty, ErrorBox, Loading, NotAvailable, Panel, Stat, useRefreshTick } from '../ui';

function optional<T>(f: (s: AbortSignal) => Promise<T>) {
  return async (s: AbortSignal): Promise<T | null> => {
    try {
      return await f(s);
    } catch (e) {
      if (isNotAvailable(e)) return null;
      throw e;
    }
  };
}

const sum = (m: SelfSample[], name: string, filter?: (s: SelfSample) => boolean) =>
  m.filter((s) => s.name === name && (!filter || filter(s))).reduce((a, s) => a + s.value, 0);
const has = (m: SelfSample[], name: string) => m.some((s) => s.name === name);

export function Status() {
  const tick = useRefreshTick();
  const build = useAsync((s) => prom.buildinfo(s), []);
  const self = useAsync((s) => selfMetrics(s), [tick]);
  const tsdb = useAsync((s) => prom.tsdb(1, s), [tick]);
  const config = useAsync(optional(configStatus), []);
  const rules = useAsync(optional(rulesStatus), [tick]);
  const m = self.data ?? [];
  const storage: [string, string, number | undefined][] = [
    ['Metrics head (chunks)', 'lastmile_tsdb_head_chunk_bytes', undefined],
    ['Metrics blocks on disk', 'lastmile_tsdb_block_bytes', undefined],
    ['Metrics WAL written', 'lastmile_tsdb_wal_written_bytes_total', undefined],
    ['Span store blocks', 'lastmile_traces_block_bytes', undefined],
    ['Span store WAL written', 'lastmile_traces_wal_written_bytes_total', undefined],
    ['Log store', 'lastmile_logs_block_bytes', undefined],
  ];
  // Other stores' sizes, whatever they are called, as long as they look like storage.
  const bytesMetrics = m.filter((s) => /^lastmile_.*(block|head|wal|chunk|index|disk|segment).*_bytes(_total)?$/.test(s.name) && !s.labels.le);
  const requests = new Map<string, number>();
  for (const s of m.filter((s) => s.name === 'lastmile_http_requests_total')) requests.set(s.labels.handler, (requests.get(s.labels.handler) ?? 0) + s.value);

  return (
    <div class="page">
      <div class="page-head">
        <h1>Status</h1>
      </div>
      {self.error && <ErrorBox error={self.error} what="self-metrics" />}
      <div class="stats">
        <Stat label="version" value={build.data?.version ?? '…'} testId="version" />
        {has(m, 'process_resident_memory_bytes') && <Stat label="resident memory" value={fmtBytes(sum(m, 'process_resident_memory_bytes'))} />}
        {has(m, 'process_start_time_seconds') && <Stat label="up for" value={fmtSeconds(Date.now() / 1000 - sum(m, 'process_start_time_seconds'))} />}
        {has(m, 'lastmile_tsdb_head_series') && <Stat label="active series" value={fmtNum(sum(m, 'lastmile_tsdb_head_series'))} />}
        {has(m, 'lastmile_tsdb_samples_appended_total') && <Stat label="samples appended" value={fmtNum(sum(m, 'lastmile_tsdb_samples_appended_total'))} />}
        {has(m, 'lastmile_tsdb_blocks') && <Stat label="metric blocks" value={fmtNum(sum(m, 'lastmile_tsdb_blocks'))} />}
      </div>
      {build.error && <ErrorBox error={build.error} what="build info" />}
      {build.data && Object.entries(build.data).some(([k, v]) => v && k !== 'version') && (
        <p class="muted small build-line">
          {Object.entries(build.data)
            .filter(([k, v]) => v && k !== 'version')
            .map(([k, v]) => `${k} ${v}`)
            .join(' · ')}
        </p>
      )}
      <div class="grid2">
        <Panel title="Storage">
          {!self.data && <Loading />}
          {self.data && (
            <table class="data" data-testid="storage">
              <tbody>
                {storage
                  .filter(([, n]) => has(m, n))
                  .map(([label, n]) => (
                    <tr key={n}>
                      <td>{label}</td>
                      <td class="mono small muted">{n}</td>
                      <td class="num">{fmtBytes(sum(m, n))}</td>
                    </tr>
                  ))}
                {bytesMetrics
                  .filter((s) => !storage.some(([, n]) => n === s.name))
                  .map((s, i) => (
                    <tr key={`o${i}`}>
                      <td>{s.name.replace(/^lastmile_/, '').replace(/_/g, ' ')}</td>
                      <td class="mono small muted">{s.name}</td>
                      <td class="num">{fmtBytes(s.value)}</td>
                    </tr>
                  ))}
              </tbody>
            </table>
          )}
        </Panel>
        <Panel title="Busiest HTTP routes">
          <table class="data">
            <tbody>
              {[...requests]
                .sort((a, b) => b[1] - a[1])
                .slice(0, 12)
                .map(([h, n]) => (
                  <tr key={h}>
                    <td class="mono small">{h}</td>
                    <td class="num">{fmtNum(n)}</td>
                  </tr>
                ))}
            </tbody>
          </table>
        </Panel>
      </div>
      <Panel title="Metric blocks">
        {tsdb.data?.blocks && tsdb.data.blocks.length > 0 ? (
          <table class="data">
            <thead>
              <tr>
                <th>From</th>
                <th>To</th>
                <th class="num">Series</th>
                <th class="num">Samples</th>
                <th class="num">Size</th>
              </tr>
            </thead>
            <tbody>
              {tsdb.data.blocks.map((b, i) => (
                <tr key={i}>
                  <td>{fmtDateTime(b.minTime)}</td>
                  <td>{fmtDateTime(b.maxTime)}</td>
                  <td class="num">{fmtNum(b.numSeries)}</td>
                  <td class="num">{fmtNum(b.numSamples)}</td>
                  <td class="num">{fmtBytes(b.bytes ?? b.sizeBytes)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="muted">No blocks yet: everything is in the head (blocks are cut every two hours).</p>
        )}
      </Panel>
      <Panel title="Configuration">
        {config.data === null && (
          <NotAvailable feature="Effective configuration">
            <span>
              This build does not serve <code>/api/v1/status/config</code>; see the file given to <code>--config</code>.
            </span>
          </NotAvailable>
        )}
        {config.data && <pre class="config" data-testid="config">{config.data.yaml}</pre>}
        {config.error && <ErrorBox error={config.error} what="configuration" />}
      </Panel>
      <Rules a={rules} />
    </div>
  );
}

function reloadError(e: NonNullable<NonNullable<RulesStatus['lastReload']>['error']>): string {
  if (typeof e === 'string') return e;
  const loc = e.loc;
  const where = typeof loc === 'string' ? loc : loc ? [loc.file, loc.line, loc.column].filter((x) => x !== undefined && x !== '').join(':') : '';
  return where ? `${where}: ${e.message ?? ''}` : (e.message ?? JSON.stringify(e));
}

/** The rule engine: the version in force, a canary, the last reload and what the rules did. */
function Rules(props: { a: Async<RulesStatus | null> }) {
  const { a } = props;
  if (a.error) return <ErrorBox error={a.error} what="rules status" />;
  if (a.data === null)
    return (
      <Panel title="Rules">
        <NotAvailable feature="Rules status">
          <span>
            The rule engine's version and last reload appear here once this build serves <code>/api/v1/status/rules</code>.
          </span>
        </NotAvailable>
      </Panel>
    );
  if (!a.data) return <Loading what="rules status" />;
  const r = a.data;
  const last = r.lastReload;
  const out = r.stable?.outcomes ?? {};
  const naming = Object.entries(r.naming?.violations ?? {}).filter(([, n]) => n > 0);
  const policies = Object.entries(r.sampling?.policies ?? {});
  return (
    <Panel title="Rules" testId="rules">
      <div class="stats">
        <Stat label="version in force" value={r.stable ? `v${r.stable.version}` : '–'} hint={r.stable?.sourceHash} testId="rules-version" />
        <Stat label="loaded" value={r.stable?.loadedAtMs ? fmtAgo(r.stable.loadedAtMs) : '–'} hint={r.stable?.loadedAtMs ? fmtDateTime(r.stable.loadedAtMs) : undefined} />
        <Stat
          label="last reload"
          value={last ? (last.success ? 'ok' : 'failed') : 'none yet'}
          tone={last ? (last.success ? 'good' : 'bad') : undefined}
          hint={last ? fmtDateTime(last.timeMs) : undefined}
        />
        <Stat label="reloads ok / failed" value={r.reloads ? `${r.reloads.successes} / ${r.reloads.failures}` : '–'} />
        {r.canary && <Stat label={`canary v${r.canary.version}`} value={fmtPct(r.canary.fraction)} tone="warn" hint="share of streams on the canary" />}
      </div>
      {last && !last.success && last.error && (
        <div class="error-box" role="alert">
          <b>The last reload was refused; the rules in force stay.</b>
          <span>{reloadError(last.error)}</span>
        </div>
      )}
      {last?.success && (
        <p class="muted small">
          Last reload {fmtAgo(last.timeMs)}: v{last.version}, {last.testsPassed ?? 0} rule tests passed, {fmtSeconds(last.durationSeconds)}.
        </p>
      )}
      <div class="grid2">
        <div>
          <h3>Sources</h3>
          {r.stable?.sources?.length ? (
            <ul class="plain mono small">
              {r.stable.sources.map((s) => (
                <li key={s}>{s}</li>
              ))}
            </ul>
          ) : (
            <Empty>No rules files: the defaults apply.</Empty>
          )}
          <h3>What the rules did (v{r.stable?.version})</h3>
          <table class="data">
            <tbody>
              {Object.entries(out)
                .filter(([, v]) => typeof v === 'number' && v > 0)
                .map(([k, v]) => (
                  <tr key={k}>
                    <td>{k.replace(/([A-Z])/g, ' $1').toLowerCase()}</td>
                    <td class="num">{/ratio$/i.test(k) ? fmtPct(v) : fmtNum(v)}</td>
                  </tr>
                ))}
            </tbody>
          </table>
        </div>
        <div>
          {r.comparison && (
            <>
              <h3>Stable vs canary</h3>
              <table class="data">
                <thead>
                  <tr>
                    <th />
                    <th class="num">stable</th>
                    <th class="num">canary</th>
                  </tr>
                </thead>
                <tbody>
                  {Object.entries(r.comparison).map(([k, [a, b]]) => (
                    <tr key={k}>
                      <td>{k.replace(/([A-Z])/g, ' $1').toLowerCase()}</td>
                      <td class="num">{fmtPct(a)}</td>
                      <td class="num">{fmtPct(b)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
          <h3>Naming contract{r.naming?.mode ? ` (${r.naming.mode})` : ''}</h3>
          {naming.length ? (
            <table class="data">
              <tbody>
                {naming.map(([k, n]) => (
                  <tr key={k}>
                    <td>{k}</td>
                    <td class="num">{fmtNum(n)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <Empty>No naming violations.</Empty>
          )}
          {policies.length > 0 && (
            <>
              <h3>Tail sampling</h3>
              <table class="data">
                <thead>
                  <tr>
                    <th>Policy</th>
                    <th>Keeps</th>
                    <th class="num">Kept</th>
                    <th class="num">Dropped</th>
                  </tr>
                </thead>
                <tbody>
                  {policies.map(([name, p]) => (
                    <tr key={name}>
                      <td>{name}</td>
                      <td>{p.keep}</td>
                      <td class="num">{fmtNum(p.kept)}</td>
                      <td class="num">{fmtNum(p.dropped)}</td>
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
