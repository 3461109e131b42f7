/**
 * Enter/leave animation support: faces that leave stay on screen for the length of their
 * exit animation, unless the user asked for reduced motion, in which case they go at once
 * (the stylesheet also turns the animations off).
 */
import { useEffect, useRef, useState, useSyncExternalStore } from "react";

const REDUCED_MOTION = "(prefers-reduced-motion: reduce)";

function motionQuery(): MediaQueryList | null {
  return typeof window !== "undefined" && typeof window.matchMedia === "function"
    ? window.matchMedia(REDUCED_MOTION)
    : null;
}

/** Whether the user prefers reduced motion; follows changes to the setting. */
export function usePrefersReducedMotion(): boolean {
  return useSyncExternalStore(
    (onChange) => {
      const query = motionQuery();
      query?.addEventListener?.("change", onChange);
      return () => query?.removeEventListener?.("change", onChange);
    },
    () => motionQuery()?.matches ?? false,
    () => false,
  );
}

export interface Presented<T> {
  item: T;
  /** Gone from the data, still shown while its exit animation plays. */
  leaving: boolean;
}

/**
 * `items` plus the ones that just disappeared, each kept at its last position for
 * `exitMs`. With `exitMs` 0 this is just `items`.
 */
export function useExitTransition<T extends { id: string }>(items: readonly T[], exitMs: number): Presented<T>[] {
  const [leaving, setLeaving] = useState<ReadonlyMap<string, { item: T; index: number }>>(new Map());
  const previous = useRef(items);
  const timers = useRef(new Map<string, ReturnType<typeof setTimeout>>());

  useEffect(() => {
    const before = previous.current;
    previous.current = items;
    const present = new Set(items.map((i) => i.id));
    const gone = exitMs > 0 ? before.flatMap((item, index) => (present.has(item.id) ? [] : [{ item, index }])) : [];
    setLeaving((current) => {
      const next = new Map(current);
      for (const id of next.keys()) if (present.has(id)) next.delete(id); // came back
      for (const g of gone) next.set(g.item.id, g);
      return next.size === 0 && current.size === 0 ? current : next;
    });
    for (const { item } of gone) {
      clearTimeout(timers.current.get(item.id));
      timers.current.set(
        item.id,
        setTimeout(() => {
          timers.current.delete(item.id);
          setLeaving((current) => {
            if (!current.has(item.id)) return current;
            const next = new Map(current);
            next.delete(item.id);
            return next;
          });
        }, exitMs),
      );
    }
  }, [items, exitMs]);

  useEffect(() => {
    const all = timers.current;
    return () => {
      for (const t of all.values()) clearTimeout(t);
      all.clear();
    };
  }, []);

  const shown: Presented<T>[] = items.map((item) => ({ item, leaving: false }));
  const present = new Set(items.map((i) => i.id));
  for (const { item, index } of [...leaving.values()].sort((a, b) => a.index - b.index)) {
    if (!present.has(item.id)) shown.splice(Math.min(index, shown.length), 0, { item, leaving: true });
  }
  return shown;
}
