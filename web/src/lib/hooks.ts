// Data hooks: a GET polled while the view is shown, and an action runner that keeps the
// last error as text.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, get, Params } from "../api";

export interface Polled<T> {
  data: T | undefined;
  error: string | null;
  reload: () => void;
}

export function usePoll<T = any>(path: string | null, intervalMs = 3000, params?: Params): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const key = path ? `${path}?${JSON.stringify(params ?? {})}` : null;
  useEffect(() => {
    setData(undefined);
    setError(null);
  }, [key]);
  useEffect(() => {
    if (!path) return;
    let stopped = false;
    let timer: number | undefined;
    const run = async () => {
      try {
        const d = await get<T>(path, params);
        if (!stopped) {
          setData(d);
          setError(null);
        }
      } catch (e) {
        if (!stopped) setError(e instanceof ApiError ? e.full() : String(e));
      }
      if (!stopped && intervalMs > 0) timer = window.setTimeout(run, intervalMs);
    };
    run();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [key, tick, intervalMs]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}

export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const mounted = useRef(true);
  useEffect(() => () => void (mounted.current = false), []);
  const run = useCallback(async <T,>(f: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(null);
    try {
      return await f();
    } catch (e) {
      if (mounted.current) setError(e instanceof ApiError ? e.full() : String(e));
      return undefined;
    } finally {
      if (mounted.current) setBusy(false);
    }
  }, []);
  return { busy, error, setError, run };
}
