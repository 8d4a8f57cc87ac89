// "Devices of this run": each rank's newest device use as the trainer reports it (`resources` events, every
// rank of every node, gathered by rank 0), grouped by node, so a multi-node run is watched without ssh.
//   const d = new RunDevices();  d.el;  d.update(progress.resources);

import { fill, h } from '../ui.js';

const pct = (v) => (typeof v === 'number' ? `${Math.round(v)} %` : '–');
const mem = (used, total) => (typeof used === 'number'
  ? `${(used / 1024).toFixed(1)}${typeof total === 'number' ? ` / ${(total / 1024).toFixed(1)}` : ''} GiB` : '–');

export class RunDevices {
  constructor() {
    this.body = h('div.run-devices-body');
    this.el = h('section.card.run-devices', { hidden: true }, h('h2', 'Devices of this run'),
      h('p.muted.small', 'Each rank reports its own device every minute (ODEO_RESOURCES_INTERVAL); grouped by node.'),
      this.body);
  }

  update(rows) {
    this.el.hidden = !(rows && rows.length);
    if (this.el.hidden) return;
    const nodes = new Map();
    for (const r of rows) {
      const key = `${r.node ?? '?'}`;
      if (!nodes.has(key)) nodes.set(key, []);
      nodes.get(key).push(r);
    }
    fill(this.body, [...nodes].map(([node, ranks]) => h('div.run-devices-node',
      h('h3', `Node ${node}${ranks[0].host ? ` · ${ranks[0].host}` : ''}`),
      h('table.compact', h('thead', h('tr', ['Rank', 'Stage', 'Device', 'Use', 'Memory', 'Reported'].map((t) => h('th', t)))),
        h('tbody', ranks.map((r) => h('tr', { dataset: { rank: r.rank } },
          h('td.num', String(r.rank)), h('td.num', r.stage === null || r.stage === undefined ? '–' : String(r.stage)),
          h('td', `${r.kind === 'gpu' ? 'GPU' : 'CPU'} ${r.device ?? ''}`.trim()),
          h('td.num', pct(r.util_pct)), h('td.num', mem(r.mem_used_mib, r.mem_total_mib)),
          h('td.num', typeof r.age_s === 'number' ? `${Math.round(r.age_s)} s ago` : '–'))))))));
  }
}
