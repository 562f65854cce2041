// Small hooks over Preact's: the session, the route in the URL's hash, and data
// loaded from the API (once, or polled while the page is visible).
import { useEffect, useRef, useState } from "preact/hooks";
import { currentSession, subscribe } from "./api.js";

export function useSession() {
  const [session, setSession] = useState(currentSession());
  useEffect(() => subscribe(setSession), []);
  return session;
}

// "#/scripts/NAME/OWNER?x=1" -> {page: "scripts", args: ["NAME", "OWNER"], query}
export function parseRoute(hash) {
  const [path, search = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || "scripts", args: parts.slice(1), query: new URLSearchParams(search) };
}

export function useRoute() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return parseRoute(hash);
}

export const href = (...parts) => `#/${parts.map(encodeURIComponent).join("/")}`;
export const go = (...parts) => {
  location.hash = href(...parts);
};

// ``load()`` once per change of ``deps``; with ``every`` (ms), again that long after
// each answer while the tab is visible. Errors are kept, not thrown.
export function useResource(load, deps, every = 0) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    let live = true;
    let timer = 0;
    const run = async () => {
      if (every && document.hidden) {
        timer = setTimeout(run, every);
        return;
      }
      try {
        const data = await loadRef.current();
        if (live) setState({ data, error: null, loading: false });
      } catch (error) {
        if (live) setState((s) => ({ data: s.data, error, loading: false }));
      }
      if (live && every) timer = setTimeout(run, every);
    };
    setState((s) => ({ ...s, loading: true }));
    run();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [...deps, tick, every]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

// An action's state: busy while it runs, its error if it failed.
export function useAction() {
  const [state, setState] = useState({ busy: false, error: null, done: null });
  const run = async (fn) => {
    setState({ busy: true, error: null, done: null });
    try {
      const done = await fn();
      setState({ busy: false, error: null, done: done ?? null });
      return done;
    } catch (error) {
      setState({ busy: false, error, done: null });
      return undefined;
    }
  };
  return { ...state, run, clear: () => setState({ busy: false, error: null, done: null }) };
}
