// #/data: every dataset folder with its file counts, total duration and size; create, rename, delete.
import { api } from '../api.js';
import { h, clear, confirmDialog, promptDialog, showError, toast, formatBytes, formatDuration } from '../ui.js';
import { enc } from './common.js';

export default async function datasetList(container) {
  const tbody = h('tbody');
  const nameInput = h('input', { type: 'text', placeholder: 'new dataset name', 'aria-label': 'New dataset name' });
  const create = async (ev) => {
    ev.preventDefault();
    try {
      const ds = await api('datasets', { method: 'POST', body: { name: nameInput.value.trim() } });
      location.hash = `#/data/${enc(ds.name)}`;
    } catch (e) { showError(e, 'New dataset'); }
  };
  container.append(
    h('div.row.data-head', h('h1.grow', 'Datasets'),
      h('form.row', { onsubmit: create }, nameInput, h('button.primary', { type: 'submit' }, 'New dataset'))),
    h('p.muted', 'Folders under <data>/datasets. Open one to upload clips, caption them and check their buckets.'),
    h('div.card', h('table.data-list', h('thead', h('tr', ['Name', 'Videos', 'Images', 'Duration', 'Size', 'Settings', ''].map((t) => h('th', t)))), tbody)));

  async function load() {
    const { datasets } = await api('datasets', { query: { details: 'true' } });
    if (!container.isConnected) return;                // a newer render took over
    clear(tbody);
    if (!datasets.length) tbody.append(h('tr', h('td', { colSpan: 7, class: 'muted' }, 'No datasets yet: create one above.')));
    for (const ds of datasets) tbody.append(row(ds));
  }

  function row(ds) {
    const rename = async () => {
      const answer = await promptDialog(`Rename dataset “${ds.name}” to:`, { value: ds.name, confirm: 'Rename' });
      const name = answer === null ? null : answer.trim();
      if (!name || name === ds.name) return;
      try {
        const r = await api(`datasets/${enc(ds.name)}`, { method: 'PATCH', body: { name } });
        const moved = (r.retargeted || []).length;
        toast(`Renamed to ${name}` + (moved ? `; ${moved} task draft${moved > 1 ? 's' : ''} now use${moved > 1 ? '' : 's'} it` : ''), 'ok');
        load();
      } catch (e) { showError(e, 'Rename'); }
    };
    const remove = async () => {
      const sure = await confirmDialog(`Delete dataset “${ds.name}” and its ${ds.files} file(s)? This cannot be undone.`, { confirm: 'Delete', danger: true });
      if (!sure) return;
      try { await api(`datasets/${enc(ds.name)}`, { method: 'DELETE', query: { confirm: 'true' } }); toast(`Deleted ${ds.name}`, 'ok'); load(); } catch (e) { showError(e, 'Delete'); }
    };
    return h('tr', { dataset: { dataset: ds.name } },
      h('td', h('a', { href: `#/data/${enc(ds.name)}` }, ds.name)),
      h('td', String(ds.videos)), h('td', String(ds.images)),
      h('td', ds.duration_s ? formatDuration(ds.duration_s) : '–'),
      h('td', formatBytes(ds.size_bytes)),
      h('td', ds.has_config ? h('span.badge', { title: 'this folder has its own dataset.toml' }, 'dataset.toml') : h('span.muted', 'defaults')),
      h('td.actions', h('button', { type: 'button', onclick: rename }, 'Rename'), ' ',
        h('button', { type: 'button', onclick: remove }, 'Delete')));
  }

  await load();
}
