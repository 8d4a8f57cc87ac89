// Captions tab: bulk prefix / suffix / find-and-replace (preview count first, then apply) and
// auto-captioning with a vision-language model as a queued job, with its progress and a stop button.
import { api } from '../api.js';
import { h, append, badge, clear, confirmDialog, fieldRow, fill, poll, showError, toast, formatTime } from '../ui.js';
import { dsApi } from './common.js';

export default async function captionsTab(container, dataset, route) {
  container.append(bulkTools(dataset, route.query.get('q') || ''));
  const stop = await autoCaption(container, dataset);
  return stop;
}

function bulkTools(dataset, q) {
  const op = h('select', { 'aria-label': 'Bulk operation' },
    h('option', { value: 'prefix' }, 'Add a prefix'), h('option', { value: 'suffix' }, 'Add a suffix'),
    h('option', { value: 'replace' }, 'Find and replace'));
  const text = h('input', { type: 'text', placeholder: 'e.g. sks style, ', 'aria-label': 'Text to add' });
  const find = h('input', { type: 'text', placeholder: 'find', 'aria-label': 'Find' });
  const repl = h('input', { type: 'text', placeholder: 'replace with', 'aria-label': 'Replace with' });
  const regex = h('input', { type: 'checkbox' });
  const caseSensitive = h('input', { type: 'checkbox', checked: true });
  const scope = h('input', { type: 'search', value: q, placeholder: 'all captions', 'aria-label': 'Only captions matching' });
  const replaceRow = h('div.row', fieldRow('Find', find), fieldRow('Replace with', repl),
    h('label.row', regex, 'regular expression'), h('label.row', caseSensitive, 'match case'));
  const textRow = fieldRow('Text', text);
  const result = h('div.bulk-result');
  const preview = h('button', { type: 'button' }, 'Preview');
  const apply = h('button.primary', { type: 'button', disabled: true }, 'Apply');
  const request = (applyIt) => ({ op: op.value, text: text.value, find: find.value, replace: repl.value, regex: regex.checked,
    case: caseSensitive.checked, q: scope.value.trim() || undefined, apply: applyIt });
  const showMode = () => { replaceRow.hidden = op.value !== 'replace'; textRow.hidden = op.value === 'replace'; apply.disabled = true; clear(result); };
  op.addEventListener('change', showMode);
  [text, find, repl, regex, caseSensitive, scope].forEach((el) => el.addEventListener('input', () => { apply.disabled = true; }));
  showMode();
  preview.addEventListener('click', async () => {
    try {
      const res = await dsApi(dataset, '/captions/bulk', { method: 'POST', body: request(false) });
      append(clear(result), [
        h('p', { class: 'bulk-count' }, `${res.matched} caption(s) would change`, res.skipped.length ? ` · ${res.skipped.length} skipped (no caption, or from a table)` : ''),
        res.preview.length ? h('table.bulk-preview', h('thead', h('tr', h('th', 'File'), h('th', 'Before'), h('th', 'After'))),
          h('tbody', res.preview.map((p) => h('tr', h('td', p.file), h('td', p.before), h('td', p.after))))) : null]);
      apply.disabled = res.matched === 0;
      apply.textContent = `Apply to ${res.matched} caption(s)`;
    } catch (e) { showError(e, 'Bulk edit'); }
  });
  apply.addEventListener('click', async () => {
    apply.disabled = true;
    try {
      const res = await dsApi(dataset, '/captions/bulk', { method: 'POST', body: request(true) });
      toast(`${res.changed} caption(s) changed`, 'ok');
      clear(result).append(h('p', `${res.changed} caption(s) changed.`));
    } catch (e) { showError(e, 'Bulk edit'); }
  });
  return h('section.card.bulk', h('h2', 'Edit many captions'),
    h('div.row', fieldRow('Change', op), textRow, fieldRow('Only captions containing', scope)), replaceRow,
    h('div.row', preview, apply), result);
}

async function autoCaption(container, dataset) {
  const defaults = await api('captioning');
  const models = h('select', { 'aria-label': 'Captioning model' },
    defaults.models.map((m) => h('option', { value: m.path }, `${m.name} (${m.model_type})`)),
    h('option', { value: '' }, 'another folder…'));
  const path = h('input', { type: 'text', placeholder: '/path/to/Qwen2.5-VL-7B-Instruct', 'aria-label': 'Model folder' });
  const pathRow = fieldRow('Model folder (inside a model root)', path);
  const showPath = () => { pathRow.hidden = Boolean(models.value); };
  models.addEventListener('change', showPath);
  showPath();
  const prompt = h('textarea', { rows: 4, 'aria-label': 'Instruction prompt' });
  prompt.value = defaults.prompt;
  const overwrite = h('select', { 'aria-label': 'Which files' },
    h('option', { value: 'none' }, 'only files without a caption'),
    h('option', { value: 'machine' }, 'also replace captions a model wrote'),
    h('option', { value: 'all' }, 'all files, replacing captions people wrote too'));
  const frames = h('input', { type: 'number', min: 1, max: 16, value: defaults.frames, 'aria-label': 'Frames per video' });
  const tokens = h('input', { type: 'number', min: 1, max: 2048, value: defaults.max_new_tokens, 'aria-label': 'Longest caption (tokens)' });
  const start = h('button.primary', { type: 'button' }, 'Start captioning');
  const jobs = h('div.caption-jobs');
  start.addEventListener('click', async () => {
    if (overwrite.value === 'all' && !await confirmDialog('Replace the captions people wrote as well?', { confirm: 'Replace them', danger: true })) return;
    try {
      await dsApi(dataset, '/caption-jobs', { method: 'POST', body: { model_path: models.value || path.value.trim(), prompt: prompt.value,
        overwrite: overwrite.value, frames: Number(frames.value), max_new_tokens: Number(tokens.value) } });
      toast('Captioning queued', 'ok');
      refresh();
    } catch (e) { showError(e, 'Auto-caption'); }
  });
  container.append(h('section.card.autocaption', h('h2', 'Auto-caption'),
    h('p.muted', 'A vision-language model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL or Florence-2, as saved by transformers) looks at a few frames of each clip and writes its caption. It runs as a job on a free GPU (on the CPU when there is none). Captions a person wrote are kept unless you choose otherwise.'),
    h('div.row', fieldRow('Model', models), pathRow),
    fieldRow('Instruction ({kind} becomes video or image)', prompt),
    h('div.row', fieldRow('Caption', overwrite), fieldRow('Frames per video', frames), fieldRow('Longest caption (tokens)', tokens), start),
    jobs));

  let shown = '';
  async function refresh() {
    const res = await dsApi(dataset, '/caption-jobs');
    const recent = res.jobs.slice(0, 5);
    const sig = JSON.stringify(recent);
    if (sig === shown) return;                  // nothing changed: the rows stay as they are
    shown = sig;
    fill(jobs, recent.map(jobRow));
  }
  function jobRow(job) {
    const p = job.progress;
    const live = ['queued', 'running', 'stopping'].includes(job.state);
    const stopIt = async () => { try { await api(`jobs/${job.id}/stop`, { method: 'POST', body: {} }); refresh(); } catch (e) { showError(e, 'Stop'); } };
    return h('div.caption-job', { dataset: { job: job.id, state: job.state } },
      h('div.row', badge(job.state), h('strong', job.caption.model_path.split('/').pop()),
        h('span.muted', formatTime(job.created_at)), h('span.grow'), live ? h('button', { type: 'button', onclick: stopIt }, 'Stop') : null),
      h('progress', { max: p ? p.total_steps : job.caption.files, value: p ? p.step : 0 }),
      h('div.muted', p ? `${p.step} of ${p.total_steps} · ${p.written} written, ${p.skipped} skipped, ${p.failed} failed${live && p.eta_s ? ` · about ${Math.round(p.eta_s)} s left` : ''}`
        : (job.status && job.status.message) || job.message || 'waiting for a device'),
      job.state === 'failed' ? h('div.error', (job.status && job.status.message) || job.message) : null);
  }
  return poll(refresh, 1500);
}
