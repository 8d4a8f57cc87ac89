// The configuration form's evaluation fields: which data the eval loss is measured on (a dataset of the Data
// area, evaluated with its own dataset.toml: one without is named as a problem of the field when validated, or a held-out share of the training set: the dataset key
// eval_split), and a warning when "Evaluate every n ..." is set with nothing to evaluate.
//
//   WIDGETS gets ...EVAL_WIDGETS;  fillEvalDatasets(select, current, datasets);  showEvalWarning(form)

import { fill, h } from '../ui.js';

export const EVAL_FIELDS = ['eval_dataset', 'eval_split'];

export const EVAL_WIDGETS = {
  eval_dataset: { label: 'Eval dataset', type: 'evaldataset' },
  eval_split: { label: 'Hold out for evaluation', type: 'float', placeholder: 'share, e.g. 0.1 (none)' },
};

const EVERY = ['eval_every_n_epochs', 'eval_every_n_steps'];

export function fillEvalDatasets(select, current, datasets) {
  const options = [h('option', { value: '' }, 'none (or the held-out share below)'),
    ...datasets.map((d) => h('option', { value: d.name, disabled: d.has_config === false && d.name !== current },
      `${d.name} (${d.videos} videos, ${d.images} images)${d.has_config === false ? ': give it buckets in the Data area first' : ''}`))];
  if (current && !datasets.some((d) => d.name === current)) options.push(h('option', { value: current }, `${current} (not found)`));
  fill(select, ...options);
  select.value = current || '';
}

// What the form would evaluate: null when fine, else the warning shown under the "every n" fields.
export function evalProblem(values) {
  const every = EVERY.find((n) => values[n] !== '' && values[n] !== null && values[n] !== undefined);
  if (!every) return null;
  const split = Number(values.eval_split);
  if (values.eval_dataset || (Number.isFinite(split) && split > 0)) return null;
  return 'Nothing to evaluate: choose an eval dataset, or hold out a share of the training set (e.g. 0.1). '
    + 'Without one no eval loss is measured.';
}

export function showEvalWarning(form) {
  const values = {};
  for (const n of [...EVERY, ...EVAL_FIELDS]) {
    if (!form.fields.has(n)) return;
    values[n] = form.control(n).value.trim();
  }
  const message = evalProblem(values);
  for (const n of EVERY) {
    const f = form.fields.get(n);
    let note = f.wrap.querySelector('.eval-warning');
    if (!note) {
      note = h('div.notice.warn.eval-warning', { role: 'status' });
      f.wrap.append(note);
    }
    note.hidden = !message || !values[n];
    note.textContent = message || '';
  }
}
