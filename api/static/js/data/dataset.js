// #/data/<name>: one dataset. Header (counts, "train on this dataset"), then tabs: Clips (upload, grid,
// clip detail), Captions (bulk edit, auto-captioning), Buckets (what trains where, dataset.toml), Import.
import { h, formatBytes, formatDuration, tabView } from '../ui.js';
import { setQuery } from '../router.js';
import { dsApi, enc } from './common.js';
import clipsTab from './clips.js';
import captionsTab from './captions.js';
import bucketsTab from './buckets.js';
import importTab from './import.js';

const TABS = [
  { id: 'clips', title: 'Clips', render: clipsTab },
  { id: 'captions', title: 'Captions', render: captionsTab },
  { id: 'buckets', title: 'Buckets', render: bucketsTab },
  { id: 'import', title: 'Import', render: importTab },
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
  const tabs = tabView(TABS.map((t) => ({ ...t, render: (panel) => t.render(panel, ds.name, route, { refreshStats }) })), {
    label: 'Dataset views', panelClass: 'data-tab',
    onShow: (id) => setQuery({ tab: id === 'clips' ? null : id, file: id === 'clips' ? route.query.get('file') : null }),
  });
  container.append(
    h('div.row.data-head',
      h('h1', h('a', { href: '#/data' }, 'Datasets'), ' / ', ds.name), stats, h('span.grow'),
      h('a.button.primary', { href: `#/training?new=1&dataset=${enc(ds.name)}`, title: 'A new training task on this dataset (its dataset.toml is the draft)' }, 'Train on this dataset')),
    tabs.bar, tabs.body);
  await tabs.show(route.query.get('tab'));       // an unknown or missing tab shows the first
  return tabs.close;
}
