// How a log line points at a trace: by its labels or structured metadata (trace_id,
// span_id), or by a trace id in its text (key=value, JSON, a traceparent header).
import type { Labels } from './api';

const TRACE_RE = [
  /(?:trace[_-]?id|traceid)["']?\s*[:=]\s*["']?([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16})\b/i,
  /\b00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}\b/i,
];
const SPAN_RE = /(?:span[_-]?id|spanid)["']?\s*[:=]\s*["']?([0-9a-f]{16})\b/i;

/** The trace (and span) a log line points at, from its labels, metadata or text. */
export function traceRef(line: string, labels: Labels): { trace: string; span?: string } | undefined {
  const fromLabels = labels.trace_id ?? labels.traceID ?? labels.traceId;
  const spanLabel = labels.span_id ?? labels.spanID ?? labels.spanId;
  if (fromLabels) return { trace: fromLabels, span: spanLabel };
  for (const re of TRACE_RE) {
    const m = re.exec(line);
    if (m) return { trace: m[1].replace(/-/g, '').toLowerCase(), span: spanLabel ?? SPAN_RE.exec(line)?.[1]?.toLowerCase() };
  }
  return undefined;
}

