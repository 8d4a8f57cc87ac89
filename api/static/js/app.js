// The single-page shell: top navigation and a hash router. The URL holds the view
// (#/<area>/<path...>?query), so refresh and back keep the user's place.
//
// An area is a module exporting {id, title, render(container, route)}; render may return a cleanup
// function, called when the user leaves the view. route = {area, parts: [...], query: URLSearchParams}.
// Areas link to each other with plain href="#/area/..." links or navigate('#/area/...').

import { showError, h, clear } from './ui.js';
import training from './training.js';
import data from './data.js';
import inference from './inference.js';
import gpus from './gpus.js';

const AREAS = [training, data, inference, gpus];
let cleanup = null;
let generation = 0;          // renders started; a render that a newer one overtook cleans up after itself
let rendered = null;         // the hash last rendered (popstate and hashchange both fire on a link click)

export function navigate(hash, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', hash);
  else history.pushState(null, '', hash);
  render();
}

export function parseRoute(hash = location.hash) {
  const [path, qs = ''] = hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { area: parts[0] || AREAS[0].id, parts: parts.slice(1), query: new URLSearchParams(qs) };
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

function renderNav(active) {
  const nav = clear(document.getElementById('nav'));
  for (const area of AREAS) {
    nav.append(h('a', { href: `#/${area.id}`, class: area.id === active ? 'active' : '',
      'aria-current': area.id === active ? 'page' : false }, area.title));
  }
}

async function render() {
  const mine = ++generation;
  rendered = location.hash;
  const route = parseRoute();
  const area = AREAS.find((a) => a.id === route.area) || AREAS[0];
  renderNav(area.id);
  document.title = `${area.title} · ODEO Studio`;
  if (cleanup) {
    try { cleanup(); } catch (_) { /* ignore */ }
    cleanup = null;
  }
  // each render draws into its own element, so one that a newer render overtook draws nowhere visible
  const view = h('div.area-view');
  clear(document.getElementById('view')).append(view);
  try {
    const result = await area.render(view, route);
    const done = typeof result === 'function' ? result : null;
    if (mine !== generation) {
      if (done) done();
      return;
    }
    cleanup = done;
  } catch (e) {
    if (mine !== generation || (e && e.name === 'AbortError')) return;
    showError(e, area.title);
    view.append(h('p.error', `This view could not be shown: ${e.message || e}`));
  }
}

const onLocation = () => { if (location.hash !== rendered) render(); };
window.addEventListener('popstate', onLocation);
window.addEventListener('hashchange', onLocation);
document.addEventListener('odeo:unauthorized', () => {
  const status = document.getElementById('status');
  status.textContent = 'Access token needed: open the studio with ?token=<token>';
});
render();
