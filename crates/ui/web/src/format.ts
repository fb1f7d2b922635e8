// Number, duration, size and time formatting shared by every view.

const SI = [
  [1e12, 'T'],
  [1e9, 'G'],
  [1e6, 'M'],
  [1e3, 'k'],
] as const;

/** Three significant digits, SI suffix above 10k: 0.0123, 4.56, 789, 12.3k, 4.5M. */
export function fmtNum(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  const a = Math.abs(v);
  if (a >= 1e4) {
    for (const [d, s] of SI) if (a >= d) return trim((v / d).toPrecision(3)) + s;
  }
  if (a === 0) return '0';
  if (a >= 100) return Math.round(v).toString();
  if (a < 1e-3) return v.toExponential(2).replace('e', 'e');
  return trim(v.toPrecision(3));
}

function trim(s: string): string {
  return s.includes('.') && !s.includes('e') ? s.replace(/\.?0+$/, '') : s;
}

/** A duration given in seconds: 820ns, 3.4µs, 12.5ms, 1.23s, 4m 05s, 2h 10m. */
export function fmtSeconds(s: number | null | undefined): string {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  if (!Number.isFinite(s)) return s > 0 ? '+Inf' : '-Inf';
  const a = Math.abs(s);
  const sign = s < 0 ? '-' : '';
  if (a === 0) return '0';
  if (a < 1e-6) return sign + trim((a * 1e9).toPrecision(3)) + 'ns';
  if (a < 1e-3) return sign + trim((a * 1e6).toPrecision(3)) + 'µs';
  if (a < 1) return sign + trim((a * 1e3).toPrecision(3)) + 'ms';
  if (a < 60) return sign + trim(a.toPrecision(3)) + 's';
  if (a < 3600) {
    const m = Math.floor(a / 60);
    return `${sign}${m}m ${String(Math.round(a - m * 60)).padStart(2, '0')}s`;
  }
  if (a < 86400 * 2) {
    const h = Math.floor(a / 3600);
    return `${sign}${h}h ${String(Math.round((a - h * 3600) / 60)).padStart(2, '0')}m`;
  }
  return sign + trim((a / 86400).toPrecision(3)) + 'd';
}

export const fmtNanos = (ns: number) => fmtSeconds(ns / 1e9);

export function fmtBytes(b: number | null | undefined): string {
  if (b === null || b === undefined || Number.isNaN(b)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = b;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? String(Math.round(v)) : trim(v.toPrecision(3))) + ' ' + units[i];
}

/** A ratio as a percentage: 0.0612 → 6.12%. */
export function fmtPct(r: number | null | undefined): string {
  if (r === null || r === undefined || Number.isNaN(r)) return '–';
  const p = r * 100;
  if (p === 0) return '0%';
  if (Math.abs(p) < 0.01) return '<0.01%';
  return trim(p.toPrecision(Math.abs(p) >= 10 ? 3 : 2)) + '%';
}

/** A value in a unit guessed from a metric name: seconds, bytes, ratios, or plain. */
export function fmtUnit(v: number | null | undefined, unit: Unit): string {
  switch (unit) {
    case 'seconds':
      return fmtSeconds(v);
    case 'bytes':
      return fmtBytes(v);
    case 'ratio':
      return fmtPct(v);
    case 'rps':
      return fmtNum(v) + '/s';
    default:
      return fmtNum(v);
  }
}

export type Unit = 'seconds' | 'bytes' | 'ratio' | 'rps' | 'none';

/** The unit of a PromQL expression's result, guessed from its shape and metric names. */
export function guessUnit(expr: string): Unit {
  const e = expr.replace(/\s+/g, '');
  const timey = /(_seconds|latency|duration)/.test(e);
  if (/histogram_quantile/.test(e)) return timey ? 'seconds' : 'none';
  if (/^[a-z_:]*_ratio\b/.test(e)) return 'ratio';
  const counted = /\b(rate|irate|increase|count|count_over_time)\(/.test(e) || /_(count|total|bucket)\b/.test(e);
  if (counted) return 'none';
  if (/_seconds\b|_seconds_(sum|max)\b|_seconds\{/.test(e)) return 'seconds';
  if (/_bytes\b|_bytes\{/.test(e)) return 'bytes';
  return 'none';
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** HH:MM:SS in local time. */
export function fmtClock(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** HH:MM:SS.mmm in local time. */
export function fmtClockMs(ms: number): string {
  return `${fmtClock(ms)}.${pad(Math.floor(ms % 1000), 3)}`;
}

/** YYYY-MM-DD HH:MM:SS in local time. */
export function fmtDateTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(ms)}`;
}

/** "12s ago", "4m ago", "3h ago", "2d ago". */
export function fmtAgo(ms: number, now = Date.now()): string {
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** A label set as Prometheus prints it: name{a="b", c="d"}. */
export function fmtLabels(labels: Record<string, string>, withName = true): string {
  const name = withName ? (labels.__name__ ?? '') : '';
  const rest = Object.keys(labels)
    .filter((k) => k !== '__name__')
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  if (!rest.length) return name || '{}';
  return `${name}{${rest.join(', ')}}`;
}
