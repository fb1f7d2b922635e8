// A query editor: a textarea over a highlighted copy of its text (so typing stays native:
// undo, selection, IME, screen readers), with a completion list driven by the API.
import { useEffect, useRef, useState } from 'preact/hooks';

import { type CompletionContext, completionContext, tokenize } from './promql';

export interface Completion {
  label: string;
  kind: 'metric' | 'function' | 'aggregation' | 'keyword' | 'label' | 'value' | 'duration';
  detail?: string;
}

export type Completer = (ctx: CompletionContext, signal: AbortSignal) => Promise<Completion[]>;

interface Props {
  value: string;
  onChange: (v: string) => void;
  onRun: () => void;
  complete: Completer;
  placeholder?: string;
  label: string;
  testId?: string;
}

function rank(items: Completion[], prefix: string): Completion[] {
  const p = prefix.toLowerCase();
  const starts: Completion[] = [];
  const contains: Completion[] = [];
  for (const it of items) {
    const l = it.label.toLowerCase();
    if (l === p && items.length > 1) continue;
    if (l.startsWith(p)) starts.push(it);
    else if (p && l.includes(p)) contains.push(it);
  }
  return [...starts, ...contains].slice(0, 60);
}

export function QueryEditor(props: Props) {
  const ta = useRef<HTMLTextAreaElement>(null);
  const [items, setItems] = useState<Completion[]>([]);
  const [active, setActive] = useState(0);
  const [ctx, setCtx] = useState<CompletionContext>({ kind: 'none' });
  const req = useRef<AbortController | null>(null);
  const listId = `${props.testId ?? 'editor'}-completions`;

  const refresh = (value: string, pos: number, force = false) => {
    const c = completionContext(value, pos);
    req.current?.abort();
    if (c.kind === 'none' || (!force && c.kind === 'name' && c.prefix.length < 1)) {
      setItems([]);
      return;
    }
    const ctl = new AbortController();
    req.current = ctl;
    props
      .complete(c, ctl.signal)
      .then((all) => {
        if (ctl.signal.aborted) return;
        setCtx(c);
        setItems(rank(all, c.prefix));
        setActive(0);
      })
      .catch(() => undefined);
  };

  useEffect(() => () => req.current?.abort(), []);

  const accept = (it: Completion) => {
    const el = ta.current;
    if (!el || ctx.kind === 'none') return;
    const pos = el.selectionStart;
    const v = props.value;
    let insert = it.label;
    let after = v.slice(pos);
    // Replace the whole word under the cursor, not just its start.
    const tail = /^[a-zA-Z0-9_:.]*/.exec(after)?.[0] ?? '';
    if (ctx.kind !== 'value' || !ctx.quoted) after = after.slice(tail.length);
    if (it.kind === 'function' || it.kind === 'aggregation') insert += after.startsWith('(') ? '' : '(';
    if (ctx.kind === 'value') {
      const escaped = it.label.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
      if (ctx.quoted) {
        const close = after.indexOf('"');
        after = close >= 0 ? after.slice(close) : '"' + after;
        insert = escaped;
      } else insert = `"${escaped}"`;
    }
    if (ctx.kind === 'duration' && !after.startsWith(']')) insert += ']';
    const next = v.slice(0, ctx.from) + insert + after;
    const caret = ctx.from + insert.length + (ctx.kind === 'value' && ctx.quoted ? 1 : 0);
    props.onChange(next);
    setItems([]);
    requestAnimationFrame(() => {
      el.focus();
      el.setSelectionRange(caret, caret);
    });
  };

  const onKey = (e: KeyboardEvent) => {
    const open = items.length > 0;
    if (open && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      e.preventDefault();
      setActive((a) => (a + (e.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length);
      return;
    }
    if (open && (e.key === 'Tab' || (e.key === 'Enter' && !e.ctrlKey && !e.metaKey && !e.shiftKey))) {
      e.preventDefault();
      accept(items[active]);
      return;
    }
    if (e.key === 'Escape' && open) {
      e.preventDefault();
      e.stopPropagation();
      setItems([]);
      return;
    }
    if (e.key === ' ' && e.ctrlKey) {
      e.preventDefault();
      const el = e.target as HTMLTextAreaElement;
      refresh(el.value, el.selectionStart, true);
      return;
    }
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      setItems([]);
      props.onRun();
    }
  };

  return (
    <div class="editor" data-testid={props.testId}>
      <div class="editor-stack">
        <pre class="editor-hl" aria-hidden="true">
          {tokenize(props.value).map(([k, t], i) => (
            <span key={i} class={`t-${k}`}>
              {t}
            </span>
          ))}
          {'\n'}
        </pre>
        <textarea
          ref={ta}
          value={props.value}
          spellcheck={false}
          autoComplete="off"
          autoCapitalize="off"
          rows={1}
          placeholder={props.placeholder}
          aria-label={props.label}
          aria-autocomplete="list"
          aria-controls={listId}
          aria-expanded={items.length > 0}
          data-primary-input
          onInput={(e) => {
            const el = e.target as HTMLTextAreaElement;
            props.onChange(el.value);
            refresh(el.value, el.selectionStart);
          }}
          onKeyDown={onKey}
          onBlur={() => setTimeout(() => setItems([]), 150)}
          onClick={() => setItems([])}
        />
      </div>
      {items.length > 0 && (
        <ul class="completions" id={listId} role="listbox" data-testid="completions">
          {items.map((it, i) => (
            <li
              key={it.kind + it.label}
              role="option"
              aria-selected={i === active}
              class={i === active ? 'active' : ''}
              onMouseDown={(e) => {
                e.preventDefault();
                accept(it);
              }}
              onMouseEnter={() => setActive(i)}
            >
              <span class={`ck ck-${it.kind}`}>{it.kind[0]}</span>
              <span class="c-label">{it.label}</span>
              {it.detail && <span class="c-detail">{it.detail}</span>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
