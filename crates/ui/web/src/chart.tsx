// Time-series charts on uPlot (canvas, ~50 KB, fast with hundreds of series), with a
// hover readout, a clickable legend, drag-to-zoom and exemplar dots that open their trace.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

import { fmtClock, fmtDateTime, fmtUnit, type Unit } from './format';
import { PALETTE, cssVar, useTheme } from './theme';

export interface ChartSeries {
  label: string;
  points: [number, number][];
  color?: string;
}

export interface ChartExemplar {
  /** Unix seconds. */
  t: number;
  v: number;
  traceId: string;
  title: string;
  /** The colour of the series it belongs to, when known. */
  color?: string;
}

/** Most exemplar dots drawn; beyond it, and within one cell of another, dots are skipped. */
const MAX_EXEMPLAR_DOTS = 600;
const EXEMPLAR_CELL_PX = 7;

export interface ChartProps {
  series: ChartSeries[];
  unit?: Unit;
  height?: number;
  exemplars?: ChartExemplar[];
  onExemplar?: (e: ChartExemplar) => void;
  /** Called with a dragged time range (Unix seconds). */
  onZoom?: (start: number, end: number) => void;
  bars?: boolean;
  /** A vertical marker at this time (Unix seconds), e.g. when a trace ran. */
  marker?: number;
  legend?: boolean;
  /** Shown instead of an empty plot. */
  empty?: string;
  testId?: string;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function align(series: ChartSeries[]): uPlot.AlignedData {
  const xs = new Set<number>();
  for (const s of series) for (const [t] of s.points) xs.add(t);
  const x = [...xs].sort((a, b) => a - b);
  const index = new Map(x.map((t, i) => [t, i]));
  const ys = series.map((s) => {
    const y: (number | null)[] = new Array(x.length).fill(null);
    for (const [t, v] of s.points) y[index.get(t)!] = v;
    return y;
  });
  return [x, ...ys] as uPlot.AlignedData;
}

export function Chart(props: ChartProps) {
  const { series, unit = 'none', height = 260, exemplars, bars, marker } = props;
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const [, theme] = useTheme();
  const [hidden, setHidden] = useState<Set<string>>(new Set());
  const hiddenRef = useRef(hidden);
  hiddenRef.current = hidden;
  const cb = useRef(props);
  cb.current = props;

  const colored = useMemo(
    () => series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length] })),
    [series],
  );
  const data = useMemo(() => align(colored), [colored]);

  useEffect(() => {
    const el = host.current;
    if (!el || !colored.length) return;
    const fg = cssVar('--muted');
    const grid = cssVar('--grid');
    const fmt = (v: number) => fmtUnit(v, unit);
    let exMin = Infinity;
    let exMax = -Infinity;
    for (const e of exemplars ?? []) {
      exMin = Math.min(exMin, e.v);
      exMax = Math.max(exMax, e.v);
    }
    const tooltip = document.createElement('div');
    tooltip.className = 'chart-tip';
    const exLayer = document.createElement('div');
    exLayer.className = 'exemplar-layer';
    const markerEl = document.createElement('div');
    markerEl.className = 'chart-marker';

    const placeExemplars = (u: uPlot) => {
      exLayer.replaceChildren();
      const ex = cb.current.exemplars ?? [];
      const w = u.over.clientWidth;
      const h = u.over.clientHeight;
      // Thousands of exemplars would hide the lines: keep one dot per small cell, the
      // slowest first (the ones worth opening).
      const taken = new Set<string>();
      let drawn = 0;
      const order = [...ex].sort((a, b) => b.v - a.v);
      for (const e of order) {
        if (drawn >= MAX_EXEMPLAR_DOTS) break;
        const left = u.valToPos(e.t, 'x');
        const top = u.valToPos(e.v, 'y');
        if (!(left >= 0 && left <= w && top >= 0 && top <= h)) continue;
        const cell = `${Math.round(left / EXEMPLAR_CELL_PX)}:${Math.round(top / EXEMPLAR_CELL_PX)}`;
        if (taken.has(cell)) continue;
        taken.add(cell);
        drawn++;
        const b = document.createElement('button');
        if (e.color) b.style.borderColor = e.color;
        b.type = 'button';
        b.className = 'exemplar';
        b.style.left = `${left}px`;
        b.style.top = `${top}px`;
        b.dataset.traceId = e.traceId;
        b.dataset.testid = 'exemplar';
        b.title = e.title;
        b.setAttribute('aria-label', `exemplar: trace ${e.traceId}, ${fmt(e.v)}`);
        b.addEventListener('click', (ev) => {
          ev.stopPropagation();
          cb.current.onExemplar?.(e);
        });
        b.addEventListener('mousedown', (ev) => ev.stopPropagation());
        exLayer.appendChild(b);
      }
      exLayer.dataset.drawn = String(drawn);
      if (cb.current.marker !== undefined) {
        const x = u.valToPos(cb.current.marker, 'x');
        markerEl.style.display = x >= 0 && x <= w ? 'block' : 'none';
        markerEl.style.left = `${x}px`;
      }
    };

    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      padding: [8, 8, 0, 0],
      scales: {
        x: { time: true },
        y: {
          range: (_u, dmin, dmax) => {
            let lo = Math.min(dmin ?? 0, exMin);
            let hi = Math.max(dmax ?? 1, exMax);
            if (!Number.isFinite(lo)) lo = 0;
            if (!Number.isFinite(hi)) hi = 1;
            if (lo >= 0) lo = 0;
            if (hi === lo) hi = lo + 1;
            return uPlot.rangeNum(lo, hi, 0.08, true) as [number, number];
          },
        },
      },
      axes: [
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: '11px system-ui, sans-serif' },
        {
          stroke: fg,
          grid: { stroke: grid, width: 1 },
          ticks: { show: false },
          font: '11px system-ui, sans-serif',
          size: 64,
          values: (_u, splits) => splits.map(fmt),
        },
      ],
      series: [
        {},
        ...colored.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: bars ? 0 : 1.6,
          fill: bars || colored.length === 1 ? s.color + (bars ? 'cc' : '22') : undefined,
          points: { show: false },
          show: !hiddenRef.current.has(s.label),
          paths: bars ? uPlot.paths.bars!({ size: [0.85, 40], gap: 1 }) : undefined,
          spanGaps: false,
        })),
      ],
      legend: { show: false },
      cursor: {
        drag: { x: true, y: false, setScale: false },
        points: { size: 7 },
      },
      hooks: {
        init: [
          (u) => {
            u.over.appendChild(exLayer);
            u.over.appendChild(markerEl);
            u.over.appendChild(tooltip);
          },
        ],
        draw: [placeExemplars],
        setSelect: [
          (u) => {
            if (u.select.width > 4 && cb.current.onZoom) {
              const a = u.posToVal(u.select.left, 'x');
              const b = u.posToVal(u.select.left + u.select.width, 'x');
              cb.current.onZoom(Math.floor(a), Math.ceil(b));
            }
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          },
        ],
        setCursor: [
          (u) => {
            const i = u.cursor.idx;
            if (i === null || i === undefined || u.cursor.left === undefined || u.cursor.left < 0) {
              tooltip.style.display = 'none';
              return;
            }
            const rows: [string, number, string][] = [];
            for (let s = 1; s < u.series.length; s++) {
              const v = u.data[s][i];
              if (v === null || v === undefined || !u.series[s].show) continue;
              rows.push([String(u.series[s].label), v as number, colored[s - 1].color!]);
            }
            if (!rows.length) {
              tooltip.style.display = 'none';
              return;
            }
            rows.sort((a, b) => b[1] - a[1]);
            const shown = rows.slice(0, 8);
            tooltip.innerHTML =
              `<div class="tip-time">${esc(fmtDateTime(u.data[0][i] * 1000))}</div>` +
              shown
                .map(
                  ([l, v, c]) =>
                    `<div class="tip-row"><i style="background:${c}"></i><span class="tip-label">${esc(l)}</span><b>${esc(fmt(v))}</b></div>`,
                )
                .join('') +
              (rows.length > shown.length ? `<div class="tip-more">and ${rows.length - shown.length} more</div>` : '');
            tooltip.style.display = 'block';
            const w = u.over.clientWidth;
            const left = u.cursor.left!;
            const tw = tooltip.offsetWidth;
            tooltip.style.left = `${left + 14 + tw > w ? Math.max(0, left - tw - 14) : left + 14}px`;
            tooltip.style.top = `${Math.max(0, (u.cursor.top ?? 0) - 10)}px`;
          },
        ],
      },
    };
    const u = new uPlot(opts, data, el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = el.clientWidth;
      if (w > 0 && Math.abs(w - u.width) > 1) u.setSize({ width: w, height });
    });
    ro.observe(el);
    const leave = () => (tooltip.style.display = 'none');
    u.over.addEventListener('mouseleave', leave);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [data, theme, unit, height, exemplars, bars, marker]);

  const toggle = (label: string, solo: boolean) => {
    const u = plot.current;
    let next: Set<string>;
    if (solo) {
      const onlyThis = colored.every((s) => (s.label === label) !== hidden.has(s.label));
      next = onlyThis ? new Set() : new Set(colored.filter((s) => s.label !== label).map((s) => s.label));
    } else {
      next = new Set(hidden);
      if (next.has(label)) next.delete(label);
      else next.add(label);
    }
    setHidden(next);
    if (u) colored.forEach((s, i) => u.setSeries(i + 1, { show: !next.has(s.label) }));
  };

  if (!colored.length) {
    return (
      <div class="chart-empty" style={{ height }} data-testid={props.testId} data-series-count={0}>
        {props.empty ?? 'No data in this time range.'}
      </div>
    );
  }
  const legendMax = 40;
  return (
    <div class="chart" data-testid={props.testId} data-series-count={colored.length} data-exemplar-count={exemplars?.length ?? 0}>
      <div ref={host} class="chart-plot" />
      {props.legend !== false && (
        <ul class="legend" aria-label="series">
          {colored.slice(0, legendMax).map((s) => (
            <li key={s.label}>
              <button
                type="button"
                class={hidden.has(s.label) ? 'off' : ''}
                title="click: show/hide · shift-click: show only this"
                onClick={(e) => toggle(s.label, e.shiftKey || e.altKey)}
              >
                <i style={{ background: s.color }} />
                {s.label}
              </button>
            </li>
          ))}
          {colored.length > legendMax && <li class="muted">and {colored.length - legendMax} more series</li>}
        </ul>
      )}
    </div>
  );
}

/** A tiny inline chart: one series as an SVG area, for tables. */
export function Sparkline(props: {
  points: [number, number][];
  color: string;
  width?: number;
  height?: number;
  /** Fix the y range (e.g. to compare services); default: the series' own max. */
  max?: number;
  title?: string;
  start?: number;
  end?: number;
}) {
  const { points, color, width = 120, height = 30 } = props;
  if (!points.length) return <svg class="spark" width={width} height={height} aria-hidden="true" />;
  const t0 = props.start ?? points[0][0];
  const t1 = props.end ?? points[points.length - 1][0];
  const max = props.max ?? Math.max(...points.map((p) => p[1]), 1e-12);
  const x = (t: number) => ((t - t0) / Math.max(1e-9, t1 - t0)) * (width - 2) + 1;
  const y = (v: number) => height - 2 - (Math.min(v, max) / max) * (height - 4);
  let d = '';
  let prevT = -Infinity;
  const gap = (t1 - t0) / Math.max(8, points.length / 2);
  for (const [t, v] of points) {
    d += `${t - prevT > gap * 2 ? 'M' : 'L'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    prevT = t;
  }
  const area = `${d}L${x(points[points.length - 1][0]).toFixed(1)},${height - 1}L${x(points[0][0]).toFixed(1)},${height - 1}Z`;
  return (
    <svg class="spark" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={props.title}>
      {props.title && <title>{props.title}</title>}
      <path d={area.replace(/^L/, 'M')} fill={color} opacity="0.14" />
      <path d={d.replace(/^L/, 'M')} fill="none" stroke={color} stroke-width="1.5" stroke-linejoin="round" />
    </svg>
  );
}

/** Axis-less time label for tables. */
export const clock = (sec: number) => fmtClock(sec * 1000);
