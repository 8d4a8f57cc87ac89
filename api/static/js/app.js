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
}

function renderNav(active) {
  const nav = clear(document.getElementById('nav'));
  for (const area of AREAS) {
    nav.append(h('a', { href: `#/${area.id}`, class: area.id === active ? 'active' : '',
      'aria-current': area.id === active ? 'page' : false }, area.title));
  }
}

async function render() {
  const route = parseRoute();
  const area = AREAS.find((a) => a.id === route.area) || AREAS[0];
  renderNav(area.id);
  document.title = `${area.title} · ODEO Studio`;
  if (cleanup) {
    try { cleanup(); } catch (_) { /* ignore */ }
    cleanup = null;
  }
  const view = clear(document.getElementById('view'));
  try {
    const result = await area.render(view, route);
    cleanup = typeof result === 'function' ? result : null;
  } catch (e) {
    showError(e, area.title);
    view.append(h('p.error', `This view could not be shown: ${e.message || e}`));
  }
}

window.addEventListener('popstate', render);
window.addEventListener('hashchange', render);
document.addEventListener('odeo:unauthorized', () => {
  const status = document.getElementById('status');
  status.textContent = 'Access token needed: open the studio with ?token=<token>';
});
render();
