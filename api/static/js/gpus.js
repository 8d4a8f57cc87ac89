// GPUs area, #/gpus: one card per GPU (memory, load, temperature, which run holds it, busy outside the
// studio), or, on a machine with no GPU, the CPU slots jobs run in. Refreshed every 2 s while shown.
// Below: the recent history of each GPU (or of the CPU and RAM), which the studio samples every few seconds
// into memory, and the estimate of a run's GPU memory and time per epoch.

import { api } from './api.js';
import { backupCard } from './backups.js';
import { TimeChart } from './chart.js';
import { estimateCard } from './estimate.js';
import { fill, formatNumber, formatShortTime, h, scope as makeScope } from './ui.js';

const COLOURS = ['#2f6fde', '#e07b00', '#1f8a4c', '#c53030', '#8040c0', '#008c96', '#b7791f', '#d53f8c'];

// Utilisation, memory and temperature of every GPU over time (CPU % and RAM without GPUs), polled every 5 s.
function historyCard(scope) {
  const note = h('p.muted.small');
  const charts = h('div.resource-charts');
  const card = h('section.card.resource-card', h('h2', 'History'), note, charts);
  let made = null, after = null;
  const times = [], rows = [];
  scope.poll(async () => {
    const r = await api('resources', { query: { after }, signal: scope.signal });
    for (const s of r.samples) { times.push(s.t); rows.push(s); }
    const drop = Math.max(0, times.length - r.keep);
    times.splice(0, drop); rows.splice(0, drop);
    if (r.samples.length) after = r.samples[r.samples.length - 1].t;
    note.textContent = `Sampled every ${r.interval_s} s and kept in the studio's memory (the last ${Math.round(r.keep * r.interval_s / 60)} min; a restart clears it).`;
    const gpus = rows.length ? rows[rows.length - 1].gpus.map((g) => g.index) : [];
    const gpuSeries = (key) => gpus.map((i, n) => ({ label: `GPU ${i}`, colour: COLOURS[n % COLOURS.length],
      values: rows.map((s) => { const g = s.gpus.find((x) => x.index === i); return g ? g[key] : null; }) }));
    const specs = gpus.length
      ? [['util', 'Utilisation', '%', 100, () => gpuSeries('utilization_pct')], ['mem', 'Memory used', ' GiB', null, () => gpuSeries('memory_used_gib')],
        ['temp', 'Temperature', '°C', null, () => gpuSeries('temperature_c')]]
      : [['cpu', 'CPU', '%', 100, () => [{ label: 'CPU', colour: COLOURS[0], values: rows.map((s) => s.cpu_pct) }]],
        ['ram', `RAM (of ${rows.length ? rows[rows.length - 1].ram_total_gib : '?'} GiB)`, ' GiB', null,
          () => [{ label: 'RAM used', colour: COLOURS[1], values: rows.map((s) => s.ram_used_gib) }]]];
    const key = specs.map((x) => x[0]).join() + gpus.join();
    if (!made || made.key !== key) {
      if (made) made.charts.forEach((c) => c.destroy());
      fill(charts);
      made = { key, charts: specs.map(([id, title, unit, max]) => {
        const box = h('div.resource-chart', { dataset: { chart: id } });
        charts.append(box);
        return new TimeChart(box, { title, unit, max });
      }) };
    }
    specs.forEach((spec, i) => made.charts[i].set(times, spec[4]()));
  }, 5000);
  scope.add(() => { if (made) made.charts.forEach((c) => c.destroy()); });
  return card;
}

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
    container.append(h('div.area-header', h('h1', 'GPUs'), h('span.grow'), summary), notice, grid, historyCard(scope),
      estimateCard(scope), backupCard(scope));
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
