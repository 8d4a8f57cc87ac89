// The one way the UI talks to the studio: fetch /api/v1 with the access token, JSON in and out.
// Errors become ApiError(code, message, field) from the studio's {"error": {...}} body, so views can
// show the message next to the field it names. Nothing here knows about any area of the UI.

const TOKEN_KEY = 'odeo.token';

export class ApiError extends Error {
  constructor(status, code, message, field, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.details = details || {};
  }
}

// ?token= is read once, kept for this tab only (session storage) and taken out of the address bar and
// the history entry, so it is not left in bookmarks, shared links or the browser's history.
function takeTokenFromUrl() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('token');
  const stored = localStorage.getItem(TOKEN_KEY);         // where earlier versions kept it
  if (stored !== null) {
    if (!sessionStorage.getItem(TOKEN_KEY)) sessionStorage.setItem(TOKEN_KEY, stored);
    localStorage.removeItem(TOKEN_KEY);
  }
  if (fromUrl === null) return;
  if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl);
  url.searchParams.delete('token');
  history.replaceState(history.state, '', `${url.pathname}${url.search}${url.hash}`);
}
takeTokenFromUrl();

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// A URL the browser fetches directly (download, <video>, <img>): the token rides in the query.
export function fileUrl(path) {
  const t = token();
  const url = path.startsWith('/') ? path : `/api/v1/${path}`;
  return t ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(t)}` : url;
}

// keepalive: the request outlives the page (a last save when the user leaves or reloads).
export async function api(path, { method = 'GET', body, query, raw = false, signal, headers = {}, keepalive = false } = {}) {
  let url = path.startsWith('/') ? path : `/api/v1/${path}`;
  if (query) {
    const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null));
    if ([...q].length) url += `?${q}`;
  }
  // X-Requested-With: the studio refuses a state change without it (or a JSON body), which a
  // cross-site form cannot send.
  const h = { Accept: 'application/json', 'X-Requested-With': 'odeo', ...headers };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof FormData) && !(body instanceof ArrayBuffer)) {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, { method, body: payload, headers: h, signal, keepalive });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', 'The studio does not answer (is it running?)');
  }
  if (raw) {
    if (!response.ok) throw await errorOf(response);
    return response;
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

async function errorOf(response) {
  let err = {};
  try {
    err = (await response.json()).error || {};
  } catch (_) { /* not JSON */ }
  if (response.status === 401) document.dispatchEvent(new CustomEvent('odeo:unauthorized'));
  return new ApiError(response.status, err.code || `http_${response.status}`,
    err.message || `${response.status} ${response.statusText}`, err.field, err);
}
