// Status: version, storage sizes and traffic (from lastmile's own /metrics), blocks, the
// effective configuration and the rules version, each where this build serves it.
import { Fragment } from 'preact';

import { type SelfSample, configStatus, isNotAvailable, prom, rulesStatus, selfMetrics, useAsync } from '../api';
import { fmtBytes, fmtDateTime, fmtNum, fmtSeconds } from '../format';
import { ErrorBox, Loading, NotAvailable, Panel, Stat, useRefreshTick } from '../ui';

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
  const bytesMetrics = m.filter((s) => /^lastmile_.*_bytes(_total)?$/.test(s.name) && !s.labels.le);
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
        <Panel title="Build">
          {build.error && <ErrorBox error={build.error} what="build info" />}
          {build.data && (
            <div class="kv">
              {Object.entries(build.data)
                .filter(([, v]) => v)
                .map(([k, v]) => (
                  <Fragment key={k}>
                    <span>{k}</span>
                    <span class="mono">{v}</span>
                  </Fragment>
                ))}
            </div>
          )}
        </Panel>
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
        <Panel title="HTTP requests served">
          <table class="data">
            <tbody>
              {[...requests]
                .sort((a, b) => b[1] - a[1])
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
      <Panel title="Rules">
        {rules.data === null && (
          <NotAvailable feature="Rules status">
            <span>
              The rule engine's version and last reload appear here once this build serves <code>/api/v1/status/rules</code>.
            </span>
          </NotAvailable>
        )}
        {rules.data && <pre class="json">{JSON.stringify(rules.data, null, 2)}</pre>}
        {rules.error && <ErrorBox error={rules.error} what="rules status" />}
      </Panel>
    </div>
  );
}
