// The node's own JSON API, the bearer token and the live event stream.

const KEY = 'offgrid.token';

/** The token, from this tab's session or, when remembered, from this device. */
export function token() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || '';
}

/** Keeps the token for this tab, or on this device when `remember`. */
export function setToken(t, remember) {
  forgetToken();
  (remember ? localStorage : sessionStorage).setItem(KEY, t.trim());
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** An API error: the node's {"error", "message"} body and the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (${status} ${code})`);
    this.status = status; this.code = code;
  }
}

let askToken = async () => null;
/** Sets how the page asks a person for the token (a dialog); resolves to it or null. */
export function onTokenNeeded(f) { askToken = f; }

async function call(method, path, body, auth) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (auth) headers.authorization = `Bearer ${token()}`;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let v = null;
  try { v = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) throw new ApiError(r.status, v && v.error || 'error', v && v.message || r.statusText);
  return v;
}

/** GET a JSON document; reading needs no token. */
export const get = (path) => call('GET', path);

/** An action: needs the token, asked for once; a wrong one (401) is asked for again. */
export async function act(method, path, body) {
  for (let tries = 0; tries < 3; tries++) {
    if (!token()) {
      const t = await askToken(tries ? 'That token was refused (401).' : '');
      if (!t) throw new ApiError(401, 'unauthorized', 'no token given');
    }
    try {
      return await call(method, path, body, true);
    } catch (e) {
      if (e.status !== 401) throw e;
      forgetToken();
    }
  }
  throw new ApiError(401, 'unauthorized', 'the token was refused');
}

/** GET that answers null when the feature is off (503 unavailable). */
export async function getOptional(path) {
  try { return await get(path); } catch (e) {
    if (e.status === 503 || e.status === 404) return null;
    throw e;
  }
}

const listeners = new Map();
/** Calls f(data) for every event `kind` of the stream. */
export function on(kind, f) {
  if (!listeners.has(kind)) listeners.set(kind, new Set());
  listeners.get(kind).add(f);
  return () => listeners.get(kind).delete(f);
}

const KINDS = ['hello', 'status', 'peer', 'job_started', 'job_finished', 'lagged'];

/** Opens `/events`; `state(s)` hears 'live', 'connecting' or 'offline'. The browser
 * reconnects by itself; a refused stream (too many open) is retried after a pause. */
export function connect(state) {
  let es;
  const open = () => {
    state('connecting');
    es = new EventSource('/events');
    es.onopen = () => state('live');
    es.onerror = () => {
      state('offline');
      if (es.readyState === EventSource.CLOSED) setTimeout(open, 5000);
    };
    for (const k of KINDS) {
      es.addEventListener(k, (m) => {
        let d = null;
        try { d = JSON.parse(m.data); } catch (_) { return; }
        for (const f of listeners.get(k) || []) f(d);
        for (const f of listeners.get('*') || []) f(k, d);
      });
    }
  };
  open();
  return () => es && es.close();
}
