// The test-image gallery: folders under <data>/gallery; create, rename, delete, upload (checked by the
// studio), multi-select. With opts.variant each image shows the generation size proposed for that model.
// As a picker (opts.selected: Set of 'folder/name', opts.onChange) a click selects instead of opening.

import { api } from '../api.js';
import { h, clear, fill, toast, showError, confirmDialog, formatBytes } from '../ui.js';
import { imageUrl } from './common.js';

// A task's test images: thumbnails of the chosen ones and a button that opens the gallery below them as a
// picker (loaded the first time it opens). images: a Set of 'folder/name', changed in place; onChange(images)
// after every pick; emptyText shows while none is chosen.
export function imagePicker({ variant, images, emptyText, choose = 'Choose…', onChange }) {
  const chosen = h('div.inf-chosen');
  const picker = h('div.inf-picker', { hidden: true });
  const showChosen = () => fill(chosen, [...images].map((i) => h('img', { src: imageUrl(i), alt: i, title: i })),
    images.size ? null : h('span.muted', emptyText));
  const toggle = async () => {
    picker.hidden = !picker.hidden;
    if (!picker.hidden && !picker.firstChild) {
      await galleryView(picker, { variant, selected: images, onChange: () => { showChosen(); if (onChange) onChange(images); } });
    }
  };
  showChosen();
  return h('div', h('div.row', h('strong', 'Test images'), h('button', { type: 'button', onclick: toggle }, choose)), chosen, picker);
}

export async function galleryView(container, opts = {}) {
  const selected = opts.selected || new Set();
  const state = { folder: opts.folder || null };
  const folderList = h('ul.inf-folders');
  const images = h('div.inf-thumbs');
  const title = h('h2', 'Images');
  const count = h('span.muted');
  const upload = h('input', { type: 'file', multiple: true, accept: 'image/*', 'aria-label': 'Upload images',
    onchange: () => uploadFiles([...upload.files]) });
  const removeBtn = h('button.danger', { type: 'button', disabled: true, onclick: () => removeSelected() }, 'Delete selected');
  const newName = h('input', { placeholder: 'New folder name', 'aria-label': 'New folder name' });

  container.append(h('div.inf-gallery',
    h('aside.card',
      h('h2', 'Folders'),
      h('form.row', { onsubmit: (e) => { e.preventDefault(); createFolder(); } },
        newName, h('button', { type: 'submit' }, 'Create')),
      folderList),
    h('section.card',
      h('div.row', title, count, h('span.grow'), h('label.button.upload', 'Upload…', upload), removeBtn),
      h('div.inf-drop', {
        ondragover: (e) => { e.preventDefault(); },
        ondrop: (e) => { e.preventDefault(); uploadFiles([...e.dataTransfer.files]); },
      }, images))));

  function changed() {
    const inFolder = [...selected].filter((p) => p.startsWith(`${state.folder}/`)).length;
    count.textContent = selected.size ? `${selected.size} selected${inFolder !== selected.size ? ` (${inFolder} here)` : ''}` : '';
    removeBtn.disabled = !inFolder || Boolean(opts.onChange);
    if (opts.onChange) opts.onChange(selected);
  }

  async function loadFolders() {
    const { folders } = await api('gallery');
    if (!state.folder || !folders.some((f) => f.name === state.folder)) state.folder = folders.length ? folders[0].name : null;
    fill(folderList, folders.map((f) => h('li', { class: f.name === state.folder ? 'active' : '', dataset: { folder: f.name } },
      h('button.link', { type: 'button', onclick: () => { state.folder = f.name; refresh(); } }, `${f.name} (${f.images})`),
      h('button.small', { type: 'button', title: 'Rename', onclick: (e) => renameFolder(e.target.closest('li'), f.name) }, 'Rename'),
      h('button.small', { type: 'button', title: 'Delete', onclick: () => deleteFolder(f.name) }, '✕'))));
    if (!folders.length) folderList.append(h('li.muted', 'No folder yet: create one, then upload images.'));
  }

  async function loadImages() {
    clear(images);
    if (!state.folder) { title.textContent = 'Images'; upload.disabled = true; return; }
    upload.disabled = false;
    title.textContent = state.folder;
    const q = opts.variant ? { variant: opts.variant } : undefined;
    const data = await api(`gallery/${encodeURIComponent(state.folder)}`, { query: q });
    if (!data.images.length) images.append(h('p.muted', 'Drop images here or use Upload.'));
    for (const img of data.images) images.append(thumb(img));
    changed();
  }

  function thumb(img) {
    const box = h('figure.inf-thumb', { class: selected.has(img.path) ? 'selected' : '', dataset: { path: img.path },
      title: img.error || `${img.name} · ${img.width}×${img.height} · ${formatBytes(img.size)}` });
    const check = h('input', { type: 'checkbox', checked: selected.has(img.path), 'aria-label': `Select ${img.name}` });
    const toggle = () => {
      if (selected.has(img.path)) selected.delete(img.path); else selected.add(img.path);
      check.checked = selected.has(img.path);
      box.classList.toggle('selected', check.checked);
      changed();
    };
    check.addEventListener('click', (e) => { e.stopPropagation(); toggle(); });
    const proposed = img.proposed ? Object.entries(img.proposed).map(([a, [w, hh]]) => `${a}: ${w}×${hh}`).join(' · ') : '';
    box.append(h('img', { src: imageUrl(img.path), alt: img.name, loading: 'lazy', onclick: toggle }),
      h('figcaption', h('label.row', check, h('span.name', img.name)),
        h('span.muted', img.error ? img.error : `${img.width}×${img.height}`),
        proposed ? h('span.proposed', { title: 'Generation size proposed for the model' }, proposed) : null));
    return box;
  }

  async function refresh() {
    try { await loadFolders(); await loadImages(); } catch (e) { showError(e, 'Gallery'); }
  }

  async function createFolder() {
    const name = newName.value.trim();
    if (!name) return;
    try {
      await api('gallery', { method: 'POST', body: { name } });
      newName.value = '';
      state.folder = name;
      await refresh();
    } catch (e) { showError(e, 'New folder'); }
  }

  function renameFolder(li, name) {
    const input = h('input', { value: name, 'aria-label': 'Folder name' });
    const save = async () => {
      try {
        await api(`gallery/${encodeURIComponent(name)}`, { method: 'PATCH', body: { name: input.value.trim() } });
        for (const p of [...selected]) if (p.startsWith(`${name}/`)) { selected.delete(p); selected.add(`${input.value.trim()}/${p.slice(name.length + 1)}`); }
        if (state.folder === name) state.folder = input.value.trim();
        await refresh();
      } catch (e) { showError(e, 'Rename'); }
    };
    fill(li, h('form.row', { onsubmit: (e) => { e.preventDefault(); save(); } }, input,
      h('button', { type: 'submit' }, 'Save'), h('button', { type: 'button', onclick: refresh }, 'Cancel')));
    input.focus();
  }

  async function deleteFolder(name) {
    if (!await confirmDialog(`Delete the folder "${name}" and every image in it?`, { confirm: 'Delete', danger: true })) return;
    try {
      await api(`gallery/${encodeURIComponent(name)}`, { method: 'DELETE', query: { confirm: 'true' } });
      for (const p of [...selected]) if (p.startsWith(`${name}/`)) selected.delete(p);
      await refresh();
    } catch (e) { showError(e, 'Delete'); }
  }

  async function uploadFiles(files) {
    if (!files.length || !state.folder) return;
    const form = new FormData();
    for (const f of files) form.append('files', f, f.name);
    try {
      const r = await api(`gallery/${encodeURIComponent(state.folder)}/images`, { method: 'POST', body: form });
      toast(`${r.added.length} image(s) added`, 'ok');
      for (const bad of r.rejected) toast(`${bad.file}: ${bad.message}`, 'error', 8000);
    } catch (e) { showError(e, 'Upload'); }
    upload.value = '';
    await refresh();
  }

  async function removeSelected() {
    const here = [...selected].filter((p) => p.startsWith(`${state.folder}/`));
    if (!await confirmDialog(`Delete ${here.length} image(s) from "${state.folder}"?`, { confirm: 'Delete', danger: true })) return;
    for (const p of here) {
      try {
        const [f, n] = p.split('/');
        await api(`gallery/${encodeURIComponent(f)}/images/${encodeURIComponent(n)}`, { method: 'DELETE' });
        selected.delete(p);
      } catch (e) { showError(e, 'Delete'); }
    }
    await refresh();
  }

  await refresh();
  return null;
}
