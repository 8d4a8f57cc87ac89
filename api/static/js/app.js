// The single-page shell: top navigation and the area views, drawn by the hash router (router.js).
// The URL holds the view (#/<area>/<path...>?query), so refresh and back keep the user's place.
//
// An area is a module exporting {id, title, render(container, route)}; render may return a cleanup
// function, called when the user leaves the view. route = {area, parts: [...], query: URLSearchParams}.
// Areas link to each other with plain href="#/area/..." links or navigate('#/area/...') from router.js;
// no module imports this one.

import { showError, h, clear } from './ui.js';
import { api } from './api.js';
import { startRouter } from './router.js';
import training from './training.js';
import data from './data.js';
import inference from './inference.js';
import gpus from './gpus.js';
import models from './models.js';
import settings from './settings.js';
import { startNotifier } from './notify.js';
import { accountArea, mountUser } from './account.js';

const AREAS = [training, data, inference, models, gpus, settings];
const me = await api('whoami').catch(() => null);      // accounts mode: the signed-in user and their area
if (me && me.user) {
  AREAS.push(accountArea(me));
  mountUser(me);
}
let cleanup = null;
let generation = 0;          // renders started; a render that a newer one overtook cleans up after itself

function renderNav(active) {
  const nav = clear(document.getElementById('nav'));
  for (const area of AREAS) {
    nav.append(h('a', { href: `#/${area.id}`, class: area.id === active ? 'active' : '',
      'aria-current': area.id === active ? 'page' : false }, area.title));
  }
}

async function render(route) {
  const mine = ++generation;
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

// Theme: the system's (prefers-color-scheme) until the user picks one with the toggle; the pick is kept in
// localStorage. CSS variables in app.css do the rest; charts hear 'odeo:theme' and redraw their colours.
const THEME_KEY = 'odeo.theme';
const systemDark = window.matchMedia('(prefers-color-scheme: dark)');
function applyTheme() {
  const theme = localStorage.getItem(THEME_KEY) || (systemDark.matches ? 'dark' : 'light');
  document.documentElement.dataset.theme = theme;
  const toggle = document.getElementById('theme-toggle');
  if (toggle) {
    toggle.textContent = theme === 'dark' ? 'Light theme' : 'Dark theme';
    toggle.setAttribute('aria-pressed', theme === 'dark' ? 'true' : 'false');
  }
  document.dispatchEvent(new CustomEvent('odeo:theme', { detail: theme }));
}
applyTheme();
systemDark.addEventListener('change', applyTheme);
document.querySelector('.topbar').append(h('button.theme-toggle#theme-toggle', { type: 'button', title: 'Switch between light and dark',
  onclick: () => { localStorage.setItem(THEME_KEY, document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark'); applyTheme(); } }));
applyTheme();

document.addEventListener('odeo:unauthorized', () => {
  const status = document.getElementById('status');
  status.textContent = 'Access token needed: open the studio with ?token=<token>';
});
// a banner while the data root cannot be written (disk full, read-only): /health says so
async function checkHealth() {
  let storage = null;
  try { storage = (await api('health')).storage; } catch (_) { /* the studio is unreachable: views say so */ }
  let banner = document.getElementById('health-banner');
  if (!storage) { if (banner) banner.remove(); return; }
  if (!banner) {
    banner = h('div.error', { id: 'health-banner', role: 'alert' });
    document.getElementById('view').before(banner);
  }
  banner.textContent = `The data root cannot be written (${storage.errno}): ${storage.message}. `
    + 'Jobs and edits are held until it can.';
}
checkHealth();
setInterval(checkHealth, 15000);
startNotifier();
startRouter(render, { defaultArea: AREAS[0].id });
