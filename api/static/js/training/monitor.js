// The monitor tab of a task: one run (job) at a time: progress, controls, attempts, the loss chart,
// what it saved, and its log. Polls while the run is active and once more when it ends.
//
//   const m = new Monitor({ task, jobId, scope, onJob, onState });
//   onJob(id): show another run (new or chosen); onState(job): the run changed state (the page re-reads the task)
//   container.append(m.el);  m.setTask(task);               // the task page passes fresh task records

import { api, fileUrl } from '../api.js';
import { LossChart } from '../chart.js';
import { LogView } from '../logview.js';
import { badge, confirmDialog, fill, formatDuration, formatNumber, formatShortTime, h, showError, toast } from '../ui.js';
import { ArtifactList } from './artifacts.js';
import { EvalCharts } from './evalcharts.js';
import { RunDevices } from './devices.js';
import { SamplesView } from './samples.js';
import { notifyButton } from '../notify.js';

export const ACTIVE = ['queued', 'running', 'stopping'];
const RESUMABLE = ['stopped', 'failed', 'interrupted'];
const CONTINUABLE = ['done', 'stopped'];

const jobPath = (id, rest = '') => `jobs/${encodeURIComponent(id)}${rest}`;

// A task's training runs (its `jobs` also hold the inference jobs of its previews and tests).
export const trainJobs = (task) => task.jobs.filter((j) => (j.kind || 'train') === 'train');

// The line of a failed attempt's log tail that says why (an error or exception), when its reason does not.
function failedLine(a) {
  if (!a.log_tail || ['done', 'stopped'].includes(a.outcome)) return null;
  const lines = a.log_tail.split('\n').map((l) => l.trim()).filter(Boolean);
  const why = [...lines].reverse().find((l) => /(Error|Exception|error:|Killed|Traceback)/.test(l)) || lines.at(-1);
  return why && !(a.reason || '').includes(why) ? why : null;
}

export class Monitor {
  constructor({ task, jobId, scope, onJob, onState = () => {} }) {
    this.task = task;
    this.onState = onState;
    this.jobId = jobId;
    this.scope = scope;
    this.onJob = onJob;
    this.job = null;
    this.progress = null;
    this.artifacts = { loras: [], checkpoints: [], events: [] };
    this.ticks = 0;
    this.finalRead = false;
    this.build();
  }

  build() {
    this.runSelect = h('select#run-select', { onchange: () => this.onJob(this.runSelect.value) });
    this.progressCard = h('section.card.progress-card', { 'aria-live': 'polite' });
    this.controls = this.buildControls();
    this.attempts = h('details.attempts');
    this.inferBox = h('details.inference-box', { hidden: true });
    this.chartBox = h('div.loss-chart');
    this.chart = new LossChart(this.chartBox);
    this.scope.add(() => this.chart.destroy());
    this.evalCharts = new EvalCharts();
    this.devices = new RunDevices();
    this.scope.add(() => this.evalCharts.destroy());
    this.samples = new SamplesView({ taskId: this.task.id, jobId: this.jobId });
    this.list = new ArtifactList({ onRestart: (tag) => this.restart(tag) });
    this.log = new LogView({ read: (query) => api(jobPath(this.jobId, '/log'), { query, signal: this.scope.signal }),
      downloadUrl: fileUrl(jobPath(this.jobId, '/files/log.txt')) });
    this.el = h('div.monitor',
      h('div.row.run-bar', h('label.inline', { for: 'run-select' }, 'Run'), this.runSelect, h('span.muted.run-origin'),
        notifyButton()),
      this.progressCard, this.controls.el, this.attempts, this.inferBox, this.devices.el,
      h('div.monitor-grid',
        h('section.card.chart-card', h('h2', 'Loss'), this.chartBox),
        h('section.card.artifact-card', this.list.el)),
      this.evalCharts.el, this.samples.el,
      h('section.card.log-card', h('h2', 'Log'), this.log.el));
    this.setTask(this.task);
  }

  buildControls() {
    const b = (label, cls, onclick, title) => h(`button.${cls}`, { type: 'button', onclick, title }, label);
    const c = {
      stop: b('Stop', 'danger', () => this.stop(false), 'Checkpoint and stop; you can resume later'),
      stopSave: b('Stop and save LoRA', 'plain', () => this.stop(true), 'Save the LoRA and a checkpoint, then stop'),
      save: b('Save LoRA now', 'plain', () => this.act('/save', {}, 'The LoRA is saved at the next step; training goes on.'),
        'Save the LoRA at the next step and keep training'),
      cancel: b('Cancel', 'plain', () => this.act('/cancel', undefined, 'Cancelled.'), 'Take this run out of the queue'),
      resume: b('Resume', 'primary', () => this.act('/resume', {}, 'Queued again; it resumes from its newest checkpoint.'),
        'Queue this run again from its newest checkpoint'),
      restartSelect: h('select', { 'aria-label': 'Checkpoint to restart from' }),
      restart: b('Restart from checkpoint', 'plain', () => this.restart(c.restartSelect.value)),
      epochs: h('input', { type: 'number', min: 1, step: 1, 'aria-label': 'Total epochs after continuing', class: 'epochs' }),
      cont: b('Continue', 'plain', () => this.continueRun(), 'Train this finished run for more epochs (a new run from its final checkpoint)'),
    };
    for (const btn of [c.stop, c.stopSave, c.save, c.cancel, c.resume, c.restart, c.cont]) btn.dataset.title = btn.title || '';
    c.el = h('div.row.controls', { role: 'toolbar', 'aria-label': 'Run controls' },
      c.stop, c.stopSave, c.save, c.cancel, c.resume,
      h('span.control-group', c.restartSelect, c.restart),
      h('span.control-group', h('label.inline', 'to ', c.epochs, ' epochs'), c.cont));
    return c;
  }

  setTask(task) {
    this.task = task;
    const jobs = [...trainJobs(task)].reverse();
    const sig = jobs.map((j) => `${j.id}:${j.state}`).join(',');
    if (sig !== this.runSig) {
      this.runSig = sig;
      fill(this.runSelect, ...jobs.map((j, i) => h('option', { value: j.id, selected: j.id === this.jobId },
        `Run ${j.run ?? jobs.length - i} · ${j.state} · ${formatShortTime(j.created_at)} · ${j.id}`)));
    }
    this.renderInferenceJobs(task);
    if (this.job) this.renderControls();
  }

  // Another run of this task is queued or running (then nothing new can start).
  otherActive() {
    return trainJobs(this.task).some((j) => j.id !== this.jobId && ACTIVE.includes(j.state));
  }

  // The task's inference jobs (previews, tests): listed apart from its training runs, opened in Inference.
  renderInferenceJobs(task) {
    const jobs = task.jobs.filter((j) => (j.kind || 'train') === 'infer').reverse();
    const sig = jobs.map((j) => `${j.id}:${j.state}`).join(',');
    if (sig === this.inferSig) return;
    this.inferSig = sig;
    const what = (j) => (j.origin && j.origin.action === 'preview' ? `preview of ${j.origin.checkpoint || 'a save'}` : 'test run');
    this.inferBox.hidden = !jobs.length;
    fill(this.inferBox, jobs.length ? [
      h('summary', `Inference jobs of this task (${jobs.length})`, h('span.muted', ' · previews and tests, not training runs')),
      h('ul.inference-jobs', jobs.slice(0, 20).map((j) => h('li', { dataset: { job: j.id } }, badge(j.state),
        ` ${what(j)} · ${formatShortTime(j.created_at)} `, h('span.muted.small', j.id)))),
      h('a', { href: `#/inference/${encodeURIComponent(task.id)}` }, 'Open them in Inference')] : []);
  }

  start() {
    this.scope.poll(() => this.tick(), 1000);
  }

  // One tick at a time (a control action ticks at once, the poll goes on): a second call joins the first.
  tick() {
    if (!this.busy) this.busy = this.read().finally(() => { this.busy = null; });
    return this.busy;
  }

  async read() {
    const active = !this.job || ACTIVE.includes(this.job.state);
    this.ticks += 1;
    if (!active && this.finalRead && this.ticks % 3) return;      // ended: check now and then for a resume
    const signal = this.scope.signal;
    const progress = await api(jobPath(this.jobId, '/progress'), { signal });
    const changed = !this.job || progress.state !== this.job.state || progress.attempt !== this.job.attempts.length;
    if (changed) {
      const before = this.job;
      this.job = await api(jobPath(this.jobId), { signal });
      if (before && before.attempts.length !== this.job.attempts.length) this.fullMetrics = true;
      if (ACTIVE.includes(this.job.state)) this.finalRead = false;
      this.renderAttempts();
      if (before && before.state !== this.job.state) this.onState(this.job);
    }
    this.progress = progress;
    const nowActive = ACTIVE.includes(this.job.state);
    if (nowActive && this.job.state === 'queued' && this.ticks % 2) this.queueInfo = await this.readQueue(signal);
    this.renderProgress();
    this.evalCharts.setWarnings(progress.warnings);
    this.devices.update(progress.resources);
    if (nowActive || !this.finalRead) {
      const last = !nowActive;
      if (last || this.ticks % 2 === 1 || changed) await this.readMetrics(signal);
      await this.log.update();
      if (last || this.ticks % 4 === 1 || changed) await this.readArtifacts(signal);
      this.finalRead = last;
    }
    this.renderControls();
  }

  async readQueue(signal) {
    const q = await api('queue', { signal });
    return q.jobs.find((j) => j.job_id === this.jobId) || null;
  }

  async readMetrics(signal) {
    const full = this.fullMetrics || this.chart.lastStep() === null;
    const out = await api(jobPath(this.jobId, '/metrics'), {
      query: { names: undefined, after: full ? undefined : this.chart.lastStep() }, signal });
    if (full) { this.chart.reset(); this.evalCharts.reset(); }
    this.fullMetrics = false;
    this.chart.merge(out.series);
    this.evalCharts.merge(out.series);
  }

  async readArtifacts(signal) {
    this.artifacts = await api(jobPath(this.jobId, '/artifacts'), { signal });
    this.list.update(this.jobId, this.artifacts, { canRestart: this.canRestart() });
    await this.samples.update(signal);
  }

  canRestart() {
    return this.job && !ACTIVE.includes(this.job.state) && !this.otherActive() && !this.task.deleting;
  }

  renderProgress() {
    const p = this.progress, job = this.job;
    const total = p.total_steps, step = this.shownStep();
    const frac = (step !== null && total ? Math.min(1, step / total) : null)
      ?? (p.phase === 'cache' && p.cache && p.cache.total ? p.cache.done / p.cache.total : null);
    const stats = [];
    if (p.phase === 'train' && step !== null) {
      stats.push(`Step ${step} / ${total ?? '?'}`);
      if (p.epoch !== null) stats.push(`epoch ${p.epoch} / ${p.total_epochs ?? '?'}`);
      if (p.steps_per_s) stats.push(`${formatNumber(p.steps_per_s, 3)} it/s`);
      if (job.state === 'running' && p.eta_s !== null) stats.push(`ETA ${formatDuration(p.eta_s)}`);   // not while queued
      if (p.loss) stats.push(`loss ${formatNumber(p.loss.value)}`);
    } else if (p.phase === 'cache' && p.cache) {
      stats.push(`Caching latents and captions: ${p.cache.done} / ${p.cache.total}`);
    }
    if (job.attempts.length > 1) stats.push(`attempt ${job.attempts.length}`);
    const stale = this.staleNote();
    const phase = this.phaseText();
    const queued = job.state === 'queued' && this.queueInfo;
    const trainer = p.status && p.status !== job.state ? p.status : null;
    const message = p.message && p.message !== p.status ? p.message : job.message || '';
    this.progressCard.dataset.state = job.state;
    this.progressCard.dataset.step = step ?? '';
    fill(this.progressCard,
      h('div.row',
        badge(job.state), phase ? h('span.phase', phase) : trainer ? h('span.muted', `trainer: ${trainer}`) : null,
        h('span.grow.progress-message', message),
        h('span.muted.small', job.attempts.length ? `started ${formatShortTime(job.attempts[0].started_at)}`
          : `queued ${formatShortTime(job.queued_at)}`)),
      h('div.progressbar.large', { role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
        'aria-valuenow': frac === null ? undefined : Math.round(frac * 100) },
      h('div', { style: { width: `${Math.round((frac || 0) * 100)}%` } })),
      h('div.row.stats', stats.map((s) => h('span', s))),
      queued ? h('p.muted', `Waiting in the queue (position ${this.queueInfo.position + 1}): ${this.queueInfo.waiting_reason}. `,
        h('a', { href: '#/training/queue' }, 'Open the queue')) : null,
      ...this.banners(message),
      stale);
  }

  // The step to show: while the run lives, the trainer's latest progress; once it ended, also what it
  // wrote last (progress events are thinned, the final checkpoint and loss point are not).
  shownStep() {
    const p = this.progress;
    if (!this.job || ACTIVE.includes(this.job.state) || p.phase !== 'train') return p.step;
    const ckpt = this.artifacts.checkpoints.at(-1);
    const seen = [p.step, ckpt && ckpt.step, p.loss && p.loss.step].filter((x) => Number.isInteger(x));
    return seen.length ? Math.max(...seen) : p.step;
  }

  // What the running attempt is doing, from its latest status: starting, loading, caching, training ...
  phaseText() {
    const job = this.job, p = this.progress;
    if (job.state !== 'running') return null;
    const words = { starting: 'starting up', loading: 'loading the model', caching: 'caching latents and captions',
      training: 'training', evaluating: 'evaluating', saving: 'saving' };
    return p.status ? `phase: ${words[p.status] || p.status}` : 'phase: starting up (no word from the trainer yet)';
  }

  // Messages about the past (a crash, a retry) only while they still hold: not once the run trains again.
  banners(message) {
    const job = this.job, p = this.progress;
    const live = ['running', 'stopping'].includes(job.state);
    const over = live && ['training', 'evaluating', 'saving'].includes(p.status);
    const note = job.message && job.message !== message && job.state !== 'done' && !over ? h('p.small.job-message', job.message) : null;
    const failure = p.failure && !live && job.state !== 'done' ? h('pre.failure', p.failure) : null;
    return [note, failure];
  }

  // Silence is only alarming once the trainer trains: starting up (DeepSpeed builds, model loading,
  // caching) may take many minutes without a heartbeat.
  staleNote() {
    const job = this.job, p = this.progress;
    if (job.state !== 'running' || p.heartbeat_age_s === null || p.heartbeat_age_s <= 60) return null;
    if (!p.status || ['starting', 'loading', 'caching'].includes(p.status)) {
      return h('p.muted.small', `Still starting up: last word from the trainer ${formatDuration(p.heartbeat_age_s)} ago.`);
    }
    return h('p.error', `No sign of life from the trainer for ${formatDuration(p.heartbeat_age_s)}.`);
  }

  renderAttempts() {
    const atts = this.job.attempts;
    const troubled = atts.some((a) => a.outcome && !['done', 'stopped'].includes(a.outcome));
    const wasOpen = this.attempts.open;
    fill(this.attempts,
      h('summary', `Attempts (${atts.length})`, troubled ? h('span.error', ' · retried or failed: see why') : '',
        this.job.failures_in_row ? h('span.muted', ` · ${this.job.failures_in_row} failed in a row without progress`) : ''),
      atts.length ? h('table.compact', {},
        h('thead', h('tr', ['#', 'Started', 'Ended', 'Devices', 'Outcome', 'Reason', 'Exit'].map((t) => h('th', t)))),
        h('tbody', atts.map((a) => h('tr',
          h('td', a.n), h('td', formatShortTime(a.started_at)), h('td', a.ended_at ? formatShortTime(a.ended_at) : 'running'),
          h('td', `${a.device_kind === 'cpu' ? 'CPU slot' : 'GPU'} ${a.devices.join(', ')}`),
          h('td', a.outcome ? badge(a.outcome) : ''),
          h('td.reason', a.reason || (a.resume_from ? `resumed from ${a.resume_from}` : ''),
            failedLine(a) ? h('div.small.failed-line', failedLine(a)) : '',
            a.log_tail && !['done', 'stopped'].includes(a.outcome)
              ? h('details', h('summary.small', 'last lines of the log'), h('pre.failure', a.log_tail)) : ''),
          h('td', a.exit_code ?? '')))))
        : h('p.muted', 'Not started yet.'));
    this.attempts.open = wasOpen || troubled;
    this.attempts.hidden = !atts.length;
    const origin = this.job.origin || {};
    const from = origin.action === 'restart'
      ? `restarted from ${origin.checkpoint} of ${origin.job_id}` : origin.action === 'continue'
        ? `continues ${origin.job_id} from ${origin.checkpoint}` : '';
    // the hub commit of each downloaded model the run trains on (recorded when the run was queued)
    const model = (this.job.model_sources || []).map((m) => `${m.name}: ${m.sources.map((s) => `${s.repo}@${(s.commit || '').slice(0, 10)}`).join(' + ')}`);
    this.el.querySelector('.run-origin').textContent = [from, ...model].filter(Boolean).join(' · ');
  }

  renderControls() {
    const c = this.controls, job = this.job, state = job.state;
    const ckpts = this.artifacts.checkpoints;
    const other = this.otherActive();
    const set = (btn, on, why) => { btn.disabled = !on; btn.title = on ? btn.dataset.title : why; };
    const running = state === 'running';
    set(c.stop, running, 'Only a running run can be stopped');
    set(c.stopSave, running, 'Only a running run can be stopped');
    set(c.save, running, 'Only a running run can save now');
    c.cancel.hidden = state !== 'queued';
    c.stop.hidden = c.stopSave.hidden = c.save.hidden = !['running', 'stopping'].includes(state);
    set(c.resume, RESUMABLE.includes(state) && !other,
      other ? 'Another run of this task is active' : 'Only a stopped, failed or interrupted run resumes');
    c.resume.hidden = !RESUMABLE.includes(state);
    const restartable = this.canRestart() && ckpts.length > 0;
    set(c.restart, restartable, ckpts.length ? 'Available once this run has ended' : 'No checkpoint saved yet');
    c.restartSelect.disabled = !restartable;
    const tags = ckpts.map((k) => k.tag).reverse();
    const options = tags.length ? tags.map((t) => [t, t]) : [['', 'no checkpoint yet']];
    if (JSON.stringify(options) !== c.restartSelect.dataset.options) {
      c.restartSelect.dataset.options = JSON.stringify(options);
      fill(c.restartSelect, options.map(([v, t]) => h('option', { value: v }, t)));
    }
    const contOk = CONTINUABLE.includes(state) && !other && ckpts.length > 0;
    set(c.cont, contOk, CONTINUABLE.includes(state) ? 'No checkpoint to continue from' : 'Only a finished or stopped run continues');
    c.epochs.disabled = !contOk;
    const totalEpochs = this.progress && this.progress.total_epochs;
    if (totalEpochs && !c.epochs.value) {
      c.epochs.value = totalEpochs * 2;
      c.epochs.min = totalEpochs + 1;
    }
    if (state === 'stopping') c.stop.textContent = 'Stopping…';
    else c.stop.textContent = 'Stop';
  }

  async stop(save) {
    const ok = await confirmDialog(save
      ? 'Save the LoRA and a checkpoint, then stop this run? You can resume it later.'
      : 'Stop this run? A checkpoint is written first, so you can resume it later.', { confirm: 'Stop', danger: true });
    if (ok) await this.act('/stop', { save }, 'Stopping: the trainer checkpoints and exits.');
  }

  async act(path, body, message) {
    try {
      this.job = await api(jobPath(this.jobId, path), { method: 'POST', body });
      toast(message, 'ok');
      this.finalRead = false;
      this.renderAttempts();
      this.renderControls();
      await this.tick();
    } catch (e) {
      showError(e);
    }
  }

  async restart(tag) {
    if (!tag) return;
    const ok = await confirmDialog(`Start a new run of this configuration from checkpoint ${tag}?`, { confirm: 'Restart' });
    if (!ok) return;
    try {
      const job = await api(jobPath(this.jobId, '/restart'), { method: 'POST', body: { checkpoint: tag } });
      toast(`Restarting from ${tag}: a new run is queued.`, 'ok');
      this.onJob(job.id, true);
    } catch (e) {
      showError(e);
    }
  }

  async continueRun() {
    const epochs = Number(this.controls.epochs.value);
    if (!Number.isInteger(epochs) || epochs < 1) {
      showError('Enter the total number of epochs to train to');
      return;
    }
    try {
      const job = await api(jobPath(this.jobId, '/continue'), { method: 'POST', body: { epochs } });
      toast(`Continuing to ${epochs} epochs: a new run is queued.`, 'ok');
      this.onJob(job.id, true);
    } catch (e) {
      showError(e);
    }
  }
}
