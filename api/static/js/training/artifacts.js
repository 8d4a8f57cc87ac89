// What a run saved: LoRAs per epoch / step (download links straight to the file) and resumable
// checkpoints (each with "restart from here").
//
//   const list = new ArtifactList({ onRestart: (tag) => ... });
//   list.update(jobId, await api(`jobs/${jobId}/artifacts`), { canRestart });

import { fileUrl } from '../api.js';
import { fill, formatBytes, formatShortTime, h } from '../ui.js';

export class ArtifactList {
  constructor({ onRestart }) {
    this.onRestart = onRestart;
    this.loras = h('div.artifact-loras');
    this.checkpoints = h('div.artifact-checkpoints');
    this.el = h('div.artifacts', h('h2', 'LoRAs'), this.loras, h('h2', 'Checkpoints'), this.checkpoints);
    this.signature = '';
  }

  update(jobId, artifacts, { canRestart = false } = {}) {
    const sig = JSON.stringify([jobId, canRestart, artifacts.loras.map((l) => [l.name, l.files.length, l.created_at]),
      artifacts.checkpoints.map((c) => c.tag)]);
    if (sig === this.signature) return;
    this.signature = sig;
    const fileLink = (f) => h('a.download', {
      href: fileUrl(`jobs/${encodeURIComponent(jobId)}/files/${f.path.split('/').map(encodeURIComponent).join('/')}`),
      download: '', dataset: { path: f.path }, title: `Download ${f.path}`,
    }, f.expert && f.expert !== 'main' ? `Download ${f.expert}` : 'Download', h('span.muted', ` ${formatBytes(f.size)}`));
    const loras = [...artifacts.loras].reverse();
    fill(this.loras, loras.length ? h('table.compact', {},
      h('thead', h('tr', h('th', 'Saved at'), h('th', 'File'))),
      h('tbody', loras.map((l) => h('tr', { dataset: { lora: l.name } },
        h('td.nowrap', l.kind === 'epoch' ? `epoch ${l.number}` : `step ${l.number}`, h('div.muted.small', formatShortTime(l.created_at))),
        h('td', h('div.links', l.files.map(fileLink)))))))
      : h('p.muted', 'No LoRA saved yet. One is saved at the cadence set in the configuration, when you press "Save now", and at the end.'));
    const ckpts = [...artifacts.checkpoints].reverse();
    fill(this.checkpoints, ckpts.length ? h('table.compact', {},
      h('thead', h('tr', h('th', 'Checkpoint'), h('th', 'Step'), h('th', ''))),
      h('tbody', ckpts.map((c) => h('tr', { dataset: { checkpoint: c.tag } },
        h('td', c.tag, h('div.muted.small', formatShortTime(c.created_at))),
        h('td', { title: c.epoch ? `resumes in epoch ${c.epoch}` : '' }, c.step ?? '–'),
        h('td', h('button.small', { type: 'button', disabled: !canRestart, title: canRestart
          ? `Start a new run of this configuration from ${c.tag}` : 'Available once this run has ended and the task has no active run',
        onclick: () => this.onRestart(c.tag) }, 'Restart from here'))))))
      : h('p.muted', 'No checkpoint yet. Resumable checkpoints are written at the cadence set in the configuration.'));
  }
}
