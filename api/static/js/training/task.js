// The task page, #/training/<task-id>?tab=config|toml|monitor[&job=<job-id>]: header with state and
// actions, the configuration form, the raw TOML editors, and the monitor of one run.
// Form and TOML edit the same draft (draft.js); validation issues show in both.

import { api, fileUrl } from '../api.js';
import { estimateCard, estimateFromForm } from '../estimate.js';
import { navigate, setQuery } from '../router.js';
import { badge, fill, h, scope as makeScope, showError, toast } from '../ui.js';
import { askDevices, copyTask, deleteTask, renameTask } from './actions.js';
import { Draft } from './draft.js';
import { ConfigForm } from './form.js';
import { ACTIVE, Monitor, trainJobs } from './monitor.js';
import { SampleSettings } from './samples.js';
import { TomlEditor } from './toml.js';

const TABS = [['config', 'Configuration'], ['toml', 'TOML'], ['monitor', 'Monitor']];
let schemaCache = null;

// Where a run just queued stands: starting at once, or why it waits.
async function startedToast(jobId) {
  let entry = null;
  try { entry = (await api('queue')).jobs.find((j) => j.job_id === jobId); } catch (_) { /* the monitor shows the state */ }
  const waits = entry && !entry.waiting_reason.startsWith('starts on the next');
  toast(waits ? `Queued: ${entry.waiting_reason}.` : 'Starting the run.', 'ok');
}

export async function renderTask(container, route, scope) {
  const id = route.parts[0];
  const [task, schema, models, datasets] = await Promise.all([
    api(`tasks/${encodeURIComponent(id)}`, { signal: scope.signal }),
    schemaCache || api('schema/config').then((s) => { schemaCache = s; return s; }),
    api('models', { signal: scope.signal }), api('datasets', { signal: scope.signal })]);
  const page = new TaskPage(container, { task, schema, models: models.models, datasets: datasets.datasets, scope });
  page.show(route.query.get('tab') || (trainJobs(task).length ? 'monitor' : 'config'), route.query.get('job'));
  page.draft.validate();
  scope.poll(() => page.refresh(), 3000);
}

class TaskPage {
  constructor(container, { task, schema, models, datasets, scope }) {
    Object.assign(this, { task, schema, models, datasets, scope });
    this.panels = {};
    this.issues = [];
    this.draft = new Draft(task, {
      onChange: (t) => this.changed(t),
      onIssues: (issues) => this.showIssues(issues),
      onStatus: (text, kind) => { this.saveStatus.textContent = text; this.saveStatus.className = `save-status ${kind}`; },
      onError: (err) => this.saveError(err),
    });
    scope.add(() => this.draft.close());
    scope.add(() => this.closeMonitor());             // the monitor polls in a scope of its own
    scope.on(window, 'pagehide', () => this.draft.close());
    this.saveStatus = h('span.save-status', { role: 'status' });
    this.title = h('h1.task-name');
    this.stateBox = h('span.task-state');
    this.startBtn = h('button.primary#start-task', { type: 'button', onclick: () => this.start() }, 'Start');
    this.tabBar = h('div.tabs', { role: 'tablist', 'aria-label': 'Task views' }, TABS.map(([key, label]) => h('button.tab', {
      type: 'button', role: 'tab', id: `tab-${key}`, dataset: { tab: key }, onclick: () => this.show(key),
      onkeydown: (e) => this.tabKey(e, key),
    }, label)));
    this.body = h('div.tab-body');
    fill(container,
      h('nav.crumbs', h('a', { href: '#/training' }, '← Tasks')),
      h('div.task-header',
        h('div.task-title', this.title, h('button.icon', { type: 'button', title: 'Rename', 'aria-label': 'Rename the task',
          onclick: () => this.rename() }, '✎'), this.stateBox),
        h('div.row.task-actions', this.saveStatus, this.startBtn,
          h('button', { type: 'button', onclick: () => this.copy() }, 'Copy'),
          h('button', { type: 'button', onclick: () => this.remove() }, 'Delete'))),
      this.tabBar, this.body);
    this.renderHeader();
  }

  renderHeader() {
    const t = this.task;
    this.title.textContent = t.name;
    this.title.title = t.id;
    document.title = `${t.name} · ODEO Studio`;
    const variant = t.model && t.model.variant ? t.model.variant.id : null;
    fill(this.stateBox, badge(t.state), t.name !== t.id ? h('span.muted', t.id) : null,
      variant ? h('span.chip', variant) : null);
    const active = trainJobs(t).some((j) => ACTIVE.includes(j.state));
    this.startBtn.disabled = active || t.deleting;
    this.startBtn.title = active ? 'This task already has a queued or running run' : 'Queue a training run of this configuration';
  }

  tabKey(e, key) {
    const i = TABS.findIndex(([k]) => k === key);
    const next = e.key === 'ArrowRight' ? TABS[(i + 1) % TABS.length] : e.key === 'ArrowLeft' ? TABS[(i + TABS.length - 1) % TABS.length] : null;
    if (!next) return;
    e.preventDefault();
    this.show(next[0]);
    this.tabBar.querySelector(`[data-tab="${next[0]}"]`).focus();
  }

  show(tab, jobId = null) {
    if (!TABS.some(([k]) => k === tab)) tab = 'config';
    this.tab = tab;
    setQuery({ tab, job: tab === 'monitor' ? jobId || this.jobId || null : null });
    for (const b of this.tabBar.children) {
      const on = b.dataset.tab === tab;
      b.setAttribute('aria-selected', on);
      b.tabIndex = on ? 0 : -1;
    }
    if (this.monitorScope && tab !== 'monitor') this.closeMonitor();
    for (const [k, panel] of Object.entries(this.panels)) panel.hidden = k !== tab;
    if (tab === 'monitor') this.openMonitor(jobId);
    else if (!this.panels[tab]) this.body.append(this.panels[tab] = tab === 'config' ? this.buildForm() : this.buildToml());
    this.refreshPanels();
  }

  buildForm() {
    this.form = new ConfigForm({ schema: this.schema, models: this.models, datasets: this.datasets, draft: this.draft,
      onProblems: () => this.refreshPanels() });
    this.form.update(this.task);
    this.form.showIssues(this.issues);
    return h('div.tab-panel', { role: 'tabpanel', 'aria-labelledby': 'tab-config' }, this.form.el,
      new SampleSettings({ taskId: this.task.id }).el,
      estimateCard(this.scope, estimateFromForm(this.task.form || {}, this.models)));   // preset from the task as opened
  }

  buildToml() {
    const make = (which, title, file) => new TomlEditor({ title, file, text: this.task.toml[which],
      onInput: (text) => this.draft.setToml(which, text) });
    this.editors = { main: make('main', 'Training', 'config.toml'), dataset: make('dataset', 'Dataset', 'dataset.toml') };
    for (const e of Object.values(this.editors)) e.setIssues(this.issues);
    return h('div.tab-panel', { role: 'tabpanel', 'aria-labelledby': 'tab-toml' },
      h('p.muted', 'The draft as the trainer reads it. Edits here and in the form are the same draft; output_dir and the dataset path are set when a run starts.'),
      this.exportLinks(),
      h('div.toml-grid', this.editors.main.el, this.editors.dataset.el));
  }

  // The draft as two files (diffusion-pipe's dialect): the main config names the dataset file beside it.
  exportLinks() {
    const link = (which, label) => h('a.button.small.export-toml', { href: fileUrl(`tasks/${encodeURIComponent(this.task.id)}/toml/${which}`),
      download: '', dataset: { which } }, label);
    return h('div.row.export-links', h('span.muted', 'Export (saved draft):'),
      link('main', 'Download config.toml'), link('dataset', 'Download dataset.toml'));
  }

  openMonitor(jobId) {
    const jobs = trainJobs(this.task);        // inference jobs are listed apart, in the monitor
    const id = jobId && jobs.some((j) => j.id === jobId) ? jobId : jobs.length ? jobs[jobs.length - 1].id : null;
    if (this.monitor && this.monitor.jobId === id) {
      this.panels.monitor.hidden = false;
      return;
    }
    this.closeMonitor();
    if (this.panels.monitor) this.panels.monitor.remove();
    this.jobId = id;
    setQuery({ tab: 'monitor', job: id });
    const panel = this.panels.monitor = h('div.tab-panel', { role: 'tabpanel', 'aria-labelledby': 'tab-monitor' });
    this.body.append(panel);
    if (!id) {
      panel.append(h('div.empty', h('p', 'This task has not run yet.'),
        h('p.muted', 'Check the configuration, then press Start. Progress, the loss chart, the log and the saved LoRAs appear here.'),
        h('button.primary', { type: 'button', onclick: () => this.start() }, 'Start')));
      return;
    }
    this.monitorScope = makeScope();
    this.monitor = new Monitor({ task: this.task, jobId: id, scope: this.monitorScope,
      onJob: (next, created) => this.selectJob(next, created), onState: () => this.refresh().catch(() => {}) });
    panel.append(this.monitor.el);
    this.monitor.start();
  }

  closeMonitor() {
    if (this.monitorScope) this.monitorScope.close();
    this.monitorScope = null;
    this.monitor = null;
  }

  async selectJob(id, created = false) {
    if (created) await this.refresh();
    this.jobId = id;
    this.closeMonitor();
    this.show('monitor', id);
  }

  refreshPanels() {
    const counts = { config: this.form ? this.form.problems().length : this.issues.filter((i) => i.field).length,
      toml: this.issues.length };
    for (const b of this.tabBar.children) {
      const n = counts[b.dataset.tab];
      b.textContent = TABS.find(([k]) => k === b.dataset.tab)[1];
      if (n) b.append(h('span.count.bad', { title: `${n} problem${n > 1 ? 's' : ''}` }, String(n)));
    }
  }

  // A new task record: from a save, a reload, or a poll.
  changed(task) {
    this.task = task;
    this.renderHeader();
    if (this.form) this.form.update(task);
    if (this.editors) {
      this.editors.main.setText(task.toml.main);
      this.editors.dataset.setText(task.toml.dataset);
    }
    if (this.monitor) this.monitor.setTask(task);
  }

  showIssues(issues) {
    this.issues = issues;
    if (this.form) this.form.showIssues(issues);
    if (this.editors) for (const e of Object.values(this.editors)) e.setIssues(issues);
    this.refreshPanels();
  }

  saveError(err) {
    if (err.status === 409 && err.field === 'if_revision') {
      const reload = h('button', { type: 'button', onclick: () => this.draft.reload().catch(showError) }, 'Reload');
      toast(h('span', 'This task was changed in another window; your last edit was not saved. ', reload), 'error', 15000);
      return;
    }
    if (!(this.form && this.form.showError(err))) showError(err, 'Not saved');
  }

  async refresh() {
    const task = await api(`tasks/${encodeURIComponent(this.task.id)}`, { signal: this.scope.signal });
    if (!this.draft.adopt(task)) {
      // edits in flight here: keep the draft, take the rest (state, jobs, name)
      this.task = { ...task, toml: this.draft.task.toml, form: this.draft.task.form, revision: this.draft.task.revision };
      this.renderHeader();
      if (this.monitor) this.monitor.setTask(this.task);
    }
    const latest = trainJobs(task).at(-1);
    if (this.tab === 'monitor' && !this.monitor && latest) this.openMonitor(latest.id);
  }

  async start() {
    try {
      await this.draft.flush();
      await this.draft.validate();
    } catch (e) {
      showError(e);
      return;
    }
    if (this.blockStart()) return;
    const devices = await askDevices(this.task.resources);
    if (!devices) return;
    try {
      const job = await api(`tasks/${encodeURIComponent(this.task.id)}/start`, { method: 'POST', body: devices });
      await this.selectJob(job.id, true);
      startedToast(job.id);
    } catch (e) {
      if (e.details && e.details.issues) {
        this.showIssues(e.details.issues);
        this.show(e.details.issues.some((i) => i.field) ? 'config' : 'toml');
        showError(`Not started: the configuration has ${e.details.issues.length} problem(s), shown next to the fields.`);
      } else {
        showError(e, 'Not started');
      }
    }
  }

  // Problems in the form or the TOML: shown where they are, and nothing starts (the dialog stays closed).
  blockStart() {
    const local = this.form ? this.form.problems().filter((n) => !this.issues.some((i) => i.field === n)).length : 0;
    const n = this.issues.length + local;
    if (!n) return false;
    const inForm = local > 0 || this.issues.some((i) => i.field);
    this.show(inForm ? 'config' : 'toml');
    if (inForm && this.form) this.form.revealProblem();
    showError(`Not started: the configuration has ${n} problem${n > 1 ? 's' : ''}, marked ${inForm ? 'next to the fields' : 'in the TOML'}.`);
    return true;
  }

  async rename() {
    const t = await renameTask(this.task);
    if (t) {
      this.draft.task = { ...this.draft.task, revision: t.revision, name: t.name };
      this.changed({ ...this.task, name: t.name, revision: t.revision });
    }
  }

  async copy() {
    const t = await copyTask(this.task);
    if (t) navigate(`#/training/${encodeURIComponent(t.id)}?tab=config`);
  }

  async remove() {
    const out = await deleteTask(this.task);
    if (out) navigate('#/training');
  }
}
