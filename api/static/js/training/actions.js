// Task actions the list and the task page share: create, import, copy, rename, delete, start (with its GPU dialog).
// Each asks what it needs, shows errors as toasts, and resolves to the result or null when nothing happened.

import { api } from '../api.js';
import { clear, confirmDialog, h, promptDialog, showError, toast } from '../ui.js';

const taskPath = (id, rest = '') => `tasks/${encodeURIComponent(id)}${rest}`;

async function attempt(fn, where) {
  try {
    return await fn();
  } catch (e) {
    showError(e, where);
    return null;
  }
}

export function createTask(body = {}) {
  return attempt(() => api('tasks', { method: 'POST', body }), 'New task');
}

export async function copyTask(task) {
  const name = await promptDialog(`Copy "${task.name}" (its configuration and GPU choice, no runs). Name of the copy:`,
    { value: '', confirm: 'Copy', label: 'Name of the copy (empty: automatic)' });
  if (name === null) return null;
  const copy = await attempt(() => api(taskPath(task.id, '/copy'), { method: 'POST', body: name.trim() ? { name: name.trim() } : {} }), 'Copy');
  if (copy) toast(`Copied as "${copy.name}".`, 'ok');
  return copy;
}

export async function renameTask(task) {
  const name = await promptDialog('New name:', { value: task.name, confirm: 'Rename', label: 'Task name' });
  if (name === null || name.trim() === task.name) return null;
  return attempt(() => api(taskPath(task.id), { method: 'PATCH', body: { name: name.trim() } }), 'Rename');
}

export async function deleteTask(task) {
  const running = ['queued', 'running', 'stopping'].includes(task.state);
  const ok = await confirmDialog(`Delete "${task.name}" with all its runs, LoRAs and checkpoints?`
    + (running ? ' Its active run is stopped first.' : ''), { confirm: 'Delete', danger: true });
  if (!ok) return null;
  const out = await attempt(() => api(taskPath(task.id), { method: 'DELETE', query: { confirm: 'true' } }), 'Delete');
  if (out) toast(out.deleted ? `Deleted ${task.name}.` : `Stopping ${task.name}; it is deleted once its run has stopped.`, 'ok');
  return out;
}

// Ask on how many (or which) GPUs to run; resolves to {gpus} or {gpu_ids}, or null when cancelled.
export async function askDevices(resources) {
  let inv = null;
  try { inv = await api('gpus'); } catch (_) { /* the dialog works without the inventory */ }
  const cpu = inv && inv.mode === 'cpu';
  const unit = cpu ? 'CPU slot' : 'GPU';
  const devices = inv ? inv.devices : [];
  const byIds = Boolean(resources.gpu_ids && resources.gpu_ids.length);
  return new Promise((resolve) => {
    let answer = null;
    const count = h('input', { type: 'number', min: 1, max: Math.max(1, devices.length || 64), step: 1, value: resources.gpus || 1,
      'aria-label': `Number of ${unit}s` });
    const anyRadio = h('input', { type: 'radio', name: 'how', value: 'count', checked: !byIds });
    const idsRadio = h('input', { type: 'radio', name: 'how', value: 'ids', checked: byIds, disabled: !devices.length });
    const boxes = devices.map((d) => h('label.device-choice', { title: d.name },
      h('input', { type: 'checkbox', value: d.index, checked: byIds && resources.gpu_ids.includes(d.index),
        onchange: () => { idsRadio.checked = true; } }),
      ` ${d.index}`, h('span.muted', d.held_by ? ` (used by ${d.held_by.task_name || d.held_by.task_id})`
        : d.busy_outside ? ' (busy outside the studio)' : ' (free)')));
    const error = h('p.error', { role: 'alert' });
    const free = devices.filter((d) => d.free).length;
    const form = h('form', { method: 'dialog' },
      h('h2', 'Start training'),
      inv ? h('p.muted', cpu ? `No GPU here: the run uses CPU slots (${devices.length}), ${free} free now.`
        : `${free} of ${devices.length} GPUs free now. A run that cannot start yet waits in the queue.`) : null,
      h('label.inline', anyRadio, ` Any free ${unit}s: `, count),
      devices.length ? h('div', h('label.inline', idsRadio, ` These ${unit}s:`), h('div.device-choices', boxes)) : null,
      error,
      h('div.actions',
        h('button', { type: 'button', onclick: () => dialog.close() }, 'Cancel'),
        h('button.primary', { type: 'submit' }, 'Start')));
    count.addEventListener('input', () => { anyRadio.checked = true; });
    form.addEventListener('submit', (e) => {
      if (idsRadio.checked) {
        const ids = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => Number(i.value));
        if (!ids.length) { e.preventDefault(); error.textContent = `Tick at least one ${unit}.`; return; }
        answer = { gpu_ids: ids };
      } else {
        const n = Number(count.value);
        if (!Number.isInteger(n) || n < 1) { e.preventDefault(); error.textContent = 'Enter a whole number, 1 or more.'; return; }
        answer = { gpus: n };
      }
    });
    const dialog = h('dialog.confirm.start-dialog', {}, form);
    dialog.addEventListener('close', () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    clear(error);
  });
}

// Import a diffusion-pipe config (its main TOML and, optionally, its dataset TOML) as a new task;
// resolves to the task, or null when cancelled or refused (the dialog then says why).
export function importTask() {
  return new Promise((resolve) => {
    let made = null;
    const main = h('input#import-main', { type: 'file', accept: '.toml,text/plain', required: true });
    const dataset = h('input#import-dataset', { type: 'file', accept: '.toml,text/plain' });
    const name = h('input#import-name', { type: 'text', placeholder: 'automatic', autocomplete: 'off' });
    const error = h('p.error', { role: 'alert' });
    const submit = h('button.primary', { type: 'submit' }, 'Import');
    const form = h('form', { method: 'dialog' },
      h('h2', 'Import a training config'),
      h('p.muted', "A diffusion-pipe config: the main TOML and, if you have it, the dataset TOML it names. "
        + 'output_dir and dataset are left out: the studio sets them when a run starts.'),
      h('label.field', h('span', 'Main config (TOML)'), main),
      h('label.field', h('span', 'Dataset config (TOML, optional)'), dataset),
      h('label.field', h('span', 'Task name'), name),
      error,
      h('div.actions', h('button', { type: 'button', onclick: () => dialog.close() }, 'Cancel'), submit));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!main.files.length) { error.textContent = 'Choose the main config file.'; return; }
      submit.disabled = true;
      try {
        const body = { main: await main.files[0].text() };
        if (dataset.files.length) body.dataset = await dataset.files[0].text();
        if (name.value.trim()) body.name = name.value.trim();
        made = await api('tasks/import', { method: 'POST', body });
        toast(`Imported as "${made.name}".`, 'ok');
        dialog.close();
      } catch (err) {
        error.textContent = err.message;
        submit.disabled = false;
      }
    });
    const dialog = h('dialog.confirm.import-dialog', {}, form);
    dialog.addEventListener('close', () => { dialog.remove(); resolve(made); });
    document.body.append(dialog);
    dialog.showModal();
  });
}
