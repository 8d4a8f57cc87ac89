// The task list, #/training: every task with its state, progress, devices and latest loss; create,
// copy, rename, delete. Rows are updated in place on each poll, so focus and keyboard position stay.

import { api } from '../api.js';
import { navigate } from '../router.js';
import { badge, fill, formatDuration, formatNumber, formatShortTime, h, showError } from '../ui.js';
import { copyTask, createTask, deleteTask, importTask, renameTask } from './actions.js';
import { ACTIVE } from './monitor.js';

const taskHref = (t, tab) => `#/training/${encodeURIComponent(t.id)}${tab ? `?tab=${tab}` : ''}`;

// #/training?new=1&dataset=<name> (the Data area's "Train on this dataset"): a draft task on that dataset,
// opened on its form; the link is replaced in the history, so going back does not create another.
export async function createFromLink(dataset) {
  const t = await createTask(dataset ? { dataset } : {});
  navigate(t ? taskHref(t, 'config') : '#/training', { replace: true });
}

export async function renderList(container, scope, header) {
  const [gpus, datasets, models] = await Promise.all([api('gpus', { signal: scope.signal }),
    api('datasets', { signal: scope.signal }), api('models', { signal: scope.signal })]);
  const unit = gpus.mode === 'cpu' ? 'CPU slot' : 'GPU';
  const rows = new Map();
  const tbody = h('tbody');
  const table = h('table.tasks', {},
    h('thead', h('tr', ['Task', 'State', 'Progress', unit === 'GPU' ? 'GPUs' : 'Devices', 'Latest loss', 'Updated', '']
      .map((t) => h('th', t)))), tbody);
  const empty = h('div.empty', { hidden: true });
  const demo = datasets.datasets.find((d) => d.name === 'demo');
  const create = async (body) => {
    const t = await createTask(body);
    if (t) navigate(taskHref(t, 'config'));
  };
  const importOne = async () => {
    const t = await importTask();
    if (t) navigate(taskHref(t, 'config'));
  };
  header.append(h('button#import-task', { type: 'button', onclick: importOne, title: 'A new task from a diffusion-pipe config (TOML files)' },
    'Import TOML…'), h('button.primary#new-task', { type: 'button', onclick: () => create({}) }, 'New task'));
  fill(empty,
    h('h2', 'No training tasks yet'),
    h('p.muted', 'A task holds a LoRA training configuration and the runs made from it.'),
    models.models.length ? null : h('p.error', `No model checkpoint found. Put a Wan checkpoint folder under ${models.roots.join(' or ')}.`),
    h('div.row',
      demo ? h('button.primary#create-demo', { type: 'button', onclick: () => create({ dataset: 'demo' }) },
        'Create a task on the demo dataset') : null,
      h('button', { type: 'button', onclick: () => create({}) }, demo ? 'New empty task' : 'New task')),
    datasets.datasets.length ? null : h('p.muted', 'There is no dataset yet: add one in the ', h('a', { href: '#/data' }, 'Data'), ' area.'));
  container.append(empty, h('div.card.table-card', table));

  const update = async () => {
    const { tasks } = await api('tasks', { signal: scope.signal });
    empty.hidden = tasks.length > 0;
    table.parentElement.hidden = !tasks.length;
    const seen = new Set();
    for (const t of [...tasks].reverse()) {          // newest first
      seen.add(t.id);
      let row = rows.get(t.id);
      if (!row) {
        row = makeRow(t, unit, () => update());
        rows.set(t.id, row);
      }
      row.update(t);
      tbody.append(row.el);                            // keeps order; moves only what moved
    }
    for (const [id, row] of rows) if (!seen.has(id)) { row.el.remove(); rows.delete(id); }
  };
  scope.poll(update, 2000);
}

function makeRow(task, unit, refresh) {
  let current = task;
  const cells = { name: h('td.name'), state: h('td'), progress: h('td.progress-cell'), devices: h('td'), loss: h('td.num'),
    updated: h('td.muted.small') };
  const act = (label, fn, cls = '') => h(`button.small${cls}`, { type: 'button', 'aria-label': `${label} ${task.name}`,
    onclick: async () => {
      try {
        if (await fn(current)) await refresh();
      } catch (e) {
        if (e.name !== 'AbortError') showError(e);     // aborted: the user has left the list meanwhile
      }
    } }, label);
  const el = h('tr', { dataset: { task: task.id } }, Object.values(cells),
    h('td.actions', act('Copy', async (t) => { const c = await copyTask(t); if (c) navigate(taskHref(c, 'config')); return c; }),
      act('Rename', renameTask), act('Delete', deleteTask)));
  let sig = '';
  return {
    el,
    update(t) {
      current = t;
      const s = JSON.stringify(t);
      if (s === sig) return;
      sig = s;
      const job = t.latest_job, p = job && job.progress;
      fill(cells.name, h('a', { href: taskHref(t) }, t.name), t.name !== t.id ? h('div.muted.small', t.id) : null);
      fill(cells.state, badge(t.state), job && job.retries ? h('span.muted.small', ` retry ${job.retries}`) : null);
      fill(cells.progress, ...progressCell(job, p));
      const live = job && ['running', 'stopping'].includes(job.state);
      const req = t.resources.gpu_ids ? `${unit}s ${t.resources.gpu_ids.join(', ')}` : `${t.resources.gpus} ${unit}${t.resources.gpus > 1 ? 's' : ''}`;
      cells.devices.textContent = live && job.devices.length ? `${unit} ${job.devices.join(', ')}` : `${req} asked`;
      cells.loss.textContent = p && p.loss ? formatNumber(p.loss.value) : '–';
      cells.loss.title = p && p.loss ? `at step ${p.loss.step}` : '';
      cells.updated.textContent = formatShortTime(job ? job.updated_at : t.updated_at);
    },
  };
}

function progressCell(job, p) {
  if (!job) return [h('span.muted', 'not run yet')];
  if (job.state === 'queued') return [h('span.muted', 'waiting in the queue')];
  if (!p || p.step === null || p.step === undefined) {
    return [h('span.muted', p && p.phase === 'cache' ? 'caching…' : p && p.status ? p.status : ACTIVE.includes(job.state) ? 'starting…' : '–')];
  }
  const bits = [`${p.step} / ${p.total_steps ?? '?'}`];
  if (p.epoch !== null) bits.push(`epoch ${p.epoch}/${p.total_epochs ?? '?'}`);
  if (job.state === 'running' && p.eta_s !== null) bits.push(`ETA ${formatDuration(p.eta_s)}`);
  return [h('div.progressbar', { role: 'progressbar', 'aria-valuenow': Math.round((p.fraction || 0) * 100), 'aria-valuemin': 0, 'aria-valuemax': 100 },
    h('div', { style: { width: `${Math.round((p.fraction || 0) * 100)}%` } })), h('div.small', bits.join(' · '))];
}
