// A task's draft as the task page edits it: form fields and TOML texts are saved as the user types
// (debounced PATCH with if_revision, one request at a time), then checked (POST validate).
//
//   const draft = new Draft(task, { onChange, onIssues, onStatus, onError });
//   draft.setForm('epochs', 4);  draft.setToml('main', text);
//   await draft.flush();         // before starting: everything typed is saved
//
// onChange(task) after every save or reload; onIssues(issues) after every validation; onStatus(text,
// kind) for the save indicator; onError(err) when a save is refused (err.field names the form field).

import { api } from '../api.js';
import { debounce } from '../ui.js';

const SAVE_MS = 600;

export class Draft {
  constructor(task, { onChange = () => {}, onIssues = () => {}, onStatus = () => {}, onError = () => {} } = {}) {
    this.task = task;
    this.issues = [];
    this.hooks = { onChange, onIssues, onStatus, onError };
    this.pending = { form: {}, toml: {} };
    this.saving = null;             // the PATCH in flight
    this.conflict = false;
    this.closed = false;
    this.save = debounce(() => this.send(), SAVE_MS);
    this.validating = null;
    this.revalidate = false;
  }

  setForm(name, value) {
    this.pending.form[name] = value;
    this.changed();
  }

  setToml(which, text) {
    this.pending.toml[which] = text;
    this.changed();
  }

  changed() {
    if (this.conflict) return;
    this.hooks.onStatus('Unsaved changes', 'pending');
    this.save();
  }

  hasPending() {
    return Object.keys(this.pending.form).length > 0 || Object.keys(this.pending.toml).length > 0;
  }

  // Save now what is pending and wait for it (and for a save already in flight).
  async flush() {
    this.save.cancel();
    while (this.saving || (this.hasPending() && !this.conflict)) {
      if (this.saving) await this.saving.catch(() => {});
      else await this.send();
    }
    if (this.conflict) throw new Error('This task was changed elsewhere; reload it before starting.');
  }

  async send({ keepalive = false } = {}) {
    if (this.closed || this.conflict || !this.hasPending()) return;
    if (this.saving && !keepalive) {      // one at a time: the next save follows this one
      await this.saving.catch(() => {});
      return this.send();
    }
    const body = { if_revision: this.task.revision };
    if (Object.keys(this.pending.form).length) body.form = this.pending.form;
    if (Object.keys(this.pending.toml).length) body.toml = this.pending.toml;
    this.pending = { form: {}, toml: {} };
    this.hooks.onStatus('Saving…', 'pending');
    this.saving = api(`tasks/${encodeURIComponent(this.task.id)}`, { method: 'PATCH', body, keepalive });
    try {
      const task = await this.saving;
      this.saving = null;
      if (this.closed) return;
      this.task = task;
      this.hooks.onChange(task, { saved: true });
      if (!this.hasPending()) this.hooks.onStatus('All changes saved', 'ok');
      this.validate();
    } catch (err) {
      this.saving = null;
      if (this.closed) return;
      if (err.status === 409 && err.field === 'if_revision') {
        this.conflict = true;
        this.hooks.onStatus('Changed elsewhere: reload to go on editing', 'bad');
      } else {
        this.hooks.onStatus('Not saved', 'bad');
      }
      this.hooks.onError(err, body);
    }
  }

  // Re-read the task from the studio (after a conflict: what is pending is dropped).
  async reload() {
    this.save.cancel();
    this.pending = { form: {}, toml: {} };
    this.conflict = false;
    this.task = await api(`tasks/${encodeURIComponent(this.task.id)}`);
    this.hooks.onChange(this.task, { reloaded: true });
    this.hooks.onStatus('', 'ok');
    return this.validate();
  }

  // Validation runs after each save; calls that come while one runs fold into one more.
  async validate() {
    if (this.validating) {
      this.revalidate = true;
      return this.validating;
    }
    this.validating = (async () => {
      do {
        this.revalidate = false;
        try {
          const out = await api(`tasks/${encodeURIComponent(this.task.id)}/validate`, { method: 'POST' });
          this.issues = out.issues;
          this.variant = out.variant;
          if (!this.closed) this.hooks.onIssues(out.issues, out);
        } catch (err) {
          if (!this.closed) this.hooks.onError(err);
        }
      } while (this.revalidate && !this.closed);
      this.validating = null;
    })();
    return this.validating;
  }

  // The task record changed on the studio (a poll saw a new revision) while nothing is being edited here.
  adopt(task) {
    if (this.saving || this.hasPending() || this.save.pending() || task.revision === this.task.revision) return false;
    this.task = task;
    this.hooks.onChange(task, { external: true });
    this.validate();
    return true;
  }

  // Leaving the view (or the page): what is still pending is sent at once, and outlives the page.
  close() {
    this.save.cancel();
    if (this.hasPending()) this.send({ keepalive: true }).catch(() => {});
    this.closed = true;
  }
}
