// The hash router. The URL holds the view (#/<area>/<path...>?query), so refresh and back keep the
// user's place. route = {area, parts: [...], query: URLSearchParams}.
//
// Areas change the view with plain href="#/area/..." links, navigate('#/area/...'), or setQuery() for
// state that should survive a refresh without a history entry (tabs, filters). The shell (app.js)
// calls startRouter() once with the function that draws a route.

let show = null;             // draws a route; set by startRouter()
let defaultArea = '';        // the area of an empty hash
let rendered = null;         // the hash last drawn (popstate and hashchange both fire on a link click)

function renderCurrent() {
  rendered = location.hash;
  if (show) show(parseRoute());
}

export function parseRoute(hash = location.hash) {
  const [path, qs = ''] = hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { area: parts[0] || defaultArea, parts: parts.slice(1), query: new URLSearchParams(qs) };
}

export function navigate(hash, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', hash);
  else history.pushState(null, '', hash);
  renderCurrent();
}

// Change query parameters of the current view without adding history entries (tabs, filters).
export function setQuery(changes) {
  const route = parseRoute();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') route.query.delete(k);
    else route.query.set(k, v);
  }
  const q = route.query.toString();
  const path = [route.area, ...route.parts].map(encodeURIComponent).join('/');
  history.replaceState(null, '', `#/${path}${q ? `?${q}` : ''}`);
  rendered = location.hash;
}

// Draw the current route now and again whenever the location changes (links, back, forward).
// render(route) is called with the parsed route; defaultArea names the area of an empty hash.
export function startRouter(render, { defaultArea: area = '' } = {}) {
  show = render;
  defaultArea = area;
  const onLocation = () => { if (location.hash !== rendered) renderCurrent(); };
  window.addEventListener('popstate', onLocation);
  window.addEventListener('hashchange', onLocation);
  renderCurrent();
}
