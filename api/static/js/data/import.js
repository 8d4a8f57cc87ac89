// Import tab: copy or hard-link media (and their captions) from a folder on the server, or the files a
// DiffSynth-style metadata table (video/image + prompt columns) names.
import { api } from '../api.js';
import { h, append, clear, fieldRow, showError, toast } from '../ui.js';
import { dsApi } from './common.js';

export default async function importTab(container, dataset, route, { refreshStats }) {
  const settings = await api('settings');
  const path = h('input', { type: 'text', placeholder: '/srv/footage/beach or /srv/footage/metadata.csv', 'aria-label': 'Folder or metadata file' });
  const mode = h('select', { 'aria-label': 'Copy or link' }, h('option', { value: 'copy' }, 'copy'), h('option', { value: 'link' }, 'hard link (no extra space)'));
  const go = h('button.primary', { type: 'submit' }, 'Import');
  const result = h('div.import-result');
  const run = async (ev) => {
    ev.preventDefault();
    go.disabled = true;
    try {
      const res = await dsApi(dataset, '/import', { method: 'POST', body: { path: path.value.trim(), mode: mode.value } });
      toast(`${res.imported.length} file(s) imported`, 'ok');
      append(clear(result), [
        h('p', `${res.imported.length} imported, ${res.skipped.length} skipped from ${res.source}.`),
        res.skipped.length ? h('ul.skipped', res.skipped.map((s) => h('li', `${s.source}: ${s.reason}`))) : null,
        res.notes.length ? h('ul.muted', res.notes.map((n) => h('li', n))) : null]);
      refreshStats();
    } catch (e) { showError(e, 'Import'); } finally { go.disabled = false; }
  };
  container.append(h('form.card.import', { onsubmit: run }, h('h2', 'Import from the server'),
    h('p.muted', `Allowed folders (setting import_roots): ${settings.import_roots.join(', ')}. A folder brings its media with their captions (sidecar .txt, captions.json or metadata table); a metadata .csv/.json brings the files it names with their prompts as captions.`),
    h('div.row', fieldRow('Folder or metadata file', path), fieldRow('How', mode), go), result));
}
