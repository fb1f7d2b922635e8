// Light and dark: "auto" follows the system; the choice is kept in localStorage.
import { useEffect, useState } from 'preact/hooks';

export type ThemeChoice = 'auto' | 'light' | 'dark';
const KEY = 'lastmile-theme';
const media = window.matchMedia('(prefers-color-scheme: dark)');
const listeners = new Set<() => void>();

export function themeChoice(): ThemeChoice {
  try {
    const t = localStorage.getItem(KEY);
    return t === 'light' || t === 'dark' ? t : 'auto';
  } catch {
    return 'auto';
  }
}

export function effectiveTheme(): 'light' | 'dark' {
  const c = themeChoice();
  return c === 'auto' ? (media.matches ? 'dark' : 'light') : c;
}

export function setTheme(c: ThemeChoice) {
  try {
    if (c === 'auto') localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, c);
  } catch {
    /* private mode: the choice lasts for this page */
  }
  if (c === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = c;
  listeners.forEach((f) => f());
}

/** Cycles auto → light → dark → auto. */
export function cycleTheme() {
  const order: ThemeChoice[] = ['auto', 'light', 'dark'];
  setTheme(order[(order.indexOf(themeChoice()) + 1) % order.length]);
}

media.addEventListener('change', () => listeners.forEach((f) => f()));

/** [choice, effective theme]; re-renders on change. */
export function useTheme(): [ThemeChoice, 'light' | 'dark'] {
  const [, bump] = useState(0);
  useEffect(() => {
    const f = () => bump((n) => n + 1);
    listeners.add(f);
    return () => {
      listeners.delete(f);
    };
  }, []);
  return [themeChoice(), effectiveTheme()];
}

/** A CSS custom property's current value (colours for canvas charts). */
export function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** Series colours: distinct in both themes, colour-blind-aware ordering. */
export const PALETTE = [
  '#4c7ef3', '#e8833a', '#2fa37a', '#d9475c', '#9467d9', '#c9a227',
  '#1fa3b8', '#d45fa8', '#7a8b2f', '#8c6d4f', '#3949ab', '#64748b',
];

/** A stable colour per name (services keep theirs across every view). */
export function colorFor(name: string): string {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return PALETTE[(h >>> 0) % PALETTE.length];
}
