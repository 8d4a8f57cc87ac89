// Batch evaluation of a task (#/inference/<task-id>?tab=batch): a prompt list or an image,prompt CSV made with
// the chosen LoRAs (any run, any epoch; the base model too), spread over several GPUs (or CPU slots), one
// worker each: an `eval` job (POST /tasks/<id>/evaluations). Its results: a table (one row per video: LoRA,
// prompt, image, worker, time) here, and the grid in Results.

import { api, fileUrl } from '../api.js';
import { clear, fieldRow, fill, formatTime, h } from '../ui.js';
import { jobProgress, loraLabel, num, parseNumbers } from './common.js';
import { notifyButton } from '../notify.js';

const PLACEHOLDER = 'One prompt per line, or CSV with a header:\nimage,prompt\nportraits/anna.png,"anna smiles, slowly turning"';

// Text of the rows box -> request fields: CSV when its first line is a header naming `prompt`, else prompts.
function rowsOf(text) {
  const t = String(text || '').trim();
  if (!t) throw new Error('Rows: give at least one prompt (or CSV row)');
  const head = t.split('\n', 1)[0].toLowerCase().split(',').map((s) => s.trim());
  if (head.includes('prompt')) return { csv: t, count: t.split('\n').filter((l) => l.trim()).length - 1 };
  const prompts = t.split('\n').map((s) => s.trim()).filter(Boolean);
  return { prompts, count: prompts.length };
}

export async function batchView(container, ctx) {
  const [settings, own, gpus] = await Promise.all([api(`tasks/${ctx.taskId}/inference`), api(`tasks/${ctx.taskId}/loras`),
    api('gpus').catch(() => null)]);
  const d = settings.defaults;
  if (!d) {
    container.append(h('p.error', 'This task has no usable model yet: choose a model checkpoint in Training first.'));
    return null;
  }
  const devices = gpus && Array.isArray(gpus.devices) ? gpus.devices.length : 1;
  const loraSelect = h('select', { name: 'loras', multiple: true, size: Math.min(8, Math.max(3, own.loras.length + 1)),
    'aria-label': 'LoRAs to evaluate' },
  own.loras.map((l) => h('option', { value: l.id, selected: l.best }, `${l.best ? '★ ' : ''}${loraLabel(l)} · run ${l.job_id}`)));
  const base = h('input', { type: 'checkbox', name: 'base', checked: !own.loras.length });
  const rows = h('textarea', { name: 'rows', rows: 8, placeholder: PLACEHOLDER }, settings.prompts.join('\n'));
  const file = h('input', { type: 'file', accept: '.csv,.txt,text/csv,text/plain', 'aria-label': 'Load a CSV file',
    onchange: async () => { if (file.files[0]) { rows.value = await file.files[0].text(); summary(); } } });
  const inputs = {
    gpus: num('gpus', Math.max(1, devices), { min: 1, max: 64 }),
    strengths: h('input', { name: 'strengths', value: '1.0' }),
    seed: num('seed', 42, { min: 0 }),
    steps: num('steps', d.steps, { min: 1, max: 200 }),
    frames: num('frames', d.frames, { min: 1, step: 4 }),
    width: num('width', '', { step: d.size_multiple, placeholder: 'auto' }),
    height: num('height', '', { step: d.size_multiple, placeholder: 'auto' }),
  };
  const count = h('span.muted.batch-count');
  const error = h('p.error');
  const progress = h('div.inf-jobs');
  const results = h('div.batch-results');
  const submit = h('button.primary', { type: 'submit' }, 'Queue batch evaluation');
  const stops = [];

  function request() {
    const r = rowsOf(rows.value);
    const body = { loras: [...loraSelect.selectedOptions].map((o) => o.value), base: base.checked,
      strengths: parseNumbers(inputs.strengths.value, 'Strengths'), gpus: Number.parseInt(inputs.gpus.value, 10) || 1 };
    if (r.csv) body.csv = r.csv; else body.prompts = r.prompts;
    for (const k of ['seed', 'steps', 'frames', 'width', 'height']) if (inputs[k].value !== '') body[k] = Number.parseInt(inputs[k].value, 10);
    return { body, rows: r.count };
  }

  function summary() {
    try {
      const { body, rows: n } = request();
      const videos = (body.loras.length * body.strengths.length + (body.base ? 1 : 0)) * n;
      count.textContent = `${n} row${n === 1 ? '' : 's'} · ${videos} video${videos === 1 ? '' : 's'} over ${body.gpus} worker${body.gpus === 1 ? '' : 's'}`;
      error.textContent = '';
    } catch (e) { count.textContent = ''; error.textContent = e.message; }
  }

  async function send() {
    let body;
    try { ({ body } = request()); } catch (e) { error.textContent = e.message; return; }
    submit.disabled = true;
    try {
      const job = await api(`tasks/${ctx.taskId}/evaluations`, { method: 'POST', body });
      const p = jobProgress(job.id, () => showResults(job.id));
      stops.push(p.stop);
      progress.prepend(p.el);
      error.textContent = '';
    } catch (e) {
      error.textContent = e.message;
    } finally { submit.disabled = false; }
  }

  async function showResults(jobId) {
    const res = await api(`tasks/${ctx.taskId}/results`);
    const evals = res.jobs.filter((j) => j.kind === 'eval');
    if (!evals.length) { fill(results); return; }
    const job = evals.find((j) => j.id === jobId) || evals[evals.length - 1];
    const cells = res.cells.filter((c) => c.job_id === job.id).sort((a, b) => a.index - b.index);
    fill(results, h('section.card.batch-table',
      h('div.row', h('h2', `Batch evaluation ${job.id}`), h('span.muted', `${job.state} · ${job.done}/${job.total} videos`
        + `${job.workers ? ` · ${job.workers} worker${job.workers === 1 ? '' : 's'}` : ''} · ${formatTime(job.created_at)}`),
      h('a.button', { href: `#/inference/${encodeURIComponent(ctx.taskId)}?tab=results`, onclick: (e) => { e.preventDefault(); ctx.go('results'); } },
        'Open the grid')),
      h('table.compact.batch-results-table', h('thead', h('tr', ['#', 'LoRA', 'Strength', 'Prompt', 'Image', 'Video', 'Worker', 'Seconds', 'Status']
        .map((t) => h('th', t)))),
      h('tbody', cells.map((c) => h('tr', { dataset: { cell: c.id, status: c.status } },
        h('td', c.index + 1), h('td', loraLabel(c.lora)), h('td', c.strength ?? ''), h('td.prompt', c.prompt),
        h('td', c.image || ''),
        h('td', c.video_url ? h('video', { src: fileUrl(c.video_url), poster: c.poster_url ? fileUrl(c.poster_url) : undefined,
          muted: true, loop: true, controls: true, preload: 'metadata', width: 96 }) : ''),
        h('td', c.worker ?? ''), h('td', c.seconds ?? ''), h('td', c.status)))))));
  }

  for (const el of [rows, base, loraSelect, ...Object.values(inputs)]) el.addEventListener('input', summary);
  loraSelect.addEventListener('change', summary);
  container.append(h('form.inf-batch', { onsubmit: (e) => { e.preventDefault(); send(); } },
    h('section.card', h('h2', 'LoRAs'),
      own.loras.length ? fieldRow('LoRAs (several: Ctrl/⌘-click)', loraSelect) : h('p.muted', 'No saved LoRA yet: evaluate the base model, or train first.'),
      h('label.row', base, 'Base model (no LoRA), for comparison')),
    h('section.card', h('h2', 'Rows'),
      fieldRow('Prompts or CSV', rows, d.task === 'i2v' ? 'image,prompt rows; images are gallery paths (folder/name.png)'
        : 'Each row is one input; every LoRA and strength makes one video of it.'),
      h('div.row', h('span.muted', 'or load a file: '), file)),
    h('section.card', h('h2', 'Settings'), h('div.inf-grid-form',
      fieldRow(gpus && gpus.mode === 'cpu' ? 'Workers (CPU slots)' : 'Workers (GPUs)', inputs.gpus, 'one process per device; rows are split between them'),
      fieldRow('Strengths', inputs.strengths), fieldRow('Seed', inputs.seed), fieldRow('Steps', inputs.steps),
      fieldRow('Frames', inputs.frames, `4n+1, at ${d.fps} fps`), fieldRow('Width', inputs.width), fieldRow('Height', inputs.height))),
    h('div.row', submit, count, notifyButton()), error, progress, results));
  summary();
  await showResults(null);
  return () => { stops.forEach((s) => s()); clear(container); };
}
