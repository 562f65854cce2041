// Every call the console makes goes through here: the public REST API with the
// bearer token of the signed-in user, exactly as any other client would call it.
// The session (user, token, expiry) lives in this tab's sessionStorage; the token
// is refreshed before it expires and revoked on sign-out.

// The page is served at "/" and "/console" under the server's root, which may sit
// behind a proxy under a prefix: the API is found relative to the page.
const BASE = location.pathname.replace(/console\/?$/, "").replace(/[^/]*$/, "");
export const API = `${BASE}oml/api/py-scripts/v2`;
export const USERS = `${BASE}omlusers/api/v1/users`;
export const USAGE = `${BASE}omlusers/api/v1/usage`;
export const MODELS = `${BASE}omlmod/v1`;
const TOKEN = `${BASE}omlusers/api/oauth2/v1/token`;
const SIGN_IN = `${BASE}omlusers/api/v1/sign-in`;
const KEY = "epe.console.session";
const RETRY_REFRESH_MS = 10_000;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.errorMessage || `the server answered HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

let session = restore();
let notice = "";
let timer = 0;
const subscribers = new Set();
schedule();
arrived();

// Back from the identity provider: the server put a token of ours (or what went wrong)
// in the address's fragment. Take it out of the address at once, then sign in with it.
function arrived() {
  const found = new URLSearchParams(location.hash.slice(1));
  if (!found.has("token") && !found.has("signinError")) return;
  history.replaceState(null, "", location.pathname + location.search);
  if (found.has("signinError")) {
    notice = `Could not sign in: ${found.get("signinError")}`;
    return;
  }
  const body = { accessToken: found.get("token"), expiresIn: Number(found.get("expiresIn")) };
  send(`${USERS}/me`, { token: body.accessToken })
    .then((me) => {
      if (me.status !== 200) throw new ApiError(me.status, me.data);
      setSession(fromToken(me.data.result.username, me.data.result.admin, body));
    })
    .catch((e) => setSession(null, `Could not sign in: ${e.message}`));
}

// How one signs in here: passwords always; single sign-on when the server offers it.
export async function signInWays() {
  const r = await send(SIGN_IN);
  if (r.status !== 200) return { password: true, oidc: null };
  const oidc = r.data.oidc && { ...r.data.oidc, url: BASE + r.data.oidc.url };
  return { ...r.data, oidc };
}

function restore() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    return saved && saved.expiresAt > Date.now() ? saved : null;
  } catch {
    return null;
  }
}

export const currentSession = () => session;
export const currentNotice = () => notice;

export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

function setSession(next, message = "") {
  session = next;
  notice = message;
  if (next) sessionStorage.setItem(KEY, JSON.stringify(next));
  else sessionStorage.removeItem(KEY);
  schedule();
  for (const fn of subscribers) fn(session);
}

// ``admin`` only decides which controls the console offers: the server checks the
// role on every call whatever the page shows.
function fromToken(user, admin, body) {
  const lifetime = body.expiresIn * 1000;
  return { user, admin, token: body.accessToken, lifetime, expiresAt: Date.now() + lifetime };
}

// Refresh five minutes before expiry, or halfway through a token's life when it is
// shorter than ten minutes.
function schedule() {
  clearTimeout(timer);
  if (!session) return;
  const lead = Math.min(300_000, session.lifetime / 2);
  timer = setTimeout(refresh, Math.max(0, session.expiresAt - lead - Date.now()));
}

async function refresh() {
  const current = session;
  if (!current) return;
  const r = await send(TOKEN, {
    method: "POST",
    token: current.token,
    json: { grant_type: "refresh_token", refresh_token: current.token },
  }).catch(() => null);
  if (session !== current) return; // signed out meanwhile
  if (r && r.status === 200) setSession(fromToken(current.user, current.admin, r.data));
  else if (r && r.status === 401) setSession(null, "Your session has ended: sign in again.");
  else timer = setTimeout(refresh, RETRY_REFRESH_MS); // the server is unreachable: retry
}

export async function signIn(username, password) {
  const r = await send(TOKEN, {
    method: "POST",
    json: { grant_type: "password", username, password },
  });
  if (r.status !== 200) throw new ApiError(r.status, r.data);
  const me = await send(`${USERS}/me`, { token: r.data.accessToken });
  if (me.status !== 200) throw new ApiError(me.status, me.data);
  setSession(fromToken(me.data.result.username, me.data.result.admin, r.data));
}

export async function signOut() {
  const current = session;
  if (!current) return;
  let message = "You are signed out.";
  try {
    const r = await send(`${TOKEN}/revoke`, { method: "POST", token: current.token });
    if (r.status !== 200 && r.status !== 401)
      message = `Signed out here, but the server could not revoke the token (HTTP ${r.status}).`;
  } catch {
    message = "Signed out here, but the server could not be reached to revoke the token.";
  }
  setSession(null, message);
}

async function send(url, { method = "GET", json, body, headers = {}, token } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { errorMessage: text };
    }
  }
  return { status: response.status, headers: response.headers, data };
}

// One call with the session's token: ``{status, headers, data}`` whatever the status,
// except that a 401 ends the session (the token expired or was revoked elsewhere).
export async function exchange(method, url, options = {}) {
  const current = session;
  if (!current) throw new ApiError(401, { errorMessage: "you are not signed in" });
  const r = await send(url, { ...options, method, token: current.token });
  if (r.status === 401 && session === current) {
    setSession(null, "Your session has ended: sign in again.");
  }
  return r;
}

// The same, for calls whose only good answers are 2xx: the body, or an ApiError.
export async function call(method, url, options = {}) {
  const r = await exchange(method, url, options);
  if (r.status < 200 || r.status >= 300) throw new ApiError(r.status, r.data);
  return r.data;
}

export const api = {
  get: (path) => call("GET", API + path),
  post: (path, json) => call("POST", API + path, { json }),
  del: (path) => call("DELETE", API + path),
};

// OML Services' models, endpoints and scoring jobs (docs/models.md).
export const oml = {
  get: (path) => call("GET", MODELS + path),
  post: (path, json) => call("POST", MODELS + path, { json }),
  del: (path) => call("DELETE", MODELS + path),
};

// Path segments are user data: always encode them.
export const seg = (...parts) => parts.map((p) => `/${encodeURIComponent(p)}`).join("");
