// Clips tab: upload zone, search, the grid of clips (thumbnail, duration, caption snippet, bucket or
// drop badge) and, for the selected clip, the detail panel (js/data/clip.js).
import { h, clear, debounce, showError } from '../ui.js';
import { setQuery } from '../router.js';
import { dsApi, formatSeconds, mediaUrl } from './common.js';
import { uploadZone } from './upload.js';
import { clipDetail } from './clip.js';

function statusBadge(f) {
  if (f.status === 'dropped') return h('span.badge.dropped', { title: f.reason || '' }, 'dropped');
  if (f.status === 'used') return h('span.badge.bucket', { title: `trains in ${f.buckets.join(', ')}` }, f.buckets.join(' · '));
  return h('span.badge', 'not checked');
}

function originBadge(f) {
  const labels = { machine: ['auto', `written by ${f.caption_model || 'a model'}`], table: ['table', `from ${f.caption_source}`] };
  const [text, title] = labels[f.caption_origin] || [];
  return text ? h(`span.badge.origin.${f.caption_origin}`, { title }, text) : null;
}

export default async function clipsTab(container, dataset, route, { refreshStats }) {
  let selected = route.query.get('file');
  let files = [];
  const search = h('input', { type: 'search', placeholder: 'Search captions and names', value: route.query.get('q') || '', 'aria-label': 'Search clips' });
  const summary = h('span.muted');
  const grid = h('div.clip-grid', { role: 'list' });
  const detail = h('aside.clip-detail');
  const layout = h('div.clips-layout', grid, detail);

  async function load() {
    const q = search.value.trim();
    const res = await dsApi(dataset, '/files', { query: { q: q || undefined } });
    files = res.files;
    const used = files.filter((f) => f.status === 'used').length;
    const dropped = files.filter((f) => f.status === 'dropped').length;
    summary.textContent = `${files.length} file(s)${q ? ` matching “${q}”` : ''} · ${used} train · ${dropped} dropped` +
      (res.steps_per_epoch !== null && !q ? ` · ${res.steps_per_epoch} step(s) per epoch` : '') +
      (res.issues.length ? ` · dataset.toml has problems: ${res.issues[0].key}: ${res.issues[0].message}` : '');
    renderGrid();
  }

  function card(f) {
    const caption = f.caption_error ? h('p.caption.error', f.caption_error)
      : h('p.caption', { class: f.caption ? '' : 'muted' }, f.caption || 'no caption');
    return h('div.clip-card', {
      role: 'listitem', tabIndex: 0, class: f.name === selected ? 'selected' : '', dataset: { file: f.name },
      onclick: () => select(f.name),
      onkeydown: (e) => { if (e.key === 'Enter') select(f.name); },
    },
    h('div.thumb', f.media ? h('img', { src: mediaUrl('thumbnail', dataset, f.name, { v: Math.round(f.mtime) }), alt: f.name, loading: 'lazy' })
      : h('span.unreadable', 'cannot be read'),
      f.kind === 'video' && f.media ? h('span.duration', formatSeconds(f.media.duration)) : null),
    h('div.clip-name', { title: f.name }, f.name),
    h('div.row.badges', statusBadge(f), originBadge(f)),
    f.status === 'dropped' ? h('div.reason', f.reason) : null,
    caption);
  }

  function renderGrid() {
    clear(grid);
    if (!files.length) grid.append(h('p.muted', search.value ? 'No clip matches.' : 'No clips yet: drop some above.'));
    for (const f of files) grid.append(card(f));
    layout.classList.toggle('with-detail', Boolean(selected));
  }

  let selecting = 0;                   // select() calls made; only the newest one shows its panel
  async function select(name) {
    const mine = ++selecting;
    selected = name;
    setQuery({ file: name });
    grid.querySelectorAll('.clip-card').forEach((c) => c.classList.toggle('selected', c.dataset.file === name));
    layout.classList.toggle('with-detail', Boolean(name));
    clear(detail);
    if (!name) return;
    try {
      const panel = await clipDetail(dataset, name, {
        close: () => select(null),
        changed: async (newFile) => { await load(); refreshStats(); if (newFile) select(newFile); },
        removed: async () => { await select(null); await load(); refreshStats(); },
      });
      if (mine === selecting) detail.append(panel);
    } catch (e) {
      if (mine !== selecting) return;
      showError(e, name);
      detail.append(h('p.error', e.message));
    }
  }

  search.addEventListener('input', debounce(() => { setQuery({ q: search.value.trim() }); load().catch((e) => showError(e)); }, 300));
  container.append(
    uploadZone(dataset, { onUploaded: () => { load(); refreshStats(); } }),
    h('div.row.clip-tools', search, summary),
    layout);
  await load();
  if (selected && files.some((f) => f.name === selected)) await select(selected);
  else if (selected) select(null);
}
