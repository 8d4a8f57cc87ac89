// GPUs area, #/gpus: one card per GPU (memory, load, temperature, which run holds it, busy outside the
// studio), or, on a machine with no GPU, the CPU slots jobs run in. Refreshed every 2 s while shown.

import { api } from './api.js';
import { backupCard } from './backups.js';
import { fill, formatNumber, formatShortTime, h, scope as makeScope } from './ui.js';

const gib = (v) => (v === null || v === undefined ? '–' : `${formatNumber(v, 3)} GiB`);

function holder(d) {
  if (d.held_by) {
    return h('div.gpu-holder', 'Used by ',
      h('a', { href: `#/training/${encodeURIComponent(d.held_by.task_id)}?tab=monitor&job=${encodeURIComponent(d.held_by.job_id)}` },
        d.held_by.task_name || d.held_by.task_id),
      h('div.muted.small', d.held_by.job_id));
  }
  if (d.busy_outside) return h('div.gpu-holder.warn', 'Busy outside the studio', h('div.muted.small', 'memory in use by another program; jobs wait for it'));
  return h('div.gpu-holder.muted', 'No run on it');
}

function meter(label, value, max, text, cls = '') {
  const frac = value !== null && value !== undefined && max ? Math.min(1, value / max) : 0;
  return h('div.meter', h('div.row', h('span.muted', label), h('span.grow'), h('span', text)),
    h(`div.progressbar${cls}`, { role: 'meter', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': max || 0, 'aria-valuenow': value ?? 0 },
      h('div', { style: { width: `${Math.round(frac * 100)}%` } })));
}

function card(d, mode) {
  const state = d.held_by ? 'in use' : d.busy_outside ? 'busy outside' : 'free';
  const cls = d.held_by ? 'held' : d.busy_outside ? 'outside' : 'free';
  const title = mode === 'cpu' ? `CPU slot ${d.index}` : `GPU ${d.index}`;
  return h(`section.card.gpu-card.${cls}`, { dataset: { index: d.index }, 'aria-label': `${title}: ${state}` },
    h('div.row', h('h2', title), h('span.grow'), h(`span.badge.${cls}`, state)),
    mode === 'gpu' ? h('div.muted.small.gpu-name', d.name) : null,
    mode === 'gpu' ? [
      meter('Memory', d.memory_used_gib, d.memory_total_gib, `${gib(d.memory_used_gib)} / ${gib(d.memory_total_gib)}`),
      meter('Utilisation', d.utilization_pct, 100, d.utilization_pct === null ? '–' : `${Math.round(d.utilization_pct)} %`),
      h('div.row.small', h('span.muted', 'Temperature'), h('span.grow'),
        h('span', d.temperature_c === null || d.temperature_c === undefined ? 'not reported' : `${Math.round(d.temperature_c)} °C`)),
    ] : null,
    holder(d));
}

export default {
  id: 'gpus',
  title: 'GPUs',
  async render(container) {
    const scope = makeScope();
    const summary = h('p.muted.gpu-summary');
    const notice = h('div.notice', { hidden: true });
    const grid = h('div.gpu-grid');
    container.append(h('div.area-header', h('h1', 'GPUs'), h('span.grow'), summary), notice, grid, backupCard(scope));
    let sig = '';
    scope.poll(async () => {
      const inv = await api('gpus', { signal: scope.signal });
      const { read_at: readAt, ...rest } = inv;
      const s = JSON.stringify(rest);
      const free = inv.devices.filter((d) => d.free).length;
      summary.textContent = `${free} of ${inv.devices.length} ${inv.mode === 'cpu' ? 'CPU slots' : 'GPUs'} free · read ${formatShortTime(readAt)}`;
      if (s === sig) return;
      sig = s;
      notice.hidden = inv.mode !== 'cpu' && !inv.message;
      fill(notice, inv.mode === 'cpu'
        ? [h('strong', `No GPU: jobs run on the CPU (${inv.devices.length} slot${inv.devices.length === 1 ? '' : 's'}).`),
          inv.message ? h('div.muted', inv.message) : null]
        : [inv.message, inv.memory_threshold_gib !== null
          ? h('div.muted', `A GPU counts as busy outside the studio above ${gib(inv.memory_threshold_gib)} in use by other programs.`) : null]);
      notice.className = `notice ${inv.mode === 'cpu' ? 'info no-gpu' : ''}`;
      fill(grid, ...inv.devices.map((d) => card(d, inv.mode)));
    }, 2000);
    return scope.close;
  },
};
