// Go runtime: what eBPF sees inside Go processes (GC cycles, stop-the-world pauses,
// goroutine parks by wait reason and by call site, sampled allocations) and stored park /
// allocation profiles; plus the runtime metrics Go services export themselves.
import { Chart } from '../chart';
import { type Profile, goRuntime, isNotAvailable, points, prom, useAsync } from '../api';
import { fmtAgo, fmtBytes, fmtLabels, fmtNum, fmtSeconds } from '../format';
import { Link, hrefKeepTime, setParams, useLoc } from '../router';
import { autoStep, rateWindow } from '../time';
import { Empty, ErrorBox, Loading, NotAvailable, Panel, useRange } from '../ui';

function Query(props: { title: string; expr: string; start: number; end: number; step: number; unit?: 'seconds' | 'bytes' | 'none'; label?: (m: Record<string, string>) => string }) {
  const res = useAsync((s) => prom.queryRange(props.expr, props.start, props.end, props.step, s), [props.expr, props.start, props.end, props.step]);
  const series =
    res.data?.resultType === 'matrix'
      ? res.data.result.map((s) => ({ label: props.label ? props.label(s.metric) : fmtLabels(s.metric), points: points(s) }))
      : [];
  return (
    <Panel title={props.title} actions={<Link href={hrefKeepTime('/explore', { q: props.expr })}>query</Link>}>
      {res.error ? (
        <ErrorBox error={res.error} what={props.title} />
      ) : !res.data ? (
        <Loading />
      ) : (
        <Chart series={series} unit={props.unit ?? 'none'} height={190} onZoom={(a, b) => setParams({ from: a, to: b, range: null })} empty="No data in this range." />
      )}
    </Panel>
  );
}

export function GoRuntime() {
  const { q } = useLoc();
  const job = q.get('job') ?? '';
  const profileId = q.get('profile');
  const range = useRange('1h');
  const step = autoStep(range.end - range.start, 150);
  const w = rateWindow(step);
  const names = useAsync((s) => prom.labelValues('__name__', undefined, s), []);
  const ebpfJobs = useAsync((s) => prom.labelValues('job', '{__name__=~"go_ebpf_.+"}', s), []);
  const goJobs = useAsync((s) => prom.labelValues('job', '{__name__=~"go_goroutines|go_gc_duration_seconds"}', s), []);
  const profiles = useAsync(async (s) => {
    try {
      return await goRuntime.profiles(s);
    } catch (e) {
      if (isNotAvailable(e)) return null;
      throw e;
    }
  }, []);
  const hasEbpf = (names.data ?? []).some((n) => n.startsWith('go_ebpf_'));
  const sel = job ? `job=${JSON.stringify(job)}` : '';
  const jobs = [...new Set([...(ebpfJobs.data ?? []), ...(goJobs.data ?? [])])].sort();
  const r = { start: range.start, end: range.end, step };

  return (
    <div class="page">
      <div class="page-head">
        <h1>Go runtime</h1>
        <p class="sub">Inside the Go processes: scheduler waits, GC and stop-the-world pauses, allocations — from eBPF probes on the runtime, no code changes.</p>
        <label class="inline">
          Job
          <select value={job} onChange={(e) => setParams({ job: (e.target as HTMLSelectElement).value || null })} data-testid="go-job">
            <option value="">all</option>
            {jobs.map((j) => (
              <option key={j}>{j}</option>
            ))}
            {job && !jobs.includes(job) && <option>{job}</option>}
          </select>
        </label>
      </div>
      {names.error && <ErrorBox error={names.error} what="metric names" />}
      {names.data && !hasEbpf && (
        <div class="not-available" data-testid="no-ebpf">
          <b>No eBPF runtime metrics (go_ebpf_*) in the store yet.</b>
          <span>
            Attach to a Go process with <code>sudo lastmile go-runtime attach --pid PID --push http://{location.host}</code> (or list processes
            to watch in serve's <code>go_runtime:</code> config). Goroutine parks by wait reason, stop-the-world pauses and allocation hot spots
            then appear here.
          </span>
        </div>
      )}
      {hasEbpf && (
        <div class="grid3" data-testid="ebpf-charts">
          <Query title="GC cycles / s" expr={`sum by (job, instance) (rate(go_ebpf_gc_cycles_total{${sel}}[${w}]))`} {...r} />
          <Query title="Stop-the-world pause p99 by reason" expr={`histogram_quantile(0.99, sum by (le, reason) (rate(go_ebpf_stw_pause_seconds_bucket{${sel}}[${w}])))`} unit="seconds" {...r} label={(m) => m.reason ?? ''} />
          <Query title="Goroutine parks / s by wait reason" expr={`topk(8, sum by (wait_reason) (rate(go_ebpf_goroutine_parks_total{${sel}}[${w}])))`} {...r} label={(m) => m.wait_reason ?? ''} />
          <Query title="Time blocked / s by wait reason" expr={`topk(8, sum by (wait_reason) (rate(go_ebpf_goroutine_blocked_seconds_total{${sel}}[${w}])))`} unit="seconds" {...r} label={(m) => m.wait_reason ?? ''} />
          <Query title="Parks / s by call site" expr={`topk(8, sum by (site) (rate(go_ebpf_goroutine_park_site_parks_total{${sel}}[${w}])))`} {...r} label={(m) => m.site ?? ''} />
          <Query title="Sampled allocations (bytes / s) by site" expr={`topk(8, sum by (site) (rate(go_ebpf_alloc_sampled_bytes_total{${sel}}[${w}])))`} unit="bytes" {...r} label={(m) => m.site ?? ''} />
        </div>
      )}
      <Panel title="Profiles" testId="profiles">
        {profiles.error && <ErrorBox error={profiles.error} what="profiles" />}
        {profiles.data === null && (
          <NotAvailable feature="Go runtime profiles">
            <span>
              This build does not store park and allocation profiles (<code>/api/v1/go-runtime/profiles</code>).
            </span>
          </NotAvailable>
        )}
        {profiles.data && profiles.data.length === 0 && <Empty>No profiles stored. <code>lastmile go-runtime attach --pid PID --push …</code> records one per run.</Empty>}
        {profiles.data && profiles.data.length > 0 && (
          <table class="data">
            <thead>
              <tr>
                <th>Kind</th>
                <th>Process</th>
                <th>Go</th>
                <th>Recorded</th>
                <th class="num">Length</th>
                <th>Top wait reason</th>
              </tr>
            </thead>
            <tbody>
              {profiles.data
                .filter((p) => !job || p.labels?.job === job)
                .map((p) => (
                  <tr key={p.id} class={p.id === profileId ? 'row-sel' : ''}>
                    <td>
                      <button type="button" class="linkish" onClick={() => setParams({ profile: p.id })}>
                        {p.kind}
                      </button>
                    </td>
                    <td class="mono small">
                      {p.exe?.split('/').pop()} ({p.pid})
                    </td>
                    <td>{p.go_version}</td>
                    <td>{p.start_unix_ms ? fmtAgo(p.start_unix_ms) : '–'}</td>
                    <td class="num">{fmtSeconds(p.duration_seconds)}</td>
                    <td>{p.top_reason ? `${p.top_reason.reason} (${fmtNum(p.top_reason.parks)} parks)` : '–'}</td>
                  </tr>
                ))}
            </tbody>
          </table>
        )}
      </Panel>
      {profileId && <ProfileView id={profileId} />}
      {(goJobs.data?.length ?? 0) > 0 && (
        <>
          <h2 class="section">Reported by the services (client_golang)</h2>
          <div class="grid3">
            <Query title="Goroutines" expr={`sum by (job) (go_goroutines${sel ? `{${sel}}` : ''})`} {...r} label={(m) => m.job ?? ''} />
            <Query title="Longest GC pause" expr={`max by (job) (go_gc_duration_seconds{quantile="1"${sel ? `, ${sel}` : ''}})`} unit="seconds" {...r} label={(m) => m.job ?? ''} />
            <Query title="Heap in use" expr={`sum by (job) (go_memstats_heap_inuse_bytes${sel ? `{${sel}}` : ''})`} unit="bytes" {...r} label={(m) => m.job ?? ''} />
            <Query title="Allocation rate (bytes / s)" expr={`sum by (job) (rate(go_memstats_alloc_bytes_total${sel ? `{${sel}}` : ''}[${w}]))`} unit="bytes" {...r} label={(m) => m.job ?? ''} />
          </div>
        </>
      )}
    </div>
  );
}

function Stack(props: { frames: string[] }) {
  return (
    <ol class="stack">
      {props.frames.slice(0, 12).map((f, i) => (
        <li key={i} class="mono small">
          {f}
        </li>
      ))}
    </ol>
  );
}

function ProfileView(props: { id: string }) {
  const p = useAsync<Profile>((s) => goRuntime.profile(props.id, s), [props.id]);
  if (p.error) return <ErrorBox error={p.error} what="the profile" />;
  if (!p.data) return <Loading what="the profile" />;
  const d = p.data;
  return (
    <Panel
      title={`${d.kind} profile of ${d.exe?.split('/').pop() ?? 'pid ' + d.pid}`}
      actions={
        <button type="button" class="btn ghost small" onClick={() => setParams({ profile: null })}>
          close
        </button>
      }
      testId="profile"
    >
      <p class="muted small">
        pid {d.pid} · Go {d.go_version} · {fmtSeconds(d.duration_seconds)} · {fmtNum(d.probe_hits)} probe hits
        {d.labels ? ` · ${fmtLabels(d.labels, false)}` : ''}
      </p>
      {d.notes?.map((n, i) => (
        <p key={i} class="note">
          {n}
        </p>
      ))}
      {(d.reasons?.length ?? 0) > 0 && (
        <table class="data">
          <thead>
            <tr>
              <th>Wait reason</th>
              <th class="num">Parks</th>
              <th class="num">Readies</th>
              <th class="num">Blocked</th>
            </tr>
          </thead>
          <tbody>
            {d.reasons!.map((r) => (
              <tr key={r.reason}>
                <td>{r.reason}</td>
                <td class="num">{fmtNum(r.parks)}</td>
                <td class="num">{fmtNum(r.readies)}</td>
                <td class="num">{fmtSeconds(r.blocked_seconds)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {(d.park_sites?.length ?? 0) > 0 && (
        <>
          <h3>Where goroutines park</h3>
          {d.park_sites!.slice(0, 15).map((s, i) => (
            <details key={i} class="site">
              <summary>
                <b>{s.site}</b> <span class="tag tiny">{s.reason}</span> {fmtNum(s.parks)} parks · blocked {fmtSeconds(s.blocked_seconds)}
              </summary>
              <Stack frames={s.frames} />
            </details>
          ))}
        </>
      )}
      {(d.alloc_sites?.length ?? 0) > 0 && (
        <>
          <h3>Where memory is allocated (sampled)</h3>
          {d.alloc_sites!.slice(0, 15).map((s, i) => (
            <details key={i} class="site">
              <summary>
                <b>{s.site}</b> {fmtBytes(s.sampled_bytes)} in {fmtNum(s.samples)} samples
              </summary>
              <Stack frames={s.frames} />
            </details>
          ))}
        </>
      )}
    </Panel>
  );
}
