// Upload drop zone: files stream to the studio in chunks (PUT /uploads/<id>?offset=), each with a
// progress bar. A dropped connection is retried from what the server has (GET /uploads/<id>); a reload
// finds the unfinished upload again by client_key (name|size|lastModified) and continues it.
import { api } from '../api.js';
import { h, formatBytes } from '../ui.js';
import { dsApi, sleep } from './common.js';

const RETRIES = 8;

export function uploadZone(dataset, { onUploaded }) {
  const input = h('input', { type: 'file', multiple: true, accept: 'video/*,image/*', hidden: true, 'aria-label': 'Choose files to upload' });
  const replace = h('input', { type: 'checkbox' });
  const rows = h('div.upload-rows');
  const waiting = h('div.muted.upload-waiting');
  const queue = [];
  let busy = false;

  const zone = h('div.drop-zone', { tabIndex: 0, role: 'button', 'aria-label': 'Upload files: drop them here or press to choose',
    onclick: () => input.click(),
    onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } },
    ondragover: (e) => { e.preventDefault(); zone.classList.add('over'); },
    ondragleave: () => zone.classList.remove('over'),
    ondrop: (e) => { e.preventDefault(); zone.classList.remove('over'); add([...e.dataTransfer.files]); } },
  h('strong', 'Drop videos and images here'), h('span.muted', ' or click to choose files'));
  input.addEventListener('change', () => { add([...input.files]); input.value = ''; });

  function add(files) {
    for (const file of files) {
      const row = uploadRow(file);
      rows.prepend(row.el);
      queue.push({ file, row });
    }
    pump();
  }

  async function pump() {
    if (busy) return;
    busy = true;
    while (queue.length) {
      const { file, row } = queue.shift();
      try {
        const up = await uploadFile(dataset, file, replace.checked, row);
        if (up) {
          row.done(up.file === file.name ? `added as ${up.file}` : `added as ${up.file} (the name was taken)`);
          if (onUploaded) onUploaded(up);
        }
      } catch (e) {
        row.fail(e.message || String(e));
      }
    }
    busy = false;
    showWaiting();
  }

  async function showWaiting() {
    try {
      const { uploads } = await dsApi(dataset, '/uploads');
      const open = uploads.filter((u) => u.state === 'uploading');
      waiting.replaceChildren(...(open.length ? [
        `${open.length} unfinished upload(s): drop the same file again to continue where it stopped. `,
        ...open.map((u) => h('span.upload-open', `${u.filename} (${formatBytes(u.received)} of ${formatBytes(u.size)}) `,
          h('button.link', { type: 'button', onclick: async () => { await api(`uploads/${u.id}`, { method: 'DELETE' }); showWaiting(); } }, 'discard'))),
      ] : []));
    } catch (_) { /* the list is a convenience */ }
  }
  showWaiting();

  return h('section.upload', zone, input,
    h('label.row.upload-options', replace, 'Replace files with the same name (otherwise a new file gets “ (1)”)'),
    waiting, rows);
}

function uploadRow(file) {
  const bar = h('progress', { max: file.size || 1, value: 0 });
  const status = h('span.muted', 'waiting');
  const cancel = h('button.link', { type: 'button' }, 'cancel');
  const el = h('div.upload-row', h('span.upload-name', file.name), bar, status, cancel);
  const row = {
    el, cancelled: false, upload: null,
    progress(received, rate) {
      bar.value = received;
      status.textContent = `${formatBytes(received)} of ${formatBytes(file.size)}${rate ? ` · ${formatBytes(rate)}/s` : ''}`;
    },
    note(text) { status.textContent = text; },
    done(text) { bar.value = bar.max; status.textContent = text; el.classList.add('ok'); cancel.remove(); },
    fail(text) { status.textContent = text; el.classList.add('failed'); cancel.remove(); },
  };
  cancel.addEventListener('click', async () => {
    row.cancelled = true;
    if (row.upload) { try { await api(`uploads/${row.upload.id}`, { method: 'DELETE' }); } catch (_) { /* gone already */ } }
    row.fail('cancelled');
  });
  return row;
}

async function uploadFile(dataset, file, replace, row) {
  const key = `${file.name}|${file.size}|${file.lastModified}`;
  let up = await dsApi(dataset, '/uploads', { method: 'POST', body: { filename: file.name, size: file.size, replace, client_key: key } });
  row.upload = up;
  if (up.received) row.note(`continuing at ${formatBytes(up.received)}`);
  let failures = 0;
  const started = performance.now(), from = up.received;
  while (up.state === 'uploading') {
    if (row.cancelled) return null;
    const start = up.received, end = Math.min(file.size, start + up.chunk_bytes);
    try {
      up = await api(`uploads/${up.id}`, { method: 'PUT', query: { offset: start }, body: file.slice(start, end),
        headers: { 'Content-Type': 'application/octet-stream' } });
      failures = 0;
    } catch (e) {
      if (row.cancelled) return null;
      if (e.status === 422 || e.status === 404 || e.status === 400 && e.field !== 'body') throw e;
      failures += 1;
      if (failures > RETRIES) throw e;
      row.note(`connection trouble (${e.message}); retrying…`);
      await sleep(Math.min(30000, 500 * 2 ** failures));
      try { up = await api(`uploads/${up.id}`); } catch (e2) { if (e2.status === 404) throw e2; }
      continue;
    }
    const secs = (performance.now() - started) / 1000;
    row.progress(up.received, secs > 0.5 ? (up.received - from) / secs : 0);
  }
  if (up.state === 'rejected') throw new Error(up.reason);
  return up;
}

