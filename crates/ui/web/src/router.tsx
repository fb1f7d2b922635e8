// A small history-API router: every view's state lives in the URL (path + query), so a
// link pasted into a chat opens the same view. Views read it with useLoc() and change it
// with navigate()/setParams().
import type { AnchorHTMLAttributes, ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

export interface Loc {
  path: string;
  q: URLSearchParams;
}

const listeners = new Set<() => void>();
const notify = () => listeners.forEach((f) => f());
window.addEventListener('popstate', notify);

function current(): Loc {
  return { path: location.pathname, q: new URLSearchParams(location.search) };
}

/** The current location; re-renders the caller whenever it changes. */
export function useLoc(): Loc {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const f = () => setLoc(current());
    listeners.add(f);
    return () => {
      listeners.delete(f);
    };
  }, []);
  return loc;
}

export function navigate(href: string, opts: { replace?: boolean } = {}) {
  const before = location.pathname;
  if (href === location.pathname + location.search) return;
  history[opts.replace ? 'replaceState' : 'pushState'](null, '', href);
  if (location.pathname !== before) window.scrollTo(0, 0);
  notify();
}

export type Params = Record<string, string | number | boolean | null | undefined>;

/** `path?k=v…`, leaving out empty values. */
export function href(path: string, params: Params = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === '' || v === false) continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** The time-range parameters of the current URL, to carry them from view to view. */
export function timeParams(q: URLSearchParams = new URLSearchParams(location.search)): Params {
  return { range: q.get('range'), from: q.get('from'), to: q.get('to') };
}

/** `path` with the current time range kept. */
export function hrefKeepTime(path: string, params: Params = {}): string {
  return href(path, { ...timeParams(), ...params });
}

/** Merges `patch` into the current query string (null removes a key). */
export function setParams(patch: Params, opts: { replace?: boolean } = {}) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(patch)) {
    if (v === null || v === undefined || v === '' || v === false) q.delete(k);
    else q.set(k, String(v));
  }
  const s = q.toString();
  navigate(s ? `${location.pathname}?${s}` : location.pathname, opts);
}

type AnchorProps = AnchorHTMLAttributes<HTMLAnchorElement> & { href: string; children?: ComponentChildren };

/** An <a> that navigates without a page load (modified clicks still open new tabs). */
export function Link(props: AnchorProps) {
  const { href: to, onClick, ...rest } = props;
  return (
    <a
      {...rest}
      href={to}
      onClick={(e) => {
        if (onClick) (onClick as (e: MouseEvent) => void)(e);
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(to);
      }}
    />
  );
}
