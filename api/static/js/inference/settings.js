// What a task keeps for testing: its test prompts and images, the negative prompt, and the previews
// queued after each saved epoch (strengths, seed, steps, frames, size, where they run), and the TAEHV that
// decodes every run's live previews (only files whose latent channels are the model's are offered).

import { api } from '../api.js';
import { h, fieldRow, showError, toast } from '../ui.js';
import { imagePicker } from './gallery.js';
import { lines, num, parseNumbers } from './common.js';

export async function settingsView(container, ctx) {
  const [rec, models] = await Promise.all([api(`tasks/${ctx.taskId}/inference`), api('models')]);
  const d = rec.defaults || {};
  const p = rec.preview;
  const images = new Set(rec.images);
  const prompts = h('textarea', { name: 'prompts', rows: 5, placeholder: 'One prompt per line' }, rec.prompts.join('\n'));
  const negative = h('textarea', { name: 'negative_prompt', rows: 2, placeholder: 'empty: Wan\'s default negative prompt' },
    rec.negative_prompt || '');
  const pv = {
    enabled: h('input', { type: 'checkbox', name: 'enabled', checked: p.enabled }),
    strengths: h('input', { name: 'strengths', value: p.strengths.join(', ') }),
    seed: num('seed', p.seed, { min: 0, placeholder: 'default' }),
    steps: num('steps', p.steps, { min: 1, placeholder: 'default' }),
    frames: num('frames', p.frames, { min: 1, step: 4, placeholder: 'default' }),
    width: num('width', p.width, { step: d.size_multiple || 16, placeholder: 'default' }),
    height: num('height', p.height, { step: d.size_multiple || 16, placeholder: 'default' }),
    device: h('select', { name: 'device' },
      h('option', { value: 'free', selected: p.device === 'free' }, 'a free GPU (during training)'),
      h('option', { value: 'training', selected: p.device === 'training' }, 'the training GPUs (after it)')),
    backend: h('select', { name: 'backend' }, ['embedded', 'comfyui'].map((b) => h('option', { value: b, selected: p.backend === b }, b))),
    taehv: h('select', { name: 'taehv' }, h('option', { value: '' }, 'none (no live previews of embedded runs)'),
      (models.taehv || []).filter((t) => !d.latent_channels || t.latent_channels === d.latent_channels)
        .map((t) => h('option', { value: t.path, selected: p.taehv === t.path }, `${t.name} (${t.latent_channels} channels)`))),
  };
  const error = h('p.error', rec.preview_error ? `Last preview not queued: ${rec.preview_error}` : '');
  const save = h('button.primary', { type: 'submit' }, 'Save');
  container.append(h('form.inf-settings', { onsubmit: (e) => { e.preventDefault(); send(); } },
    h('section.card', h('h2', 'Test prompts and images'),
      fieldRow('Prompts', prompts, 'Used by previews and offered for every new test.'),
      d.task !== 't2v' ? imagePicker({ variant: rec.variant, images, emptyText: 'No test image' }) : null,
      fieldRow('Negative prompt', negative),
      fieldRow('Live previews', pv.taehv, 'a TAEHV under the model roots decodes every denoising step of a test run')),
    h('section.card', h('h2', 'Previews during training'),
      h('label.row', pv.enabled, 'After each saved epoch, make preview videos with these prompts and images'),
      h('div.inf-grid-form',
        fieldRow('Strengths', pv.strengths), fieldRow('Seed', pv.seed), fieldRow('Steps', pv.steps, `default ${d.steps ?? ''}`),
        fieldRow('Frames', pv.frames, `4n+1; default ${d.frames ?? ''}`), fieldRow('Width', pv.width, 'empty: per image'),
        fieldRow('Height', pv.height), fieldRow('Runs on', pv.device), fieldRow('Backend', pv.backend))),
    h('div.row', save), error));

  async function send() {
    const intOrNull = (el) => (el.value === '' ? null : Number.parseInt(el.value, 10));
    let body;
    try {
      body = { prompts: lines(prompts.value), negative_prompt: negative.value.trim() || null,
        preview: { enabled: pv.enabled.checked, strengths: parseNumbers(pv.strengths.value, 'Strengths'),
          seed: intOrNull(pv.seed) ?? 42, steps: intOrNull(pv.steps), frames: intOrNull(pv.frames),
          width: intOrNull(pv.width), height: intOrNull(pv.height), device: pv.device.value, backend: pv.backend.value,
          taehv: pv.taehv.value || null } };
      if (d.task !== 't2v') body.images = [...images];
    } catch (e) { error.textContent = e.message; return; }
    save.disabled = true;
    try {
      await api(`tasks/${ctx.taskId}/inference`, { method: 'PATCH', body });
      error.textContent = '';
      toast('Test settings saved', 'ok');
    } catch (e) {
      error.textContent = e.message;
      showError(e, 'Save');
    } finally { save.disabled = false; }
  }
  return null;
}
