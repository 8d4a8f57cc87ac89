// #/data/<name>: one dataset. Header (counts, "train on this dataset"), then tabs: Clips (upload, grid,
// clip detail), Captions (bulk edit, auto-captioning), Buckets (what trains where, dataset.toml), Import.
import { h, formatBytes, formatDuration } from '../ui.js';
import { setQuery } from '../app.js';
import { dsApi, enc, tabBar } from './common.js';
import clipsTab from './clips.js';
import captionsTab from './captions.js';
import bucketsTab from './buckets.js';
import importTab from './import.js';

const TABS = [
  { id: 'clips', label: 'Clips', render: clipsTab },
  { id: 'captions', label: 'Captions', render: captionsTab },
  { id: 'buckets', label: 'Buckets', render: bucketsTab },
  { id: 'import', label: 'Import', render: importTab },
];

export default async function datasetPage(container, name, route) {
  const ds = await dsApi(name, '', { query: { details: 'true' } });
  if (!container.isConnected) return null;           // a newer render took over
  const stats = h('span.muted.data-stats');
  const showStats = (d) => {
    stats.textContent = `${d.videos} video(s), ${d.images} image(s) · ${d.duration_s ? formatDuration(d.duration_s) : 'no video'} · ${formatBytes(d.size_bytes)}`;
  };
  showStats(ds);
  const refreshStats = async () => { try { showStats(await dsApi(name, '', { query: { details: 'true' } })); } catch (_) { /* shown elsewhere */ } };
  let active = TABS.find((t) => t.id === route.query.get('tab')) ? route.query.get('tab') : 'clips';
  const body = h('div.data-tab');
  let cleanup = null;
  const show = async (id) => {
    active = id;
    setQuery({ tab: id === 'clips' ? null : id, file: id === 'clips' ? route.query.get('file') : null });
    bar.querySelectorAll('button').forEach((b) => {
      b.classList.toggle('active', b.dataset.tab === id);
      b.setAttribute('aria-selected', b.dataset.tab === id ? 'true' : 'false');
    });
    if (cleanup) cleanup();
    body.replaceChildren();
    const tab = TABS.find((t) => t.id === id);
    const result = await tab.render(body, ds.name, route, { refreshStats });
    cleanup = typeof result === 'function' ? result : null;
  };
  const bar = tabBar(TABS, active, show);
  container.append(
    h('div.row.data-head',
      h('h1', h('a', { href: '#/data' }, 'Datasets'), ' / ', ds.name), stats, h('span.grow'),
      h('a.button.primary', { href: `#/training?new=1&dataset=${enc(ds.name)}`, title: 'A new training task on this dataset (its dataset.toml is the draft)' }, 'Train on this dataset')),
    bar, body);
  await show(active);
  return () => { if (cleanup) cleanup(); };
}
