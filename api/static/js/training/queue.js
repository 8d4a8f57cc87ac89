// The queue, #/training/queue: queued runs in order with why each waits; move up / down / to the top,
// cancel. The scheduler starts the head of the queue (strict policy) as soon as its devices are free.

import { api } from '../api.js';
import { confirmDialog, fill, formatShortTime, h, showError } from '../ui.js';

export async function renderQueue(container, scope, setCount) {
  const tbody = h('tbody');
  const policy = h('p.muted');
  const empty = h('div.empty', { hidden: true }, h('h2', 'Nothing is waiting'),
    h('p.muted', 'Runs start as soon as the devices they asked for are free; while they wait they are listed here.'));
  const card = h('div.card.table-card', h('table.queue', {},
    h('thead', h('tr', ['#', 'Task', 'Run', 'Asked for', 'Queued', 'Waiting because', ''].map((t) => h('th', t)))), tbody));
  container.append(policy, empty, card);

  const move = async (jobId, where) => {
    try {
      show(await api(`queue/${encodeURIComponent(jobId)}/move`, { method: 'POST', body: { where } }));
    } catch (e) { showError(e, 'Move'); }
  };
  const cancel = async (entry) => {
    if (!await confirmDialog(`Take the run of "${entry.task_name || entry.task_id}" out of the queue?`, { confirm: 'Cancel the run', cancel: 'Keep it', danger: true })) return;
    try {
      await api(`jobs/${encodeURIComponent(entry.job_id)}/cancel`, { method: 'POST' });
      show(await api('queue'));
    } catch (e) { showError(e, 'Cancel'); }
  };
  let sig = '';
  const show = (q) => {
    setCount(q.jobs.length);
    const s = JSON.stringify(q);
    if (s === sig) return;
    sig = s;
    const focused = document.activeElement && document.activeElement.dataset.key;
    policy.textContent = q.policy === 'strict'
      ? 'Strict order: a run waiting for devices holds back the runs behind it, so big runs are not starved.'
      : 'Backfill: a later run may start on devices the first one cannot use yet.';
    empty.hidden = q.jobs.length > 0;
    card.hidden = !q.jobs.length;
    const last = q.jobs.length - 1;
    fill(tbody, ...q.jobs.map((j, i) => {
      const btn = (label, where, disabled, title) => h('button.small', { type: 'button', disabled, title,
        dataset: { key: `${j.job_id}:${where}` }, 'aria-label': `${title} (${j.task_name || j.task_id})`,
        onclick: () => (where === 'cancel' ? cancel(j) : move(j.job_id, where)) }, label);
      const req = j.request.gpu_ids ? `devices ${j.request.gpu_ids.join(', ')}` : `${j.request.gpus} device${j.request.gpus > 1 ? 's' : ''}`;
      return h('tr', { dataset: { job: j.job_id } },
        h('td', i + 1),
        h('td', h('a', { href: `#/training/${encodeURIComponent(j.task_id)}?tab=monitor&job=${encodeURIComponent(j.job_id)}` },
          j.task_name || j.task_id)),
        h('td.small', j.job_id, j.retries ? h('div.muted', `automatic retry ${j.retries}`) : null),
        h('td', req), h('td.small.muted', formatShortTime(j.queued_at)), h('td.reason', j.waiting_reason),
        h('td.actions',
          btn('Top', 'top', i === 0, 'Move to the top'), btn('↑', 'up', i === 0, 'Move up'),
          btn('↓', 'down', i === last, 'Move down'), btn('Cancel', 'cancel', false, 'Cancel this run')));
    }));
    if (focused) {
      const again = tbody.querySelector(`[data-key="${CSS.escape(focused)}"]`);
      if (again && !again.disabled) again.focus();
    }
  };
  scope.poll(async () => show(await api('queue', { signal: scope.signal })), 2000);
}
