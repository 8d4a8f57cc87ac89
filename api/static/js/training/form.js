// The configuration form: one input per form field of GET /schema/config, grouped, with the default
// and the doc of its TOML key as hints. Edits go to the Draft (saved as you type); validation issues
// are shown next to the field they name, issues with no field in a list above the form.
//
//   const form = new ConfigForm({ schema, models, datasets, draft, onProblems });
//   container.append(form.el);  form.update(task);  form.showIssues(issues);
//   form.problems()            // fields with a problem: typed here (never saved) or found by the studio
//
// A value that cannot be saved as typed (not a number, below the minimum) stays in its field, marked,
// and counts as a problem (onProblems() is called when that set changes); the draft keeps its last value
// and the task page does not start while any problem is shown.

import { fill, h } from '../ui.js';
import { TARGET_FIELDS, TARGET_WIDGETS, offerNote, parseObject } from './targets.js';
import { EVAL_FIELDS, EVAL_WIDGETS, fillEvalDatasets, showEvalWarning } from './evalform.js';

// Field name -> how it is edited. type: int | float | text | list | choice | model | dataset.
const WIDGETS = {
  model_path: { label: 'Model checkpoint', type: 'model' },
  transformer_path: { label: 'Transformer file or folder', type: 'text', placeholder: 'optional: a fine-tuned or ComfyUI transformer' },
  expert: { label: 'Expert (Wan2.2 A14B)', type: 'choice' },
  transformer_dtype: { label: 'Transformer dtype', type: 'choice' },
  dataset: { label: 'Dataset', type: 'dataset' },
  num_repeats: { label: 'Repeats per epoch', type: 'int', min: 1 },
  resolutions: { label: 'Resolutions', type: 'list', placeholder: 'e.g. 512, 768 or [[832, 480]]' },
  frame_buckets: { label: 'Frame buckets', type: 'list', placeholder: 'e.g. 1, 33, 81' },
  epochs: { label: 'Epochs', type: 'int', min: 1 },
  max_steps: { label: 'Max steps', type: 'int', min: 1 },
  micro_batch_size: { label: 'Micro batch per GPU', type: 'int', min: 1 },
  gradient_accumulation_steps: { label: 'Gradient accumulation', type: 'int', min: 1 },
  seed: { label: 'Seed', type: 'int', min: 0 },
  optimizer: { label: 'Optimizer', type: 'text',
    suggestions: ['adamw', 'adamw_optimi', 'adamw8bit', 'AdamW8bitKahan', 'prodigy', 'sgd'] },
  learning_rate: { label: 'Learning rate', type: 'float', placeholder: 'e.g. 2e-5',
    help: 'how far each optimizer step moves the LoRA weights; 1e-4 to 2e-5 is usual, lower is slower and safer' },
  lr_scheduler: { label: 'LR schedule', type: 'choice' },
  warmup_steps: { label: 'Warm-up steps', type: 'int', min: 0 },
  lora_rank: { label: 'LoRA rank', type: 'int', min: 1,
    help: 'size of the low-rank matrices: higher learns more detail and makes bigger files (16-64 is usual)' },
  save_every_n_epochs: { label: 'Save LoRA every n epochs', type: 'int', min: 1 },
  save_every_n_steps: { label: 'Save LoRA every n steps', type: 'int', min: 1 },
  checkpoint_every_n_epochs: { label: 'Checkpoint every n epochs', type: 'int', min: 1 },
  checkpoint_every_n_minutes: { label: 'Checkpoint every n minutes', type: 'int', min: 1 },
  eval_every_n_epochs: { label: 'Evaluate every n epochs', type: 'int', min: 1 },
  eval_every_n_steps: { label: 'Evaluate every n steps', type: 'int', min: 1 },
  gpus: { label: 'GPUs', type: 'int', min: 1 },
  gpu_ids: { label: 'GPU ids', type: 'list', placeholder: 'optional, e.g. 0, 1 (overrides the count)' },
  pipeline_stages: { label: 'Pipeline stages', type: 'int', min: 1 },
  activation_checkpointing: { label: 'Activation checkpointing', type: 'choice', choices: [true, false, 'unsloth'] },
  blocks_to_swap: { label: 'Blocks to swap', type: 'int', min: 0 },
  ...TARGET_WIDGETS,
  lora_alpha: { label: 'LoRA alpha', type: 'float', min: 0, exclusiveMin: true, placeholder: 'the rank',
    help: 'scales the LoRA by alpha / rank; empty: equal to the rank (scale 1)' },
  timestep_sample_method: { label: 'Timestep sampling', type: 'choice',
    help: 'logit_normal favours middle timesteps; uniform draws every timestep equally often' },
  shift: { label: 'Timestep shift', type: 'float', min: 0, exclusiveMin: true, placeholder: 'none',
    help: 'moves training timesteps towards noise (t·s / (1 + (s−1)·t)); empty: no shift' },
  min_t: { label: 'Lowest timestep', type: 'float', min: 0, max: 1, help: '0 = clean image; raise it to train only noisier steps' },
  expert_sampling: { label: 'Expert sampling (Wan2.2 A14B)', type: 'choice',
    help: "timestep: each sample trains the expert its timestep falls to (the high-noise one gets few); balanced: each expert half the samples" },
  max_t: { label: 'Highest timestep', type: 'float', min: 0, max: 1, help: '1 = pure noise; lower it to train only cleaner steps' },
  ...EVAL_WIDGETS,
};

// Settings most runs leave alone: shown folded under "Advanced".
const ADVANCED = ['Advanced', ['lora_alpha', 'timestep_sample_method', 'shift', 'min_t', 'max_t', 'expert_sampling']];

const GROUPS = [
  ['Model', ['model_path', 'transformer_path', 'expert', 'transformer_dtype']],
  ['Data', ['dataset', 'num_repeats', 'resolutions', 'frame_buckets']],
  ['Training', ['epochs', 'max_steps', 'micro_batch_size', 'gradient_accumulation_steps', 'seed']],
  ['Optimizer', ['optimizer', 'learning_rate', 'lr_scheduler', 'warmup_steps', 'lora_rank']],
  ['Saving and evaluation', ['save_every_n_epochs', 'save_every_n_steps', 'checkpoint_every_n_epochs',
    'checkpoint_every_n_minutes', 'eval_every_n_epochs', 'eval_every_n_steps', ...EVAL_FIELDS]],
  ['GPUs and memory', ['gpus', 'gpu_ids', 'pipeline_stages', 'activation_checkpointing', 'blocks_to_swap']],
  ['Where it trains', TARGET_FIELDS],
];

// The config-key description of a form field: its TOML key mapped to GET /schema/config `keys`.
function keyInfo(field, keys) {
  const parts = field.key.split('.').filter((p) => !/^\d+$/.test(p));
  const key = parts.pop();
  let section = parts.join('.');
  if (field.file === 'dataset') section = section ? `dataset.${section}` : 'dataset';
  return keys.find((k) => k.section === section && k.key === key) || null;
}

function show(value) {
  if (value === null || value === undefined) return '';
  if (Array.isArray(value)) return value.every((v) => typeof v === 'number') ? value.join(', ') : JSON.stringify(value);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// Text of a list field -> array; throws a readable message.
function parseList(text) {
  const t = text.trim();
  if (!t) return null;
  if (t.startsWith('[')) {
    let v;
    try { v = JSON.parse(t); } catch (_) { throw new Error('write numbers separated by commas, or a JSON list'); }
    if (!Array.isArray(v)) throw new Error('must be a list');
    return v;
  }
  return t.split(/[\s,]+/).filter(Boolean).map((p) => {
    const n = Number(p);
    if (!Number.isFinite(n)) throw new Error(`${p} is not a number`);
    return n;
  });
}

function checkRange(w, n) {
  if (w.min !== undefined && (w.exclusiveMin ? n <= w.min : n < w.min)) {
    throw new Error(w.exclusiveMin ? `must be more than ${w.min}` : `must be at least ${w.min}`);
  }
  if (w.max !== undefined && n > w.max) throw new Error(`must be at most ${w.max}`);
}

// The help under a field: its own text, else the config key's doc unless that only repeats the label.
function helpText(w, doc) {
  if (w.help) return w.help;
  const norm = (t) => String(t || '').toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim();
  return doc && norm(doc) !== norm(w.label) ? doc : '';
}

// Messages name fields by their label on screen, not by API field or TOML key names.
function labelled(message, fields) {
  let out = String(message || '');
  for (const [name, f] of fields) {
    const key = f.key ? f.key.split('.').pop() : null;
    for (const word of new Set([name, key].filter((k) => k && k.includes('_')))) {
      out = out.replace(new RegExp(`\\b${word}\\b`, 'g'), `"${f.w.label}"`);
    }
  }
  return out;
}

function parseValue(w, raw) {
  const t = typeof raw === 'string' ? raw.trim() : raw;
  if (t === '' || t === null) return null;
  if (w.type === 'int') {
    const n = Number(t);
    if (!Number.isInteger(n)) throw new Error('must be a whole number');
    checkRange(w, n);
    return n;
  }
  if (w.type === 'float') {
    const n = Number(t);
    if (!Number.isFinite(n)) throw new Error('must be a number, e.g. 2e-5');
    checkRange(w, n);
    return n;
  }
  if (w.type === 'list') return parseList(t);
  if (w.type === 'json') return parseObject(t);
  if (w.type === 'choice') return JSON.parse(t);          // option values hold JSON (true, "unsloth")
  return t;
}

export class ConfigForm {
  constructor({ schema, models, datasets, draft, onProblems = () => {} }) {
    this.schema = schema;
    this.local = new Map();         // name -> message of a value typed here that cannot be saved
    this.onProblems = onProblems;
    this.models = models;
    this.datasets = datasets;
    this.draft = draft;
    this.fields = new Map();        // name -> {wrap, input, issue, hint, w, file}
    this.general = h('div.form-issues', { role: 'alert' });
    this.fileNote = h('div.notice.bad', { hidden: true });
    this.el = h('form.config-form', { onsubmit: (e) => e.preventDefault(), novalidate: true },
      this.fileNote, this.general, ...this.groups());
  }

  groups() {
    const known = new Map(this.schema.form_fields.map((f) => [f.name, f]));
    const placed = new Set([...GROUPS, ADVANCED].flatMap(([, names]) => names));
    const extra = this.schema.form_fields.map((f) => f.name).filter((n) => !placed.has(n));
    const groups = extra.length ? [...GROUPS, ['Other', extra]] : GROUPS;
    return [...groups.map(([title, names]) => h('fieldset.form-group', {},
      h('legend', title),
      h('div.form-grid', names.filter((n) => known.has(n)).map((n) => this.field(known.get(n)))))),
    this.advancedGroup(known)];
  }

  advancedGroup(known) {
    const [title, names] = ADVANCED;
    const here = names.filter((n) => known.has(n));
    if (!here.length) return null;
    this.advanced = h('details.form-group.advanced', {}, h('summary', title),
      h('div.form-grid', here.map((n) => this.field(known.get(n)))));
    return this.advanced;
  }

  field(f) {
    const w = WIDGETS[f.name] || { label: f.name, type: 'text' };
    const info = keyInfo(f, this.schema.keys);
    const id = `f-${f.name}`;
    const input = this.input(f, w, info, id);
    const hintText = [helpText(w, info && info.doc ? info.doc : f.doc),
      info && info.default !== null && info.default !== undefined && info.default !== 'required' && w.type !== 'choice'
        ? `default ${show(info.default)}` : null].filter(Boolean).join('; ');
    const hint = h('div.hint', { id: `${id}-hint` }, hintText);
    const issue = h('div.issue', { id: `${id}-issue`, role: 'status' });
    const extra = w.type === 'model' ? h('div.hint.variant', { id: `${id}-variant` }) : null;
    input.setAttribute('aria-describedby', `${id}-hint ${id}-issue`);
    const wrap = h('label.field', { dataset: { field: f.name } }, h('span', w.label), input, extra, hint, issue);
    if (w.type === 'model' || w.type === 'dataset' || f.name === 'transformer_path') wrap.classList.add('wide');
    this.fields.set(f.name, { wrap, input, issue, hint, w, file: f.file, key: f.key, extra });
    const send = () => this.changed(f.name);
    input.addEventListener(['choice', 'model', 'dataset', 'evaldataset'].includes(w.type) ? 'change' : 'input', send);
    return wrap;
  }

  input(f, w, info, id) {
    if (w.type === 'choice') {
      const choices = w.choices || (info && info.choices) || [];
      const dflt = info && info.default !== null && info.default !== undefined ? ` (${show(info.default)})` : '';
      return h('select', { id, name: f.name },
        h('option', { value: '' }, `default${dflt}`),
        choices.map((c) => h('option', { value: JSON.stringify(c) }, String(c))));
    }
    if (w.type === 'model') return h('select', { id, name: f.name });
    if (w.type === 'dataset' || w.type === 'evaldataset') return h('select', { id, name: f.name });
    const attrs = { id, name: f.name, type: 'text', autocomplete: 'off', spellcheck: false,
      placeholder: w.placeholder || (info && info.default !== null && info.default !== undefined && info.default !== 'required'
        ? show(info.default) : '') };
    if (w.type === 'int') Object.assign(attrs, { type: 'number', step: 1, min: w.min });
    if (w.type === 'float') attrs.inputmode = 'decimal';
    if (w.suggestions) {
      attrs.list = `${id}-list`;
      return h('div.with-list', h('input', attrs),
        h('datalist', { id: `${id}-list` }, w.suggestions.map((s) => h('option', { value: s }))));
    }
    return h('input', attrs);
  }

  control(name) {
    const f = this.fields.get(name);
    return f.input.matches('input, select') ? f.input : f.input.querySelector('input');
  }

  changed(name) {
    const f = this.fields.get(name);
    let value;
    try {
      value = parseValue(f.w, this.control(name).value);
    } catch (e) {
      this.setLocal(name, e.message);
      return;
    }
    this.setLocal(name, null);
    this.draft.setForm(name, value);
    if (name === 'model_path') this.showVariant(this.task, value);
    showEvalWarning(this);
  }

  // Values from the studio; the field being edited keeps what the user typed.
  update(task) {
    this.task = task;
    const where = (task.resources && task.resources.target) || 'local';
    if (where !== this.shownTarget) {        // what the chosen compute target offers, under its field
      this.shownTarget = where;
      offerNote(this.fields.get('target'), task.resources);
    }
    const bad = new Set((task.form_errors || []).map((file) => (file === 'config.toml' ? 'main' : 'dataset')));
    this.fileNote.hidden = !bad.size;
    this.fileNote.textContent = bad.size
      ? `${[...bad].map((b) => (b === 'main' ? 'config.toml' : 'dataset.toml')).join(' and ')} cannot be read (a TOML syntax error): fix it in the TOML tab; the fields of that file are locked until then.`
      : '';
    for (const [name, f] of this.fields) {
      const control = this.control(name);
      control.disabled = bad.has(f.file);
      if (f.w.type === 'model') this.fillModels(control, task.form[name]);
      else if (f.w.type === 'dataset') this.fillDatasets(control, task.form[name]);
      else if (f.w.type === 'evaldataset') fillEvalDatasets(control, task.form[name], this.datasets);
      if (document.activeElement === control || this.local.has(name)) continue;     // never replace what was typed
      control.value = f.w.type === 'choice'
        ? (task.form[name] === null || task.form[name] === undefined ? '' : JSON.stringify(task.form[name]))
        : show(task.form[name]);
    }
    this.showVariant(task, task.form.model_path);
    showEvalWarning(this);
  }

  fillModels(select, current) {
    const options = this.models.map((m) => h('option', { value: m.path },
      `${m.name}${m.variant ? ` (${m.variant.id})` : m.error ? ' (not usable)' : ''}`));
    if (current && !this.models.some((m) => m.path === current)) {
      options.unshift(h('option', { value: current }, `${current} (not in a model folder)`));
    }
    if (!current) options.unshift(h('option', { value: '' }, this.models.length ? 'choose a model' : 'no model found'));
    fill(select, ...options);
    select.value = current || '';
  }

  fillDatasets(select, current) {
    const options = this.datasets.map((d) => h('option', { value: d.name },
      `${d.name} (${d.videos} videos, ${d.images} images)`));
    if (current && !this.datasets.some((d) => d.name === current)) options.unshift(h('option', { value: current }, `${current} (not found)`));
    if (!current) options.unshift(h('option', { value: '' }, this.datasets.length ? 'choose a dataset' : 'no dataset found'));
    fill(select, ...options);
    select.value = current || '';
  }

  showVariant(task, path) {
    const f = this.fields.get('model_path');
    if (!f || !f.extra) return;
    const m = this.models.find((x) => x.path === path) || (task && task.model && task.model.path === path ? task.model : null);
    const v = m && m.variant;
    f.extra.textContent = v
      ? `Detected: ${v.id} (${v.task}, ${v.framerate} fps, sides a multiple of ${v.size_multiple}${v.experts.length > 1 ? `, experts ${v.experts.join(' + ')}` : ''})`
      : m && m.error ? `Not usable: ${m.error}` : path ? 'Variant not detected' : '';
    f.extra.classList.toggle('error', Boolean(m && m.error));
    const expert = this.fields.get('expert');       // only two-expert models (Wan2.2 A14B) have a choice
    if (expert) expert.wrap.hidden = Boolean(v && v.experts.length < 2 && !(task && task.form.expert));
  }

  serverIssue(name) {
    return labelled((this.issues || []).filter((i) => i.field === name).map((i) => i.message).join('; '), this.fields);
  }

  // A value typed here that cannot be saved (message), or that now can (null).
  setLocal(name, message) {
    const had = this.local.get(name) || null;
    if (message) this.local.set(name, message);
    else this.local.delete(name);
    this.setIssue(name, message || this.serverIssue(name));
    if (had !== (message || null)) this.onProblems();
  }

  // Names of the fields that show a problem (typed here, or found by the studio's validation).
  problems() {
    const names = new Set(this.local.keys());
    for (const i of this.issues || []) if (i.field && this.fields.has(i.field)) names.add(i.field);
    return [...names];
  }

  // The first field with a problem: shown (its group unfolded) and focused.
  revealProblem() {
    const name = this.problems()[0];
    const f = name && this.fields.get(name);
    if (!f) return;
    if (this.advanced && this.advanced.contains(f.wrap)) this.advanced.open = true;
    f.wrap.scrollIntoView({ block: 'center' });
    this.control(name).focus();
  }

  setIssue(name, message) {
    const f = this.fields.get(name);
    if (!f) return false;
    f.issue.textContent = message || '';
    f.wrap.classList.toggle('invalid', Boolean(message));
    return true;
  }

  showIssues(issues) {
    this.issues = issues;
    for (const name of this.fields.keys()) this.setIssue(name, this.local.get(name) || this.serverIssue(name));
    const general = issues.filter((i) => !i.field || !this.fields.has(i.field));
    fill(this.general, general.length ? h('div.notice.bad',
      h('strong', `${general.length} problem${general.length > 1 ? 's' : ''} outside the form:`),
      h('ul', general.map((i) => h('li', `${i.file}: ${i.key === '(syntax)' ? '' : `${i.key}: `}${labelled(i.message, this.fields)} `,
        h('a', { href: `#/training/${encodeURIComponent(this.task.id)}?tab=toml` }, 'show in the TOML editor'))))) : '');
  }

  // A refused save (400 with a field): shown next to that field, else above the form.
  showError(err) {
    if (err.field && this.setIssue(err.field, labelled(err.message, this.fields))) return true;
    return false;
  }
}
