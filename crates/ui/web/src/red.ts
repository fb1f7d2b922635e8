// RED metrics (rate, errors, duration) per service from span metrics, and the analysis
// that tells the slow and the failing service apart from the ones that only inherit
// latency or errors from a downstream call.
import { type FlatSpan, type MatrixSeries, flatten, points, prom, tempo } from './api';
import { fmtGoDuration, rateWindow } from './time';

export const CALLS = 'traces_spanmetrics_calls_total';
export const LATENCY = 'traces_spanmetrics_latency_bucket';
const SERVER = 'span_kind="SPAN_KIND_SERVER"';
const ERROR = 'status_code="STATUS_CODE_ERROR"';

const q = (s: string) => JSON.stringify(s);

function selector(service: string | undefined, serverOnly: boolean): string {
  return [serverOnly ? SERVER : '', service ? `service=${q(service)}` : ''].filter(Boolean).join(', ');
}

/** The PromQL behind each RED figure, for one service or (by service) for all. */
export function redQueries(step: number, service?: string, by = 'service', serverOnly = true) {
  const w = rateWindow(step);
  const sel = selector(service, serverOnly);
  const withErr = sel ? `${sel}, ${ERROR}` : ERROR;
  return {
    rate: `sum by (${by}) (rate(${CALLS}{${sel}}[${w}]))`,
    errors: `sum by (${by}) (rate(${CALLS}{${withErr}}[${w}]))`,
    p50: `histogram_quantile(0.5, sum by (${by}, le) (rate(${LATENCY}{${sel}}[${w}])))`,
    p99: `histogram_quantile(0.99, sum by (${by}, le) (rate(${LATENCY}{${sel}}[${w}])))`,
  };
}

export interface Red {
  name: string;
  rate: [number, number][];
  errors: [number, number][];
  /** Error ratio per step (errors / rate). */
  errorRatio: [number, number][];
  p50: [number, number][];
  p99: [number, number][];
  /** Over the whole range. */
  calls: number;
  failed: number;
  last: { rate?: number; errorRatio?: number; p50?: number; p99?: number };
  /**
   * The usual p99: its 30th percentile over the range. A lower quantile than the median,
   * so that a service slow a third of the time still shows its quiet level.
   */
  p99Usual: number;
  p99Max: number;
}

const lastOf = (p: [number, number][]) => (p.length ? p[p.length - 1][1] : undefined);

/** The q-quantile of xs (nearest rank). */
function quantile(xs: number[], q: number): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))];
}

function byKey(result: MatrixSeries[], key: string): Map<string, [number, number][]> {
  const m = new Map<string, [number, number][]>();
  for (const s of result) m.set(s.metric[key] ?? '', points(s));
  return m;
}

/** RED of every service (or every operation of one service, with by = "span_name"). */
export async function loadRed(
  start: number,
  end: number,
  step: number,
  signal: AbortSignal,
  service?: string,
  by = 'service',
  serverOnly = true,
): Promise<Red[]> {
  const qs = redQueries(step, service, by, serverOnly);
  const range = Math.max(60, Math.round(end - start));
  const sel = selector(service, serverOnly);
  const run = async (expr: string) => {
    const d = await prom.queryRange(expr, start, end, step, signal);
    return d.resultType === 'matrix' ? d.result : [];
  };
  const inst = async (expr: string) => {
    const d = await prom.query(expr, end, signal);
    const m = new Map<string, number>();
    if (d.resultType === 'vector') for (const s of d.result) m.set(s.metric[by] ?? '', Number(s.value[1]));
    return m;
  };
  const [rate, errors, p50, p99, calls, failed] = await Promise.all([
    run(qs.rate),
    run(qs.errors),
    run(qs.p50),
    run(qs.p99),
    inst(`sum by (${by}) (increase(${CALLS}{${sel}}[${range}s]))`),
    inst(`sum by (${by}) (increase(${CALLS}{${sel ? `${sel}, ` : ''}${ERROR}}[${range}s]))`),
  ]);
  const R = byKey(rate, by);
  const E = byKey(errors, by);
  const P50 = byKey(p50, by);
  const P99 = byKey(p99, by);
  const names = [...new Set([...R.keys(), ...calls.keys()])].filter((n) => n !== '').sort();
  return names.map((name) => {
    const r = R.get(name) ?? [];
    const e = new Map(E.get(name) ?? []);
    const ratio: [number, number][] = r.map(([t, v]) => [t, v > 0 ? (e.get(t) ?? 0) / v : 0]);
    const p99s = (P99.get(name) ?? []).filter(([, v]) => Number.isFinite(v));
    const vals = p99s.map(([, v]) => v);
    return {
      name,
      rate: r,
      errors: E.get(name) ?? [],
      errorRatio: ratio,
      p50: P50.get(name) ?? [],
      p99: p99s,
      calls: calls.get(name) ?? 0,
      failed: failed.get(name) ?? 0,
      last: { rate: lastOf(r), errorRatio: lastOf(ratio), p50: lastOf(P50.get(name) ?? []), p99: lastOf(p99s) },
      p99Usual: quantile(vals, 0.3),
      p99Max: vals.length ? Math.max(...vals) : 0,
    };
  });
}

/** A service's error ratio over the whole range. */
export const errorRatio = (r: Red) => (r.calls > 0 ? r.failed / r.calls : 0);

/** p99 at least twice its usual value at some point in the range. */
export const spiky = (r: Red) => r.p99Max >= 2 * r.p99Usual && r.p99Max >= 0.05;
export const failing = (r: Red) => errorRatio(r) >= 0.01 && r.failed >= 1;

/** The latency above which a service's requests count as slow: twice its usual p99. */
export const slowThreshold = (r: Red) => fmtGoDuration(Math.max(r.p99Usual * 2, 0.001));

export interface Culprit {
  service: string;
  operation: string;
  /** Share of the sampled traces' time (slow) or of their failures (errors). */
  share: number;
  traces: number;
}

export interface Findings {
  slow?: Culprit;
  failing?: Culprit;
}

/** Time in each span not covered by its children. */
export function selfTimes(spans: FlatSpan[]): Map<string, number> {
  const children = new Map<string, FlatSpan[]>();
  for (const s of spans) if (s.parentSpanId) children.set(s.parentSpanId, [...(children.get(s.parentSpanId) ?? []), s]);
  const out = new Map<string, number>();
  for (const s of spans) {
    const kids = (children.get(s.spanId) ?? []).map((c) => [Math.max(c.start, s.start), Math.min(c.end, s.end)] as [number, number]).filter(([a, b]) => b > a);
    kids.sort((a, b) => a[0] - b[0]);
    let covered = 0;
    let curA = -1;
    let curB = -1;
    for (const [a, b] of kids) {
      if (a > curB) {
        if (curB > curA) covered += curB - curA;
        curA = a;
        curB = b;
      } else curB = Math.max(curB, b);
    }
    if (curB > curA) covered += curB - curA;
    out.set(s.spanId, Math.max(0, s.end - s.start - covered));
  }
  return out;
}

function top(counts: Map<string, number>, total: number, traces: number): Culprit | undefined {
  let best: [string, number] | undefined;
  for (const e of counts) if (!best || e[1] > best[1]) best = e;
  if (!best || total <= 0) return undefined;
  const [service, operation] = best[0].split('\u0000');
  return { service, operation, share: best[1] / total, traces };
}

/**
 * Samples the slow and the failed traces of the services whose RED looks wrong and finds
 * where the time goes (most self time) and where the errors start (error spans without an
 * erroring child). A service that only passes on a downstream problem is not the culprit.
 */
export async function findCulprits(reds: Red[], start: number, end: number, signal: AbortSignal): Promise<Findings> {
  const cache = new Map<string, Promise<FlatSpan[]>>();
  const load = (id: string) => {
    if (!cache.has(id)) cache.set(id, tempo.trace(id, signal).then(flatten));
    return cache.get(id)!;
  };
  const window = { start: Math.floor(start), end: Math.ceil(end) };
  const slowIds = new Set<string>();
  const failIds = new Set<string>();
  await Promise.all([
    ...reds.filter(spiky).slice(0, 3).map(async (r) => {
      const found = await tempo.search({ service: r.name, minDuration: slowThreshold(r), limit: 5, ...window }, signal);
      found.forEach((t) => slowIds.add(t.traceID));
    }),
    ...reds.filter(failing).slice(0, 3).map(async (r) => {
      const found = await tempo.search({ service: r.name, status: 'error', limit: 5, ...window }, signal);
      found.forEach((t) => failIds.add(t.traceID));
    }),
  ]);
  const out: Findings = {};
  if (slowIds.size) {
    const self = new Map<string, number>();
    let total = 0;
    for (const spans of await Promise.all([...slowIds].map(load))) {
      const st = selfTimes(spans);
      for (const s of spans) {
        const k = `${s.service}\u0000${s.name}`;
        const v = st.get(s.spanId) ?? 0;
        self.set(k, (self.get(k) ?? 0) + v);
        total += v;
      }
    }
    out.slow = top(self, total, slowIds.size);
  }
  if (failIds.size) {
    const origins = new Map<string, number>();
    let total = 0;
    for (const spans of await Promise.all([...failIds].map(load))) {
      const erroringParents = new Set(spans.filter((s) => s.error && s.parentSpanId).map((s) => s.parentSpanId!));
      for (const s of spans) {
        if (!s.error || erroringParents.has(s.spanId)) continue;
        const k = `${s.service}\u0000${s.name}`;
        origins.set(k, (origins.get(k) ?? 0) + 1);
        total++;
      }
    }
    out.failing = top(origins, total, failIds.size);
  }
  return out;
}
