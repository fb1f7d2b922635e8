// Time ranges (relative "last 1h" or absolute from/to), Prometheus durations and steps.

/** Prometheus duration ("1h30m", "5m", "250ms", "2d", "1w") to seconds; null if invalid. */
export function parseDuration(s: string): number | null {
  const t = s.trim();
  if (!t) return null;
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ms|us|µs|ns|y|w|d|h|m|s)/g;
  let total = 0;
  let used = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(t))) {
    if (m.index !== used) return null;
    used += m[0].length;
    const n = Number(m[1]);
    const mult: Record<string, number> = {
      ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000,
    };
    total += n * mult[m[2]];
  }
  return used === t.length ? total : null;
}

/** Seconds as a compact Prometheus/Go duration: 90 → "1m30s", 0.25 → "250ms". */
export function fmtDuration(sec: number): string {
  if (sec <= 0) return '0s';
  if (sec < 1) return `${Math.round(sec * 1000)}ms`;
  let s = Math.round(sec);
  const parts: string[] = [];
  const units: [number, string][] = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  for (const [u, n] of units) {
    if (s >= u) {
      parts.push(`${Math.floor(s / u)}${n}`);
      s %= u;
    }
  }
  return parts.join('');
}

/** Go duration for Tempo's minDuration: Go has no "d" unit. */
export function fmtGoDuration(sec: number): string {
  if (sec < 1) return `${Math.max(1, Math.round(sec * 1000))}ms`;
  if (sec < 60) return `${Math.round(sec * 10) / 10}s`;
  return `${Math.round(sec)}s`;
}

export const RANGE_PRESETS = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '24h', '2d', '7d'];

export interface TimeRange {
  /** Unix seconds. */
  start: number;
  end: number;
  /** "1h" for a relative range, null for an absolute one. */
  relative: string | null;
}

/**
 * The range a URL asks for: `from`/`to` (Unix seconds) when both are there, else `range`
 * (a duration, default `dflt`) ending at `now`.
 */
export function rangeFrom(q: URLSearchParams, dflt: string, now: number): TimeRange {
  const from = Number(q.get('from'));
  const to = Number(q.get('to'));
  if (q.get('from') && q.get('to') && Number.isFinite(from) && Number.isFinite(to) && to > from) {
    return { start: from, end: to, relative: null };
  }
  const r = q.get('range') || dflt;
  const secs = parseDuration(r) ?? parseDuration(dflt) ?? 3600;
  return { start: now - secs, end: now, relative: parseDuration(r) ? r : dflt };
}

const NICE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** A step giving about `points` points over `rangeSec`, rounded up to a familiar value. */
export function autoStep(rangeSec: number, points = 250): number {
  const raw = rangeSec / points;
  for (const s of NICE_STEPS) if (s >= raw) return s;
  return Math.ceil(raw / 86400) * 86400;
}

/**
 * The range-vector window for rate() at a step: at least four steps and a minute (span
 * metrics and scrapes arrive every 15 s, so a shorter window would often hold one sample).
 */
export function rateWindow(stepSec: number): string {
  return fmtDuration(Math.max(60, stepSec * 4));
}
