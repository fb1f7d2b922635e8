// Typed calls to lastmile's HTTP APIs (Prometheus, Tempo, Loki shapes and lastmile's own),
// and useAsync, the hook every view loads data with.
import { useEffect, useRef, useState } from 'preact/hooks';

export class ApiError extends Error {
  /** HTTP status, 0 for a network failure. */
  status: number;
  /** The endpoint does not exist in this build (another part of lastmile brings it). */
  notAvailable: boolean;
  constructor(message: string, status: number, notAvailable = false) {
    super(message);
    this.status = status;
    this.notAvailable = notAvailable;
  }
}

export const isNotAvailable = (e: unknown) => e instanceof ApiError && e.notAvailable;

async function request(url: string, signal?: AbortSignal, init: RequestInit = {}): Promise<Response> {
  let r: Response;
  try {
    r = await fetch(url, { ...init, signal, headers: { Accept: 'application/json', ...(init.headers || {}) } });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(`cannot reach lastmile (${(e as Error).message})`, 0);
  }
  if (r.ok) return r;
  const text = await r.text();
  let msg = text.trim();
  let notAvailable = false;
  try {
    const j = JSON.parse(text);
    if (j && typeof j.error === 'string') msg = j.error;
    // The API's fallback for routes it does not have: the feature is not in this build.
    notAvailable = r.status === 404 && j?.errorType === 'not_found' && /^no such endpoint/.test(j.error);
  } catch {
    /* plain-text error (Tempo and Loki paths answer in text) */
  }
  throw new ApiError(msg || `${r.status} ${r.statusText}`, r.status, notAvailable);
}

export async function getJSON<T>(path: string, params: Record<string, unknown> = {}, signal?: AbortSignal): Promise<T> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, String(x)));
    else q.set(k, String(v));
  }
  const s = q.toString();
  const r = await request(s ? `${path}?${s}` : path, signal);
  return (await r.json()) as T;
}

async function promPost<T>(path: string, params: Record<string, string>, signal?: AbortSignal): Promise<T> {
  // POST with a form body: long PromQL stays out of URL length limits.
  const r = await request(path, signal, {
    method: 'POST',
    body: new URLSearchParams(params),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
  const j = await r.json();
  return j.data as T;
}

export async function getText(path: string, signal?: AbortSignal): Promise<string> {
  return (await request(path, signal)).text();
}

// ---- Prometheus ------------------------------------------------------------------------

export type Labels = Record<string, string>;
export interface MatrixSeries {
  metric: Labels;
  values: [number, string][];
}
export interface VectorSample {
  metric: Labels;
  value: [number, string];
}
export type QueryData =
  | { resultType: 'matrix'; result: MatrixSeries[] }
  | { resultType: 'vector'; result: VectorSample[] }
  | { resultType: 'scalar' | 'string'; result: [number, string] };

export interface ExemplarSeries {
  seriesLabels: Labels;
  exemplars: { labels: Labels; value: string; timestamp: number }[];
}

export interface TsdbStatus {
  headStats: { numSeries: number; numLabelPairs: number; chunkCount?: number; chunkBytes?: number; numSamples?: number; minTime: number; maxTime: number };
  seriesCountByMetricName: { name: string; value: number }[];
  labelValueCountByLabelName: { name: string; value: number }[];
  memoryInBytesByLabelName: { name: string; value: number }[];
  seriesCountByLabelValuePair: { name: string; value: number }[];
  cardinalityGuard?: CardinalityGuard | null;
  /** Series per value of the `focusLabel` asked for (VictoriaMetrics's parameter). */
  seriesCountByFocusLabelValue?: { name: string; value: number }[] | null;
  blocks?: { ulid?: string; id?: string; minTime: number; maxTime: number; numSeries?: number; numSamples?: number; bytes?: number; sizeBytes?: number; level?: number }[];
  [k: string]: unknown;
}

export interface MetricMeta {
  type: string;
  help: string;
  unit: string;
}

export const prom = {
  query: (query: string, time: number, signal?: AbortSignal) =>
    promPost<QueryData>('/api/v1/query', { query, time: String(time) }, signal),
  queryRange: (query: string, start: number, end: number, step: number, signal?: AbortSignal) =>
    promPost<QueryData>('/api/v1/query_range', { query, start: String(start), end: String(end), step: String(step) }, signal),
  exemplars: (query: string, start: number, end: number, signal?: AbortSignal) =>
    promPost<ExemplarSeries[]>('/api/v1/query_exemplars', { query, start: String(start), end: String(end) }, signal),
  formatQuery: (query: string, signal?: AbortSignal) => promPost<string>('/api/v1/format_query', { query }, signal),
  labels: async (match?: string, signal?: AbortSignal) =>
    (await getJSON<{ data: string[] }>('/api/v1/labels', { 'match[]': match ? [match] : undefined }, signal)).data,
  labelValues: async (name: string, match?: string, signal?: AbortSignal) =>
    (await getJSON<{ data: string[] }>(`/api/v1/label/${encodeURIComponent(name)}/values`, { 'match[]': match ? [match] : undefined }, signal)).data,
  series: async (match: string, start?: number, end?: number, signal?: AbortSignal) =>
    (await getJSON<{ data: Labels[] }>('/api/v1/series', { 'match[]': [match], start, end }, signal)).data,
  metadata: async (signal?: AbortSignal) => (await getJSON<{ data: Record<string, MetricMeta[]> }>('/api/v1/metadata', {}, signal)).data,
  tsdb: async (limit = 20, signal?: AbortSignal, focusLabel?: string) =>
    (await getJSON<{ data: TsdbStatus }>('/api/v1/status/tsdb', { limit, focusLabel }, signal)).data,
  buildinfo: async (signal?: AbortSignal) => (await getJSON<{ data: Record<string, string> }>('/api/v1/status/buildinfo', {}, signal)).data,
};

/** Range-query series as numbers, NaN-free: `[unixSeconds, value][]`. */
export function points(s: MatrixSeries): [number, number][] {
  return s.values.map(([t, v]) => [t, Number(v)] as [number, number]).filter(([, v]) => Number.isFinite(v));
}

// ---- Traces (Tempo-compatible) and correlate ---------------------------------------------

export interface TraceSummary {
  traceID: string;
  rootServiceName: string;
  rootTraceName: string;
  startTimeUnixNano: string;
  durationMs: number;
  durationNanos?: string;
  spanCount: number;
  errorCount: number;
  services: { name: string; spanCount: number }[];
}

export interface SearchParams {
  service?: string;
  operation?: string;
  status?: string;
  minDuration?: string;
  maxDuration?: string;
  tags?: string;
  limit?: number;
  start?: number;
  end?: number;
}

export interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: OtlpValue[] };
  kvlistValue?: { values?: { key: string; value: OtlpValue }[] };
  bytesValue?: string;
}
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: { key: string; value: OtlpValue }[];
  status?: { code?: number; message?: string };
  events?: { timeUnixNano: string; name: string; attributes?: { key: string; value: OtlpValue }[] }[];
}
export interface OtlpTrace {
  batches: {
    resource?: { attributes?: { key: string; value: OtlpValue }[] };
    scopeSpans?: { scope?: { name?: string; version?: string }; spans?: OtlpSpan[] }[];
  }[];
}

export const tempo = {
  search: async (p: SearchParams, signal?: AbortSignal) =>
    (await getJSON<{ traces: TraceSummary[] }>('/api/search', { ...p }, signal)).traces ?? [],
  trace: (id: string, signal?: AbortSignal) => getJSON<OtlpTrace>(`/api/traces/${encodeURIComponent(id)}`, {}, signal),
  tagValues: async (tag: string, signal?: AbortSignal) =>
    (await getJSON<{ tagValues: string[] }>(`/api/search/tag/${encodeURIComponent(tag)}/values`, {}, signal)).tagValues ?? [],
};

export function otlpText(v: OtlpValue | undefined): string {
  if (!v) return '';
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return String(v.intValue);
  if (v.doubleValue !== undefined) return String(v.doubleValue);
  if (v.boolValue !== undefined) return String(v.boolValue);
  if (v.arrayValue) return '[' + (v.arrayValue.values ?? []).map(otlpText).join(', ') + ']';
  if (v.kvlistValue) return '{' + (v.kvlistValue.values ?? []).map((kv) => `${kv.key}=${otlpText(kv.value)}`).join(', ') + '}';
  if (v.bytesValue !== undefined) return v.bytesValue;
  return '';
}

/** A trace's spans flattened, with their service: what the home page's analysis needs. */
export interface FlatSpan {
  spanId: string;
  parentSpanId?: string;
  service: string;
  name: string;
  start: number;
  end: number;
  error: boolean;
}

export function flatten(t: OtlpTrace): FlatSpan[] {
  const out: FlatSpan[] = [];
  for (const b of t.batches ?? []) {
    const svc = otlpText(b.resource?.attributes?.find((a) => a.key === 'service.name')?.value) || 'unknown';
    for (const ss of b.scopeSpans ?? [])
      for (const s of ss.spans ?? [])
        out.push({
          spanId: s.spanId,
          parentSpanId: s.parentSpanId || undefined,
          service: svc,
          name: s.name,
          start: Number(s.startTimeUnixNano),
          end: Number(s.endTimeUnixNano),
          error: s.status?.code === 2,
        });
  }
  return out;
}

export interface CorrelatedSpan {
  spanId: string;
  parentSpanId?: string;
  service: string;
  name: string;
  kind: string;
  startTimeUnixNano: string;
  durationNanos: string;
  selfTimeNanos: string;
  status: string;
  statusMessage?: string;
  attributes: Record<string, string>;
  events: { timeUnixNano: string; name: string; attributes: Record<string, string> }[];
  criticalPath: boolean;
  depth: number;
}

export interface CorrelatedLog {
  timestampNs: string;
  labels: Labels;
  line: string;
  spanId?: string;
}

export interface ServiceRed {
  service: string;
  rate: [number, number][];
  errors: [number, number][];
  p50: [number, number][];
  p99: [number, number][];
}

export interface Correlation {
  traceId: string;
  rootService: string;
  rootName: string;
  startTimeUnixNano: string;
  durationNanos: string;
  spans: CorrelatedSpan[];
  slowestSpanId?: string;
  errorSpanIds: string[];
  logs: CorrelatedLog[];
  exemplars: { series: Labels; labels: Labels; value: number; timestamp: number }[];
  services: ServiceRed[];
}

export const correlate = async (traceId: string, signal?: AbortSignal) =>
  (await getJSON<{ data: Correlation }>('/api/v1/correlate', { trace_id: traceId }, signal)).data;

// ---- Logs (Loki-compatible) --------------------------------------------------------------

export interface LokiStream {
  stream: Labels;
  values: ([string, string] | [string, string, Labels])[];
}
export type LokiData =
  | { resultType: 'streams'; result: LokiStream[]; stats?: unknown }
  | { resultType: 'matrix'; result: MatrixSeries[]; stats?: unknown }
  | { resultType: 'vector'; result: VectorSample[]; stats?: unknown };

const nsParam = (sec: number) => String(Math.round(sec * 1e9));

export const loki = {
  queryRange: async (
    p: { query: string; start: number; end: number; limit?: number; direction?: string; step?: number },
    signal?: AbortSignal,
  ) =>
    (
      await getJSON<{ data: LokiData }>(
        '/loki/api/v1/query_range',
        { query: p.query, start: nsParam(p.start), end: nsParam(p.end), limit: p.limit, direction: p.direction, step: p.step ? `${p.step}s` : undefined },
        signal,
      )
    ).data,
  labels: async (start?: number, end?: number, signal?: AbortSignal) =>
    (await getJSON<{ data?: string[] }>('/loki/api/v1/labels', { start: start && nsParam(start), end: end && nsParam(end) }, signal)).data ?? [],
  labelValues: async (name: string, start?: number, end?: number, signal?: AbortSignal) =>
    (
      await getJSON<{ data?: string[] }>(
        `/loki/api/v1/label/${encodeURIComponent(name)}/values`,
        { start: start && nsParam(start), end: end && nsParam(end) },
        signal,
      )
    ).data ?? [],
};

// ---- Go runtime profiles, rules status, self-metrics --------------------------------------

export interface ProfileSummary {
  id: string;
  kind: string;
  pid: number;
  exe?: string;
  go_version?: string;
  labels?: Labels;
  start_unix_ms?: number;
  duration_seconds?: number;
  top_reason?: { reason: string; parks: number; blocked_seconds: number } | null;
}

export interface Profile {
  kind: string;
  pid: number;
  exe?: string;
  go_version?: string;
  labels?: Labels;
  start_unix_ms?: number;
  duration_seconds?: number;
  measured_events_per_second?: number;
  probe_hits?: number;
  reasons?: { reason: string; parks: number; readies: number; blocked_seconds: number }[];
  park_sites?: { reason: string; parks: number; readies: number; blocked_seconds: number; frames: string[]; site: string }[];
  alloc_sites?: { samples: number; sampled_bytes: number; frames: string[]; site: string }[];
  notes?: string[];
}

export const goRuntime = {
  profiles: async (signal?: AbortSignal) =>
    (await getJSON<{ data: ProfileSummary[] }>('/api/v1/go-runtime/profiles', { limit: 50 }, signal)).data ?? [],
  profile: async (id: string, signal?: AbortSignal) =>
    (await getJSON<{ data: Profile }>(`/api/v1/go-runtime/profiles/${encodeURIComponent(id)}`, {}, signal)).data,
};

// The rule engine's status (`/api/v1/status/rules`) and the cardinality guard's part of
// `/api/v1/status/tsdb`. Every field optional: the UI shows what a build reports.
export interface MetricCardinality {
  metric: string;
  series: number;
  createdLastHour: number;
  budget: number;
}
export interface GuardOverflow {
  metric: string;
  samples: number;
  seriesRefused: number;
  limit: string;
  budget: number;
}
export interface LimitingRule {
  rule: string;
  what: string;
  detail: string;
  count: number;
}
export interface CardinalityGuard {
  seriesByMetricLastHour?: MetricCardinality[];
  growthLastHour?: MetricCardinality[];
  limits?: LimitingRule[];
  overflow?: GuardOverflow[];
  maxSeries?: number;
  trackedSeries?: number;
}
export interface RuleVersion {
  version: number;
  sourceHash?: string;
  loadedAtMs?: number;
  sources?: string[];
  rules?: Record<string, unknown>;
  outcomes?: Record<string, number>;
}
export interface RulesStatus {
  stable?: RuleVersion;
  canary?: (RuleVersion & { fraction: number }) | null;
  comparison?: Record<string, [number, number]> | null;
  lastReload?: {
    timeMs: number;
    success: boolean;
    version?: number | null;
    error?: { loc?: { file?: string; line?: number; column?: number } | string; message?: string } | string | null;
    durationSeconds?: number;
    testsPassed?: number;
  } | null;
  reloads?: { successes: number; failures: number };
  cardinality?: { maxSeries?: number; maxSeriesPerMetric?: number; trackedSeries?: number; totals?: Record<string, number>; overflow?: GuardOverflow[] };
  limits?: LimitingRule[];
  naming?: { mode?: string | null; violations?: Record<string, number>; metrics?: { metric: string; violations: string[]; series: number }[] };
  sampling?: Record<string, unknown> & { policies?: Record<string, { kept: number; dropped: number; keep: string }> };
}

export const rulesStatus = async (signal?: AbortSignal) =>
  (await getJSON<{ data: RulesStatus }>('/api/v1/status/rules', {}, signal)).data;

export const configStatus = async (signal?: AbortSignal) =>
  (await getJSON<{ data: { yaml: string } }>('/api/v1/status/config', {}, signal)).data;

export interface SelfSample {
  name: string;
  labels: Labels;
  value: number;
}

/** lastmile's own /metrics (Prometheus text format), parsed into samples. */
export async function selfMetrics(signal?: AbortSignal): Promise<SelfSample[]> {
  const text = await getText('/metrics', signal);
  const out: SelfSample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Labels = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

// ---- loading state -----------------------------------------------------------------------

export interface Async<T> {
  data?: T;
  error?: Error;
  loading: boolean;
  /** Milliseconds the last load took. */
  took?: number;
}

/**
 * Runs `fn` whenever `deps` change (aborting the previous run) and returns its state.
 * Earlier data stays visible while a reload runs, so charts do not flicker.
 */
export function useAsync<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Async<T> {
  const [state, setState] = useState<Async<T>>({ loading: true });
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => {
    const ctl = new AbortController();
    const t0 = performance.now();
    setState((s) => ({ ...s, loading: true }));
    fnRef
      .current(ctl.signal)
      .then((data) => {
        if (!ctl.signal.aborted) setState({ data, loading: false, took: performance.now() - t0 });
      })
      .catch((error: Error) => {
        if (!ctl.signal.aborted && error.name !== 'AbortError') setState({ error, loading: false });
      });
    return () => ctl.abort();
  }, deps);
  return state;
}
