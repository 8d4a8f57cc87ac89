// Sample videos during training, from the Training area:
//   SampleSettings  the configuration tab's "Samples" card: prompts (and test images for image-to-video models)
//                   and "make samples after each saved epoch"; they are the task's test settings
//                   (PATCH /tasks/<id>/inference: prompts, images, preview.enabled), the ones previews use.
//   SamplesView     the monitor's "Samples" card: the videos the preview jobs of this run made, one row per
//                   saved epoch (from GET /tasks/<id>/results). The Inference area keeps the comparisons.

import { api, fileUrl } from '../api.js';
import { debounce, fill, h, showError } from '../ui.js';
import { imagePicker } from '../inference/gallery.js';
import { lines } from '../inference/common.js';

export class SampleSettings {
  constructor({ taskId }) {
    this.taskId = taskId;
    this.status = h('span.muted.small.samples-status', { role: 'status' });
    this.body = h('div.samples-body', h('p.muted', 'Loading…'));
    this.el = h('fieldset.form-group.samples-settings', h('legend', 'Samples'), this.body);
    this.save = debounce(() => this.send(), 500);
    this.load().catch((e) => fill(this.body, h('p.error', `Sample settings not loaded: ${e.message || e}`)));
  }

  async load() {
    const rec = await api(`tasks/${encodeURIComponent(this.taskId)}/inference`);
    const task = rec.defaults ? rec.defaults.task : null;
    this.images = new Set(rec.images);
    this.enabled = h('input', { type: 'checkbox', name: 'samples_enabled', checked: rec.preview.enabled,
      onchange: () => this.save() });
    this.prompts = h('textarea', { name: 'sample_prompts', rows: 3, placeholder: 'One prompt per line, e.g. a red fox running through snow',
      oninput: () => this.save() }, rec.prompts.join('\n'));
    fill(this.body,
      h('label.row', this.enabled, ' Make sample videos after each saved epoch (shown in the Monitor beside that epoch)'),
      h('label.field.wide', h('span', 'Sample prompts'), this.prompts,
        h('div.hint', 'Also the test prompts of the Inference area. Steps, size and frames: Inference → Settings.')),
      task && task !== 't2v' ? imagePicker({ variant: rec.variant, images: this.images, choose: 'Choose sample images…',
        emptyText: task === 'i2v' ? 'An image-to-video model needs sample images.' : 'No image', onChange: () => this.save() }) : null,
      rec.variant ? null : h('p.muted', 'Choose a model checkpoint first: samples are made with it.'),
      this.status);
  }

  async send() {
    const body = { prompts: lines(this.prompts.value), preview: { enabled: this.enabled.checked } };
    if (this.images.size || this.el.querySelector('.inf-chosen')) body.images = [...this.images];
    this.status.textContent = 'Saving…';
    try {
      await api(`tasks/${encodeURIComponent(this.taskId)}/inference`, { method: 'PATCH', body });
      this.status.textContent = 'Samples saved';
      this.status.classList.remove('error');
    } catch (e) {
      this.status.textContent = `Not saved: ${e.message || e}`;
      this.status.classList.add('error');
      if (e.status >= 500) showError(e);
    }
  }
}

function epochOf(cell) {
  const l = cell.lora || {};
  return l.epoch ?? l.name;
}

export class SamplesView {
  constructor({ taskId, jobId }) {
    this.taskId = taskId;
    this.jobId = jobId;
    this.list = h('div.samples-list', h('p.muted', 'No samples yet.'));
    this.el = h('section.card.samples-card', h('h2', 'Samples'), this.list);
  }

  async update(signal) {
    const res = await api(`tasks/${encodeURIComponent(this.taskId)}/results`, { signal });
    const mine = new Set(res.jobs.filter((j) => j.origin && j.origin.action === 'preview' && j.origin.job_id === this.jobId)
      .map((j) => j.id));
    const waiting = res.jobs.filter((j) => mine.has(j.id) && ['queued', 'running'].includes(j.state)).length;
    // a sample shows as soon as TAEHV's fast video exists (seconds), and is replaced by the full VAE's when that is ready
    const videoOf = (c) => (c.status === 'done' && c.video_url) || c.video_fast_url || null;
    const cells = res.cells.filter((c) => mine.has(c.job_id) && videoOf(c));
    const key = JSON.stringify([waiting, cells.map((c) => `${c.job_id}/${c.id}/${videoOf(c)}`)]);
    if (key === this.shown) return;
    this.shown = key;
    const byEpoch = new Map();
    for (const c of cells) byEpoch.set(epochOf(c), [...(byEpoch.get(epochOf(c)) || []), c]);
    const rows = [...byEpoch].sort((a, b) => Number(a[0]) - Number(b[0])).map(([epoch, cs]) => h('div.samples-epoch',
      { dataset: { epoch } },
      h('div.samples-label', h('strong', typeof epoch === 'number' ? `epoch ${epoch}` : String(epoch)),
        cs[0].lora && cs[0].lora.step !== null && cs[0].lora.step !== undefined ? h('span.muted.small', ` step ${cs[0].lora.step}`) : null),
      h('div.samples-videos', cs.map((c) => h('figure.sample', { dataset: { fast: String(videoOf(c) !== c.video_url) } },
        h('video', { src: fileUrl(videoOf(c)), poster: c.poster_url ? fileUrl(c.poster_url) : undefined, muted: true,
          loop: true, controls: true, playsinline: true, preload: 'metadata', title: c.prompt }),
        h('figcaption.small', c.prompt || c.image || '',
          videoOf(c) !== c.video_url ? h('span.muted', ' · quick preview (TAEHV); the full video follows') : null))))));
    fill(this.list, rows.length ? rows : h('p.muted', 'No samples yet: turn samples on in the configuration (Samples) '
      + 'to get videos after each saved epoch.'),
    waiting ? h('p.muted.small', `${waiting} sample job(s) waiting or running…`) : null,
    h('a.small', { href: `#/inference/${encodeURIComponent(this.taskId)}` }, 'Compare epochs in Inference →'));
  }
}
