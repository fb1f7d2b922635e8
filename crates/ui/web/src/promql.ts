// Just enough PromQL (and LogQL) lexing for an editor: token classes for highlighting, and
// the completion context at the cursor (metric or function name, label name, label value,
// duration). The server parses for real; this only has to be helpful while typing.

export const FUNCTIONS: [string, string][] = [
  ['abs', 'abs(v instant-vector)'], ['absent', 'absent(v instant-vector)'], ['absent_over_time', 'absent_over_time(v range-vector)'],
  ['avg_over_time', 'avg_over_time(v range-vector)'], ['ceil', 'ceil(v instant-vector)'], ['changes', 'changes(v range-vector)'],
  ['clamp', 'clamp(v, min, max)'], ['clamp_max', 'clamp_max(v, max)'], ['clamp_min', 'clamp_min(v, min)'],
  ['count_over_time', 'count_over_time(v range-vector)'], ['day_of_month', 'day_of_month()'], ['day_of_week', 'day_of_week()'],
  ['delta', 'delta(v range-vector)'], ['deriv', 'deriv(v range-vector)'], ['exp', 'exp(v)'], ['floor', 'floor(v)'],
  ['histogram_quantile', 'histogram_quantile(φ scalar, b instant-vector)'], ['holt_winters', 'holt_winters(v, sf, tf)'],
  ['hour', 'hour()'], ['idelta', 'idelta(v range-vector)'], ['increase', 'increase(v range-vector)'], ['irate', 'irate(v range-vector)'],
  ['label_join', 'label_join(v, dst, sep, src…)'], ['label_replace', 'label_replace(v, dst, replacement, src, regex)'],
  ['last_over_time', 'last_over_time(v range-vector)'], ['ln', 'ln(v)'], ['log10', 'log10(v)'], ['log2', 'log2(v)'],
  ['max_over_time', 'max_over_time(v range-vector)'], ['min_over_time', 'min_over_time(v range-vector)'], ['minute', 'minute()'],
  ['month', 'month()'], ['predict_linear', 'predict_linear(v range-vector, t scalar)'], ['present_over_time', 'present_over_time(v range-vector)'],
  ['quantile_over_time', 'quantile_over_time(φ, v range-vector)'], ['rate', 'rate(v range-vector)'], ['resets', 'resets(v range-vector)'],
  ['round', 'round(v, to_nearest)'], ['scalar', 'scalar(v)'], ['sgn', 'sgn(v)'], ['sort', 'sort(v)'], ['sort_desc', 'sort_desc(v)'],
  ['sqrt', 'sqrt(v)'], ['stddev_over_time', 'stddev_over_time(v range-vector)'], ['stdvar_over_time', 'stdvar_over_time(v range-vector)'],
  ['sum_over_time', 'sum_over_time(v range-vector)'], ['time', 'time()'], ['timestamp', 'timestamp(v)'], ['vector', 'vector(s scalar)'], ['year', 'year()'],
];

export const AGGREGATIONS = ['sum', 'avg', 'min', 'max', 'count', 'group', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values'];
export const KEYWORDS = ['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless'];
const WORDS = new Set([...FUNCTIONS.map((f) => f[0]), ...AGGREGATIONS]);
const KW = new Set(KEYWORDS);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

export type TokenKind = 'str' | 'num' | 'dur' | 'fn' | 'kw' | 'metric' | 'label' | 'op' | 'punct' | 'comment' | 'ws' | 'other';

/** Tokens with their classes; concatenated they give back the input exactly. */
export function tokenize(src: string): [TokenKind, string][] {
  const out: [TokenKind, string][] = [];
  let i = 0;
  let braces = 0;
  // Inside `by (…)`, `without (…)`, `on (…)`…: label names, not metrics.
  let groupingNext = false;
  let inGrouping = false;
  const push = (k: TokenKind, s: string) => {
    if (k !== 'ws' && k !== 'comment') groupingNext = k === 'kw' && GROUPING.has(s);
    out.push([k, s]);
  };
  while (i < src.length) {
    const c = src[i];
    const rest = src.slice(i);
    let m: RegExpExecArray | null;
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === '\\' && c !== '`' ? 2 : 1;
      push('str', src.slice(i, Math.min(src.length, j + 1)));
      i = j + 1;
    } else if (c === '#') {
      const j = src.indexOf('\n', i);
      const end = j < 0 ? src.length : j;
      push('comment', src.slice(i, end));
      i = end;
    } else if ((m = /^\s+/.exec(rest))) {
      push('ws', m[0]);
      i += m[0].length;
    } else if ((m = /^\d+(\.\d+)?(ms|s|m|h|d|w|y)(\d+(ms|s|m|h|d|w|y))*/.exec(rest))) {
      push('dur', m[0]);
      i += m[0].length;
    } else if ((m = /^(0x[0-9a-fA-F]+|\d*\.?\d+([eE][+-]?\d+)?|Inf|NaN)/.exec(rest)) && m[0]) {
      push('num', m[0]);
      i += m[0].length;
    } else if ((m = /^[a-zA-Z_:][a-zA-Z0-9_:.]*/.exec(rest))) {
      const w = m[0];
      const next = src.slice(i + w.length).trimStart()[0];
      let k: TokenKind = 'metric';
      if (braces > 0 || inGrouping) k = 'label';
      else if (KW.has(w)) k = 'kw';
      else if (WORDS.has(w) && next === '(') k = 'fn';
      else if (WORDS.has(w)) k = 'fn';
      push(k, w);
      i += w.length;
    } else if ((m = /^(=~|!~|!=|==|>=|<=|\|=|\|~|[-+*/%^=<>|])/.exec(rest))) {
      push('op', m[0]);
      i += m[0].length;
    } else {
      if (c === '{') braces++;
      if (c === '}') braces = Math.max(0, braces - 1);
      if (c === '(' && groupingNext) inGrouping = true;
      else if (c === ')') inGrouping = false;
      push('punct', c);
      i++;
    }
  }
  return out;
}

export type CompletionContext =
  | { kind: 'name'; prefix: string; from: number }
  | { kind: 'label'; prefix: string; from: number; metric?: string }
  | { kind: 'value'; prefix: string; from: number; metric?: string; label: string; quoted: boolean }
  | { kind: 'duration'; prefix: string; from: number }
  | { kind: 'none' };

/** What could be completed at `pos`. */
export function completionContext(src: string, pos: number): CompletionContext {
  const before = src.slice(0, pos);
  // Inside a string: a label value if the string follows `label op`.
  let quote: string | null = null;
  let qStart = -1;
  for (let i = 0; i < before.length; i++) {
    const c = before[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'" || c === '`') {
      quote = c;
      qStart = i;
    }
  }
  const braceOpen = (() => {
    let depth = 0;
    for (let i = before.length - 1; i >= 0; i--) {
      const c = before[i];
      if (c === '}') depth++;
      else if (c === '{') {
        if (depth === 0) return i;
        depth--;
      }
    }
    return -1;
  })();
  const braceClosedAfter = braceOpen >= 0 && before.slice(braceOpen).includes('}');
  const inBraces = braceOpen >= 0 && !braceClosedAfter;
  const metric = inBraces ? /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(before.slice(0, braceOpen))?.[1] : firstMetric(src);
  if (quote) {
    const m = /([a-zA-Z_][a-zA-Z0-9_.]*)\s*(=~|!~|!=|=)\s*$/.exec(before.slice(0, qStart));
    if (inBraces && m) return { kind: 'value', prefix: before.slice(qStart + 1), from: qStart + 1, metric, label: m[1], quoted: true };
    return { kind: 'none' };
  }
  if (inBraces) {
    const m = /([a-zA-Z_][a-zA-Z0-9_.]*)\s*(=~|!~|!=|=)\s*$/.exec(before);
    if (m) return { kind: 'value', prefix: '', from: pos, metric, label: m[1], quoted: false };
    const w = /[a-zA-Z_][a-zA-Z0-9_.]*$/.exec(before);
    const prev = before.slice(0, pos - (w?.[0].length ?? 0)).trimEnd();
    if (prev.endsWith('{') || prev.endsWith(',')) return { kind: 'label', prefix: w?.[0] ?? '', from: pos - (w?.[0].length ?? 0), metric };
    return { kind: 'none' };
  }
  // by (…), without (…), on (…), ignoring (…), group_left (…)
  const grouping = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)$/.exec(before);
  if (grouping) {
    const w = /[a-zA-Z_][a-zA-Z0-9_]*$/.exec(before)?.[0] ?? '';
    return { kind: 'label', prefix: w, from: pos - w.length, metric };
  }
  const dur = /\[([0-9a-z]*)$/.exec(before);
  if (dur) return { kind: 'duration', prefix: dur[1], from: pos - dur[1].length };
  const w = /[a-zA-Z_:][a-zA-Z0-9_:]*$/.exec(before);
  if (w) return { kind: 'name', prefix: w[0], from: pos - w[0].length };
  return { kind: 'none' };
}

/** The first thing that looks like a metric name: the label completions' subject. */
export function firstMetric(src: string): string | undefined {
  for (const [k, t] of tokenize(src)) if (k === 'metric') return t;
  return undefined;
}

export const DURATIONS = ['1m', '2m', '5m', '10m', '15m', '30m', '1h', '3h', '6h', '12h', '1d'];
