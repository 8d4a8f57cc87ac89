// Settings area, #/settings: the settings a user may change from the studio (ComfyUI, model and import
// roots, the GPU busy threshold, retries, heartbeat), checked by the studio before it writes them to the
// settings file; a field an ODEO_* variable sets is shown but not editable. The rest is listed read-only.

import { api } from './api.js';
import { fieldRow, fill, h, showError, toast } from './ui.js';

const LABELS = {
  comfyui_mode: ['ComfyUI', 'external: the server at the URL below; managed: each test job starts its own from the checkout'],
  comfyui_url: ['ComfyUI URL', 'e.g. http://127.0.0.1:8188'],
  model_roots: ['Model roots', 'extra folders scanned for checkpoints, one per line (<data>/models always is)'],
  import_roots: ['Import roots', 'server folders imports may read, one per line (<data>/imports always)'],
  gpu_memory_threshold_gib: ['GPU busy above (GiB)', 'a GPU with more memory in use by other programs counts as busy'],
  retry_limit: ['Retries', 'automatic resumes after a crash, hang or interruption'],
  heartbeat_timeout_s: ['Heartbeat timeout (s)', 'a job silent this long is hung: killed and resumed'],
};

function input(name, value, limits) {
  if (name === 'comfyui_mode') {
    return h('select', { name }, ['external', 'managed'].map((m) => h('option', { value: m, selected: m === value }, m)));
  }
  if (name.endsWith('_roots')) return h('textarea', { name, rows: 2 }, (value || []).join('\n'));
  if (name === 'comfyui_url') return h('input', { name, type: 'url', value, required: true });
  const [min, max] = limits[name] || [];
  return h('input', { name, type: 'number', value, min, max, step: name === 'retry_limit' ? 1 : 'any', required: true });
}

function valueOf(el) {
  if (el.name.endsWith('_roots')) return el.value.split('\n').map((s) => s.trim()).filter(Boolean);
  if (el.type === 'number') return Number(el.value);
  return el.value;
}

export default {
  id: 'settings',
  title: 'Settings',
  async render(container) {
    const view = await api('settings/editable');
    const els = Object.fromEntries(Object.keys(view.editable).map((k) => [k, input(k, view.editable[k], view.limits)]));
    for (const [k, variable] of Object.entries(view.locked)) {
      els[k].disabled = true;
      els[k].title = `set by ${variable}`;
    }
    const row = (k) => fieldRow(LABELS[k][0], els[k], view.locked[k] ? `set by the environment variable ${view.locked[k]}` : LABELS[k][1]);
    const comfyResult = h('span.comfy-test', { role: 'status' });
    const testBtn = h('button', { type: 'button', onclick: async () => {
      comfyResult.textContent = 'trying…';
      comfyResult.className = 'comfy-test muted';
      try {
        const s = await api('settings/comfyui/test', { method: 'POST', body: { comfyui_url: els.comfyui_url.value, comfyui_mode: els.comfyui_mode.value } });
        const ok = s.mode === 'managed' ? s.checkout : s.reachable;
        comfyResult.textContent = ok ? (s.mode === 'managed' ? 'checkout found: jobs start ComfyUI themselves' : `reachable: ComfyUI ${s.version || ''}`)
          : `not usable: ${s.error}`;
        comfyResult.className = `comfy-test ${ok ? 'ok-text' : 'error'}`;
      } catch (e) { comfyResult.textContent = e.message; comfyResult.className = 'comfy-test error'; }
    } }, 'Test connection');
    const error = h('p.error', { role: 'alert' });
    const save = h('button.primary', { type: 'submit' }, 'Save');
    const form = h('form.settings-form', { onsubmit: async (e) => {
      e.preventDefault();
      const body = {};
      for (const [k, el] of Object.entries(els)) {
        if (el.disabled) continue;
        const v = valueOf(el);
        if (JSON.stringify(v) !== JSON.stringify(view.editable[k])) body[k] = v;
      }
      if (!Object.keys(body).length) { toast('Nothing changed', 'info'); return; }
      save.disabled = true;
      form.querySelectorAll('.field.invalid').forEach((f) => f.classList.remove('invalid'));
      try {
        const next = await api('settings', { method: 'PATCH', body });
        Object.assign(view.editable, next.editable);
        error.textContent = '';
        toast(`Saved to ${next.file}`, 'ok');
      } catch (err) {
        error.textContent = err.message;
        const bad = err.field && els[err.field];
        if (bad) { bad.closest('.field').classList.add('invalid'); bad.focus(); }
      } finally { save.disabled = false; }
    } },
    h('section.card', h('h2', 'ComfyUI'), row('comfyui_mode'), row('comfyui_url'), h('div.row', testBtn, comfyResult)),
    h('section.card', h('h2', 'Folders'), row('model_roots'), row('import_roots')),
    h('section.card', h('h2', 'Jobs and GPUs'), h('div.settings-grid', row('gpu_memory_threshold_gib'), row('retry_limit'), row('heartbeat_timeout_s'))),
    h('div.row', save, h('span.muted.small', `Saved to ${view.file}, checked first; in force at once.`)), error);
    const rest = h('section.card.settings-rest', h('h2', 'Other settings in force'),
      h('p.muted.small', 'Set in the settings file, ODEO_* environment variables or flags (see README).'),
      h('table.compact', h('tbody', Object.entries(view.settings).filter(([k]) => !(k in view.editable))
        .map(([k, v]) => h('tr', h('th', k), h('td', Array.isArray(v) ? v.join(', ') : String(v)))))));
    fill(container, h('div.area-header', h('h1', 'Settings')), form, rest);
    return null;
  },
};
