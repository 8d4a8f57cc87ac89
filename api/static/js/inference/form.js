// A new test run: LoRAs (by training run and epoch, several at once, the base model too), test images
// and prompts, strengths and sampling settings. Queued as an `infer` job; its progress shows below with
// a Stop button, and the results tab opens when it is done.

import { api } from '../api.js';
import { h, clear, fieldRow, formatTime } from '../ui.js';
import { imagePicker } from './gallery.js';
import { jobProgress, lines, loraLabel, num, parseNumbers } from './common.js';

export async function runView(container, ctx) {
  const [settings, own, all] = await Promise.all([
    api(`tasks/${ctx.taskId}/inference`), api(`tasks/${ctx.taskId}/loras`), api('inference/loras')]);
  const d = settings.defaults;
  if (!d) {
    container.append(h('p.error', 'This task has no usable model yet: choose a model checkpoint in Training first.'));
    return null;
  }
  const chosen = new Set(own.loras.filter((l) => l.best).map((l) => l.id));
  if (!chosen.size && own.loras.length) chosen.add(own.loras[own.loras.length - 1].id);
  const images = new Set(settings.images);
  const stops = [];

  // -- LoRAs ----------------------------------------------------------------------------------
  const base = h('input', { type: 'checkbox', name: 'base', checked: !own.loras.length });
  const loraBox = (l) => h('label.inf-lora', { title: l.id },
    h('input', { type: 'checkbox', name: 'lora', value: l.id, checked: chosen.has(l.id),
      onchange: (e) => { if (e.target.checked) chosen.add(l.id); else chosen.delete(l.id); summary(); } }),
    `${l.best ? '★ ' : ''}${loraLabel(l)}`);
  const byRun = (loras) => {
    const runs = new Map();
    for (const l of loras) runs.set(l.job_id, [...(runs.get(l.job_id) || []), l]);
    return [...runs].map(([job, ls]) => h('div.inf-run-loras', { dataset: { job } },
      h('span.muted.inf-run-label', { title: job }, `Run ${ls[0].run ?? job} · ${formatTime(ls[0].created_at)}`),
      h('div.row', ls.map(loraBox))));
  };
  const others = all.tasks.filter((t) => t.task_id !== ctx.taskId)
    .map((t) => ({ ...t, loras: t.loras.filter((l) => !l.variant || l.variant === settings.variant) }))
    .filter((t) => t.loras.length);
  const loraSection = h('section.card',
    h('h2', 'LoRAs'),
    h('label.row', base, 'Base model (no LoRA), for comparison'),
    own.loras.length ? byRun(own.loras) : h('p.muted', 'No saved LoRA yet: train first, or test the base model.'),
    others.length ? h('details', h('summary', 'LoRAs of other tasks on the same model'),
      others.map((t) => h('div', h('strong', t.task_name), byRun(t.loras)))) : null);

  // -- inputs ---------------------------------------------------------------------------------
  const prompts = h('textarea', { name: 'prompts', rows: 4, placeholder: 'One prompt per line' }, settings.prompts.join('\n'));
  const inputSection = h('section.card', h('h2', 'Inputs'),
    d.task !== 'i2v' ? fieldRow('Prompts', prompts, 'Each prompt is tried with each image (or alone).') : fieldRow('Prompts', prompts),
    d.task !== 't2v' ? imagePicker({ variant: settings.variant, images, choose: 'Choose test images…', onChange: () => summary(),
      emptyText: d.task === 'i2v' ? 'An image-to-video model needs test images.' : 'No image' })
      : h('p.muted', `${settings.variant} makes videos from text only.`));

  // -- settings -------------------------------------------------------------------------------
  const inputs = {
    strengths: h('input', { name: 'strengths', value: '1.0' }),
    seed: num('seed', 42, { min: 0 }),
    steps: num('steps', d.steps, { min: 1, max: 200 }),
    // step counts from min: shift's min 0.05 with step 0.05 accepts 5, 12, 3.5 (the variants' defaults)
    guidance: num('guidance', d.guidance, { step: 0.05, min: 0, max: 30 }),
    guidance_low: num('guidance_low', d.guidance_low, { step: 0.05, min: 0, max: 30 }),
    shift: num('shift', d.shift, { step: 0.05, min: 0.05, max: 50 }),
    frames: num('frames', d.frames, { min: 1, step: 4 }),
    width: num('width', '', { step: d.size_multiple, min: d.size_multiple, placeholder: 'auto' }),
    height: num('height', '', { step: d.size_multiple, min: d.size_multiple, placeholder: 'auto' }),
    area: h('select', { name: 'area' }, d.areas.map((a) => h('option', { value: a, selected: a === d.area }, a))),
    backend: h('select', { name: 'backend' }, h('option', { value: 'embedded' }, 'embedded (diffusers)'),
      h('option', { value: 'comfyui' }, 'ComfyUI')),
    gpu_ids: h('input', { name: 'gpu_ids', placeholder: 'any free' }),
  };
  for (const el of Object.values(inputs)) el.addEventListener('input', () => summary());
  const settingsSection = h('section.card', h('h2', 'Settings'), h('div.inf-grid-form',
    fieldRow('Strengths', inputs.strengths, 'e.g. 1.0, 0.75'),
    fieldRow('Seed', inputs.seed),
    fieldRow('Steps', inputs.steps),
    fieldRow(d.two_experts ? 'Guidance (high noise)' : 'Guidance', inputs.guidance),
    d.two_experts ? fieldRow('Guidance (low noise)', inputs.guidance_low) : null,
    fieldRow('Shift', inputs.shift),
    fieldRow('Frames', inputs.frames, `4n+1, at ${d.fps} fps`),
    fieldRow('Width', inputs.width, `multiple of ${d.size_multiple}; empty: per image`),
    fieldRow('Height', inputs.height),
    fieldRow('Area (auto size)', inputs.area),
    fieldRow('Backend', inputs.backend),
    fieldRow('GPUs', inputs.gpu_ids, 'ids, e.g. 0,1; empty: any free')));

  const count = h('span.muted');
  const error = h('p.error');
  const jobs = h('div.inf-jobs');
  const submit = h('button.primary', { type: 'submit' }, 'Queue test');
  const form = h('form.inf-run', { onsubmit: (e) => { e.preventDefault(); send(); } },
    loraSection, inputSection, settingsSection, h('div.row', submit, count), error, jobs);
  container.append(form);

  function request() {
    const body = { loras: [...chosen], base: base.checked, prompts: lines(prompts.value), images: [...images],
      strengths: parseNumbers(inputs.strengths.value, 'Strengths'), backend: inputs.backend.value, area: inputs.area.value };
    for (const k of ['seed', 'steps', 'frames', 'width', 'height']) if (inputs[k].value !== '') body[k] = Number.parseInt(inputs[k].value, 10);
    for (const k of ['guidance', 'shift']) if (inputs[k].value !== '') body[k] = Number(inputs[k].value);
    if (d.two_experts && inputs.guidance_low.value !== '') body.guidance_low = Number(inputs.guidance_low.value);
    if (d.task === 't2v') delete body.images;
    if (inputs.gpu_ids.value.trim()) body.gpu_ids = parseNumbers(inputs.gpu_ids.value, 'GPUs').map((n) => Math.trunc(n));
    if (body.frames !== undefined && (body.frames - 1) % 4) throw new Error(`Frames: ${body.frames} is not 4n+1 (try ${body.frames - ((body.frames - 1) % 4)})`);
    return body;
  }

  function summary() {
    try {
      const b = request();
      const inputsN = Math.max(1, b.images ? b.images.length : 0) * Math.max(1, b.prompts.length);
      const n = b.loras.length * inputsN * b.strengths.length + (b.base ? inputsN : 0);
      count.textContent = `${n} video${n === 1 ? '' : 's'}`;
      error.textContent = '';
    } catch (e) { count.textContent = ''; error.textContent = e.message; }
  }
  base.addEventListener('change', summary);
  prompts.addEventListener('input', summary);
  summary();

  async function send() {
    let body;
    try { body = request(); } catch (e) { error.textContent = e.message; return; }
    submit.disabled = true;
    try {
      const job = await api(`tasks/${ctx.taskId}/infer`, { method: 'POST', body });
      const p = jobProgress(job.id, (end) => { if (end.state === 'done') ctx.go('results'); });
      stops.push(p.stop);
      jobs.prepend(p.el);
      error.textContent = '';
    } catch (e) {
      error.textContent = e.message;
      const bad = e.field && form.querySelector(`[name="${e.field.split('.')[0]}"]`);
      if (bad) bad.focus();
    } finally { submit.disabled = false; }
  }
  return () => { stops.forEach((s) => s()); clear(container); };
}
