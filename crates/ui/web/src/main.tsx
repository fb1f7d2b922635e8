// lastmile's web UI: the layout (top bar, navigation, time range, theme), the route table
// and the keyboard shortcuts. Each view lives in views/.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';

import './style.css';
import { Link, hrefKeepTime, navigate, useLoc } from './router';
import { cycleTheme, useTheme } from './theme';
import { TimePicker, refreshAll } from './ui';
import { Cardinality } from './views/cardinality';
import { Explore } from './views/explore';
import { GoRuntime } from './views/goruntime';
import { Home } from './views/home';
import { Logs } from './views/logs';
import { ServiceDetail, Services } from './views/services';
import { Status } from './views/status';
import { TraceSearch } from './views/traces';
import { TraceView } from './views/trace';

interface NavItem {
  path: string;
  label: string;
  key: string;
}

const NAV: NavItem[] = [
  { path: '/', label: 'Home', key: 'h' },
  { path: '/explore', label: 'Metrics', key: 'm' },
  { path: '/traces', label: 'Traces', key: 't' },
  { path: '/logs', label: 'Logs', key: 'l' },
  { path: '/services', label: 'Services', key: 's' },
  { path: '/cardinality', label: 'Cardinality', key: 'c' },
  { path: '/go', label: 'Go runtime', key: 'g' },
  { path: '/status', label: 'Status', key: 'i' },
];

function route(path: string) {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case undefined:
      return { view: <Home />, nav: '/', title: 'Fleet' };
    case 'explore':
      return { view: <Explore />, nav: '/explore', title: 'Metrics' };
    case 'traces':
      return parts[1]
        ? { view: <TraceView id={parts[1]} />, nav: '/traces', title: `Trace ${parts[1].slice(0, 8)}` }
        : { view: <TraceSearch />, nav: '/traces', title: 'Traces' };
    case 'logs':
      return { view: <Logs />, nav: '/logs', title: 'Logs' };
    case 'services':
      return parts[1]
        ? { view: <ServiceDetail name={parts[1]} />, nav: '/services', title: parts[1] }
        : { view: <Services />, nav: '/services', title: 'Services' };
    case 'cardinality':
      return { view: <Cardinality />, nav: '/cardinality', title: 'Cardinality' };
    case 'go':
      return { view: <GoRuntime />, nav: '/go', title: 'Go runtime' };
    case 'status':
      return { view: <Status />, nav: '/status', title: 'Status' };
    default:
      return {
        view: (
          <div class="page">
            <h1>Not found</h1>
            <p>
              There is no page at <code>{path}</code>. <Link href="/">Go home</Link>.
            </p>
          </div>
        ),
        nav: '',
        title: 'Not found',
      };
  }
}

const SHORTCUTS: [string, string][] = [
  ['/', 'focus the query or search box'],
  ['Enter', 'run the query (Shift+Enter: new line)'],
  ['g then h m t l s c g i', 'go to Home, Metrics, Traces, Logs, Services, Cardinality, Go runtime, Status'],
  ['j / k or ↓ / ↑', 'next / previous span in a trace'],
  ['Esc', 'close a suggestion list, a dialog or the span details'],
  ['r', 'reload the data'],
  ['d', 'switch theme (auto → light → dark)'],
  ['?', 'this help'],
];

function typingIn(t: EventTarget | null): boolean {
  const el = t as HTMLElement | null;
  if (!el) return false;
  return el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName);
}

function App() {
  const loc = useLoc();
  const [choice] = useTheme();
  const [help, setHelp] = useState(false);
  const r = route(loc.path);

  useEffect(() => {
    document.title = `${r.title} · lastmile`;
  }, [r.title]);

  useEffect(() => {
    let pendingG = 0;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') setHelp(false);
      if (e.ctrlKey || e.metaKey || e.altKey || typingIn(e.target)) return;
      const now = Date.now();
      if (pendingG && now - pendingG < 1500) {
        pendingG = 0;
        const item = NAV.find((n) => n.key === e.key);
        if (item) {
          e.preventDefault();
          navigate(hrefKeepTime(item.path));
        }
        return;
      }
      switch (e.key) {
        case 'g':
          pendingG = now;
          break;
        case '/': {
          const input = document.querySelector<HTMLElement>('[data-primary-input]');
          if (input) {
            e.preventDefault();
            input.focus();
          }
          break;
        }
        case '?':
          setHelp((h) => !h);
          break;
        case 'r':
          refreshAll();
          break;
        case 'd':
          cycleTheme();
          break;
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <Link class="brand" href={hrefKeepTime('/')} aria-label="lastmile home">
          <svg viewBox="0 0 32 32" width="22" height="22" aria-hidden="true">
            <rect width="32" height="32" rx="7" fill="var(--accent)" />
            <path d="M6 22h6l3-11 4 15 3-8h4" fill="none" stroke="#fff" stroke-width="2.6" stroke-linecap="round" stroke-linejoin="round" />
          </svg>
          lastmile
        </Link>
        <nav aria-label="views">
          {NAV.map((n) => (
            <Link
              key={n.path}
              href={hrefKeepTime(n.path)}
              class={r.nav === n.path ? 'active' : ''}
              aria-current={r.nav === n.path ? 'page' : undefined}
              title={`g ${n.key}`}
            >
              {n.label}
            </Link>
          ))}
        </nav>
        <div class="topbar-tools">
          <TimePicker />
          <button type="button" class="btn ghost icon" onClick={refreshAll} title="reload (r)" aria-label="reload">
            ↻
          </button>
          <button type="button" class="btn ghost icon" onClick={cycleTheme} title={`theme: ${choice} (d)`} aria-label={`theme: ${choice}`}>
            {choice === 'dark' ? '☾' : choice === 'light' ? '☀' : '◐'}
          </button>
          <button type="button" class="btn ghost icon" onClick={() => setHelp(true)} title="keyboard shortcuts (?)" aria-label="keyboard shortcuts">
            ?
          </button>
        </div>
      </header>
      <main id="main">{r.view}</main>
      {help && (
        <div class="dialog-backdrop" onClick={() => setHelp(false)}>
          <div class="dialog" role="dialog" aria-modal="true" aria-label="keyboard shortcuts" onClick={(e) => e.stopPropagation()}>
            <h2>Keyboard shortcuts</h2>
            <table class="shortcuts">
              <tbody>
                {SHORTCUTS.map(([k, d]) => (
                  <tr key={k}>
                    <td>
                      <kbd>{k}</kbd>
                    </td>
                    <td>{d}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <button type="button" class="btn" onClick={() => setHelp(false)} autoFocus>
              Close
            </button>
          </div>
        </div>
      )}
    </>
  );
}

render(<App />, document.getElementById('app')!);
