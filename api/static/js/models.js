// Models area, #/models: the models under the model roots (variant, layout, size, the hub commit they came
// from, what uses them), a form that queues a download from the hub (or mirror), the downloads with their
// progress, and deleting a model (refused by the studio while a queued or running job uses it).
// Refreshed every 2 s while shown.

import { api } from './api.js';
import { badge, confirmDialog, fieldRow, fill, formatBytes, formatDuration, formatShortTime, h, scope as makeScope,
  showError, toast } from './ui.js';

const LAYOUT_NAMES = { official: 'official Wan-AI folder', diffusers: 'Diffusers folder', comfy: 'ComfyUI files + small official folder', transformers: 'transformers folder' };

function revision(model) {
  const s = model.source && model.source.sources;
  if (!s || !s.length) return h('span.muted', 'not downloaded here');
  return s.map((x) => h('div.small', { title: `${x.repo}@${x.commit}` }, `${x.repo} `, h('code', (x.commit || '').slice(0, 10))));
}

function users(model) {
  const jobs = model.used_by.jobs.map((j) => h('div.small', `${j.kind} job `, h('code', j.job_id), ` (${j.state})`));
  const tasks = model.used_by.tasks.map((t) => h('div.small', h('a', { href: `#/training/${encodeURIComponent(t.task_id)}` }, t.name || t.task_id)));
  return jobs.length || tasks.length ? [...jobs, ...tasks] : h('span.muted', '–');
}

function modelRow(m, remove) {
  const variant = m.variant ? m.variant.id : h('span.error', m.error || 'not recognised');
  const layout = m.source ? m.source.layout : (m.layout === 'wan' ? 'official' : m.layout);
  return h('tr', { dataset: { name: m.name } },
    h('td', h('strong', m.name), h('div.muted.small', m.root)), h('td', variant), h('td', layout),
    h('td', formatBytes(m.size_bytes)), h('td', revision(m)), h('td', users(m)),
    h('td.actions', h('button.danger', { type: 'button', onclick: () => remove(m) }, 'Delete')));
}

function downloadRow(d, stop) {
  const p = d.progress;
  const frac = p && p.bytes_total ? p.bytes_done / p.bytes_total : 0;
  const live = ['queued', 'running', 'stopping'].includes(d.state);
  const line = p ? `${formatBytes(p.bytes_done)} of ${formatBytes(p.bytes_total)} · ${formatBytes(p.bytes_per_s)}/s · ETA ${formatDuration(p.eta_s)}`
    : `${formatBytes(d.download.total_bytes)} to fetch`;
  return h('tr', { dataset: { job: d.id } },
    h('td', h('strong', d.download.name), h('div.muted.small', d.download.sources.map((s) => `${s.repo}@${(s.commit || '').slice(0, 10)}`).join(' + '))),
    h('td', badge(d.state)),
    h('td.download-progress', h('div.progressbar', { role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(frac * 100) },
      h('div', { style: { width: `${Math.round(frac * 100)}%` } })),
    h('div.small', line), p && p.file && live ? h('div.muted.small', `${p.files_done}/${p.files_total} · ${p.file}`) : null,
    d.message || (d.status && d.status.message) ? h('div.muted.small', d.message || d.status.message) : null),
    h('td.small', formatShortTime(d.created_at)),
    h('td.actions', live ? h('button', { type: 'button', onclick: () => stop(d) }, d.state === 'queued' ? 'Cancel' : 'Stop') : null));
}

function downloadForm(choices, onQueued) {
  const variant = h('select', { name: 'variant' }, choices.map((c) => h('option', { value: c.id }, c.kind === 'captioner' ? `${c.id} (captioner)` : c.id)));
  const layout = h('select', { name: 'layout' });
  const name = h('input', { name: 'name', placeholder: 'default: the repository name' });
  const rev = h('input', { name: 'revision', placeholder: 'main' });
  const repos = h('div.hint');
  const sync = () => {
    const c = choices.find((x) => x.id === variant.value);
    fill(layout, Object.keys(c.layouts).map((l) => h('option', { value: l }, LAYOUT_NAMES[l] || l)));
    layout.disabled = c.kind === 'captioner';
    showRepos();
  };
  const showRepos = () => {
    const c = choices.find((x) => x.id === variant.value);
    repos.textContent = `From ${(c.layouts[layout.value] || []).join(' + ')}`;
  };
  variant.addEventListener('change', sync);
  layout.addEventListener('change', showRepos);
  const submit = h('button.primary', { type: 'submit' }, 'Download');
  const form = h('form.card.model-download', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      try {
        const body = { variant: variant.value, layout: layout.value };
        if (name.value.trim()) body.name = name.value.trim();
        if (rev.value.trim()) body.revision = rev.value.trim();
        const d = await api('models/downloads', { method: 'POST', body });
        toast(`Download of ${d.download.name} queued`);
        onQueued();
      } catch (e) {
        showError(e, 'Download');
      } finally {
        submit.disabled = false;
      }
    },
  }, h('h2', 'Download from the hub'), h('div.row.wrap', fieldRow('Model', variant), fieldRow('Layout', layout),
    fieldRow('Folder name', name), fieldRow('Revision', rev)), repos, h('div.row', submit));
  sync();
  return form;
}

export default {
  id: 'models',
  title: 'Models',
  async render(container) {
    const scope = makeScope();
    const hub = h('p.muted.models-hub');
    const models = h('tbody');
    const downloads = h('tbody');
    const taehvs = h('tbody');
    const taehvCard = h('section.card.taehv-card', h('h2', 'TAEHV (live previews)'),
      h('p.muted.small', 'Tiny autoencoders found under the model roots; a task picks one in Inference > Prompts & previews.'),
      h('table.compact.taehv-table', h('thead', h('tr', ['File', 'Latent channels', 'For', 'Size'].map((x) => h('th', x)))), taehvs));
    const dlCard = h('section.card', h('h2', 'Downloads'), h('table.compact.downloads-table',
      h('thead', h('tr', ['Model', 'State', 'Progress', 'Queued', ''].map((x) => h('th', x)))), downloads));
    let refresh = () => {};
    const remove = async (m) => {
      const ok = await confirmDialog(`Delete ${m.name} (${formatBytes(m.size_bytes)}) from ${m.root}? Its files are removed.`, { confirm: 'Delete', danger: true });
      if (!ok) return;
      try {
        await api(`models/${m.name.split('/').map(encodeURIComponent).join('/')}`, { method: 'DELETE', query: { confirm: 'true', root: m.root } });
        toast(`${m.name} deleted`);
        refresh();
      } catch (e) { showError(e, 'Delete'); }
    };
    const stop = async (d) => {
      try {
        await api(`jobs/${encodeURIComponent(d.id)}/${d.state === 'queued' ? 'cancel' : 'stop'}`, { method: 'POST', body: {} });
        refresh();
      } catch (e) { showError(e, 'Download'); }
    };
    const first = await api('models', { signal: scope.signal });
    container.append(h('div.area-header', h('h1', 'Models'), h('span.grow'), hub),
      h('section.card', h('table.models-table', h('thead', h('tr', ['Name', 'Variant', 'Layout', 'Size', 'Hub revision', 'Used by', ''].map((x) => h('th', x)))), models)),
      taehvCard, downloadForm(first.choices, () => refresh()), dlCard);
    let sig = '';
    const draw = (list) => {
      hub.textContent = `Hub: ${list.hub.endpoint}${list.hub.token_set ? ' (token set)' : ''} · roots: ${list.roots.join(', ')}`;
      const s = JSON.stringify([list.models, list.downloads, list.taehv]);
      if (s === sig) return;
      sig = s;
      fill(models, list.models.length ? list.models.map((m) => modelRow(m, remove))
        : h('tr', h('td.muted', { colSpan: 7 }, 'No model yet: download one below, or copy one into a model root.')));
      taehvCard.hidden = !(list.taehv || []).length;
      fill(taehvs, (list.taehv || []).map((t) => h('tr', { dataset: { path: t.path } }, h('td', { title: t.path }, t.name),
        h('td.num', String(t.latent_channels)), h('td', t.vae === 'wan2.2' ? 'Wan2.2 TI2V-5B' : 'Wan2.1, Wan2.2 A14B'),
        h('td.num', formatBytes(t.size_bytes)))));
      dlCard.hidden = !list.downloads.length;
      fill(downloads, list.downloads.map((d) => downloadRow(d, stop)));
    };
    draw(first);
    refresh = async () => draw(await api('models', { signal: scope.signal }));
    scope.poll(refresh, 2000);
    return scope.close;
  },
};
