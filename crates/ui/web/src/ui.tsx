// Small building blocks every view uses: panels, loading/error/"not available" states,
// service chips, copy buttons, the time-range picker.
import type { ComponentChildren } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';

import { ApiError } from './api';
import { fmtDateTime } from './format';
import { setParams, useLoc } from './router';
import { colorFor } from './theme';
import { RANGE_PRESETS, rangeFrom, type TimeRange } from './time';

export function Panel(props: {
  title?: ComponentChildren;
  actions?: ComponentChildren;
  children: ComponentChildren;
  class?: string;
  testId?: string;
  /** data-* attributes: what the panel shows, for tests and scripts. */
  data?: Record<string, string | number>;
}) {
  const data: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(props.data ?? {})) data[`data-${k}`] = v;
  return (
    <section class={`panel ${props.class ?? ''}`} data-testid={props.testId} {...data}>
      {(props.title || props.actions) && (
        <header class="panel-head">
          {props.title && <h2>{props.title}</h2>}
          {props.actions && <div class="panel-actions">{props.actions}</div>}
        </header>
      )}
      {props.children}
    </section>
  );
}

export function Loading(props: { what?: string }) {
  return (
    <div class="loading" role="status">
      <span class="spinner" aria-hidden="true" />
      {props.what ? `Loading ${props.what}…` : 'Loading…'}
    </div>
  );
}

/** An error as the API reported it; a missing endpoint is shown as "not available". */
export function ErrorBox(props: { error: Error; what?: string; feature?: string }) {
  const e = props.error;
  if (e instanceof ApiError && e.notAvailable) {
    return <NotAvailable feature={props.feature ?? props.what ?? 'This feature'} detail={e.message} />;
  }
  return (
    <div class="error-box" role="alert" data-testid="error">
      <b>{props.what ? `Could not load ${props.what}` : 'Request failed'}</b>
      <span>{e.message}</span>
    </div>
  );
}

export function NotAvailable(props: { feature: string; detail?: string; children?: ComponentChildren }) {
  return (
    <div class="not-available" data-testid="not-available">
      <b>{props.feature}: not available in this build.</b>
      {props.children ?? <span>This lastmile does not serve the API it needs{props.detail ? ` (${props.detail})` : ''}.</span>}
    </div>
  );
}

export function Empty(props: { children: ComponentChildren }) {
  return <div class="empty">{props.children}</div>;
}

export function ServiceChip(props: { name: string; small?: boolean }) {
  return (
    <span class={`svc ${props.small ? 'small' : ''}`}>
      <i style={{ background: colorFor(props.name) }} />
      {props.name}
    </span>
  );
}

export function CopyButton(props: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="btn ghost small"
      title="copy to clipboard"
      onClick={() => {
        navigator.clipboard?.writeText(props.text).then(
          () => {
            setDone(true);
            setTimeout(() => setDone(false), 1200);
          },
          () => undefined,
        );
      }}
    >
      {done ? 'copied' : (props.label ?? 'copy')}
    </button>
  );
}

export function Stat(props: { label: string; value: ComponentChildren; tone?: 'bad' | 'warn' | 'good'; hint?: string; testId?: string }) {
  return (
    <div class={`stat ${props.tone ?? ''}`} title={props.hint} data-testid={props.testId}>
      <div class="stat-value">{props.value}</div>
      <div class="stat-label">{props.label}</div>
    </div>
  );
}

// ---- time range ----------------------------------------------------------------------------

let tick = 0;
const tickListeners = new Set<() => void>();

/** Reloads every view's data (the refresh button and the `r` key). */
export function refreshAll() {
  tick++;
  tickListeners.forEach((f) => f());
}

/** A counter that changes on every refresh; put it in a view's load dependencies. */
export function useRefreshTick(): number {
  const [t, setT] = useState(tick);
  useEffect(() => {
    const f = () => setT(tick);
    tickListeners.add(f);
    return () => {
      tickListeners.delete(f);
    };
  }, []);
  return t;
}

/**
 * The view's time range from the URL. "now" is read when the URL or the refresh tick
 * changes, not on every render, so loads are not repeated.
 */
export function useRange(dflt = '1h'): TimeRange {
  const { q } = useLoc();
  const t = useRefreshTick();
  const key = `${q.get('range')}|${q.get('from')}|${q.get('to')}|${t}|${dflt}`;
  return useMemo(() => rangeFrom(q, dflt, Math.floor(Date.now() / 1000)), [key]);
}

export function TimePicker(props: { dflt?: string }) {
  const { q } = useLoc();
  const r = rangeFrom(q, props.dflt ?? '1h', Date.now() / 1000);
  const absolute = r.relative === null;
  return (
    <div class="timepicker">
      {absolute && (
        <span class="abs-range" title="a fixed time range (drag on a chart to zoom)">
          {fmtDateTime(r.start * 1000)} → {fmtDateTime(r.end * 1000).slice(11)}
        </span>
      )}
      <label class="sr-only" for="range-select">
        Time range
      </label>
      <select
        id="range-select"
        value={absolute ? '' : r.relative!}
        onChange={(e) => setParams({ range: (e.target as HTMLSelectElement).value, from: null, to: null })}
        title="time range"
      >
        {absolute && <option value="">custom</option>}
        {RANGE_PRESETS.map((p) => (
          <option value={p} key={p}>
            Last {p}
          </option>
        ))}
      </select>
      {absolute && (
        <button type="button" class="btn ghost small" onClick={() => setParams({ from: null, to: null })} title="back to a range ending now">
          now
        </button>
      )}
    </div>
  );
}

/** A ref for an element and its current width in CSS pixels (for SVG drawn to size). */
export function useWidth<T extends HTMLElement>(): [{ current: T | null }, number] {
  const ref = useRef<T>(null);
  const [w, setW] = useState(0);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    setW(el.clientWidth);
    const ro = new ResizeObserver(() => setW(el.clientWidth));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  return [ref, w];
}
