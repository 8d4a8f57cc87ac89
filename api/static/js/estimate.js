// The estimate of a LoRA run's GPU memory and time per epoch, before it starts (POST /estimate): a formula
// from the model, resolution, frames, rank, block swapping and checkpointing (docs/performance.md), shown
// with "estimate" wording next to the largest GPU's memory. estimateCard(scope, values) is a card of its own;
// values (a task form's fields) preset it.

import { api } from './api.js';
import { debounce, fieldRow, fill, formatDuration, h } from './ui.js';

const num = (name, value, attrs = {}) => h('input', { name, type: 'number', value, required: true, ...attrs });

// A task form's values (training/form.js field names) as estimateCard's presets: the model's variant, the largest
// resolution and frame bucket, and the run's rank, micro-batch, swapping, checkpointing, dtype and GPUs.
export function estimateFromForm(form, models = []) {
  const largest = (list) => (Array.isArray(list) && list.length ? list.reduce((a, b) => (size(b) > size(a) ? b : a)) : null);
  const size = (r) => (Array.isArray(r) ? r[0] * r[1] : r * r);
  const res = largest(form.resolutions);
  const frames = Array.isArray(form.frame_buckets) && form.frame_buckets.length ? Math.max(...form.frame_buckets) : null;
  const model = models.find((m) => m.path === form.model_path);
  const values = {
    variant: model && model.variant ? model.variant.id : undefined,
    width: res === null ? undefined : (Array.isArray(res) ? res[0] : res),
    height: res === null ? undefined : (Array.isArray(res) ? res[1] : res),
    frames: frames ?? undefined, micro_batch_size: form.micro_batch_size, lora_rank: form.lora_rank,
    blocks_to_swap: form.blocks_to_swap, transformer_dtype: form.transformer_dtype, gpus: form.gpus,
    activation_checkpointing: form.activation_checkpointing === undefined ? undefined : Boolean(form.activation_checkpointing),
  };
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined && v !== null));
}

export function estimateCard(scope, values = {}) {
  const v = { variant: 'wan2.1-t2v-14b', width: 832, height: 480, frames: 81, micro_batch_size: 1, lora_rank: 32,
    blocks_to_swap: 0, activation_checkpointing: true, transformer_dtype: 'bfloat16', gpus: 1, items_per_epoch: 100, ...values };
  const f = {
    variant: h('select', { name: 'variant' }, h('option', { value: v.variant }, v.variant)),
    width: num('width', v.width, { min: 16, step: 16 }),
    height: num('height', v.height, { min: 16, step: 16 }),
    frames: num('frames', v.frames, { min: 1, step: 4 }),
    micro_batch_size: num('micro_batch_size', v.micro_batch_size, { min: 1 }),
    lora_rank: num('lora_rank', v.lora_rank, { min: 1 }),
    blocks_to_swap: num('blocks_to_swap', v.blocks_to_swap, { min: 0 }),
    activation_checkpointing: h('select', { name: 'activation_checkpointing' },
      h('option', { value: 'true', selected: v.activation_checkpointing }, 'on'), h('option', { value: 'false', selected: !v.activation_checkpointing }, 'off')),
    transformer_dtype: h('select', { name: 'transformer_dtype' }, ['bfloat16', 'float8', 'float32'].map((d) => h('option', { value: d, selected: d === v.transformer_dtype }, d))),
    gpus: num('gpus', v.gpus, { min: 1 }),
    items_per_epoch: num('items_per_epoch', v.items_per_epoch, { min: 0 }),
  };
  const out = h('div.estimate-out', { role: 'status' });
  const body = () => Object.fromEntries(Object.entries(f).map(([k, el]) => [k,
    k === 'activation_checkpointing' ? el.value === 'true' : el.type === 'number' ? Number.parseInt(el.value, 10) : el.value]));
  const update = async () => {
    if (Object.values(f).some((el) => !el.checkValidity())) { fill(out, h('p.error', 'Fix the values marked above.')); return; }
    let e;
    try { e = await api('estimate', { method: 'POST', body: body(), signal: scope.signal }); } catch (err) {
      if (err.name !== 'AbortError') fill(out, h('p.error', err.message));
      return;
    }
    if (f.variant.options.length < 2) {
      fill(f.variant, e.variants.map((id) => h('option', { value: id, selected: id === e.variant }, id)));
    }
    const m = e.memory_gib;
    const over = e.gpu_memory_gib && m.total > e.gpu_memory_gib;
    fill(out,
      h('p', h('strong', `Estimate: about ${m.total} GiB of GPU memory`), over ? h('span.over', ` · more than this machine's ${e.gpu_memory_gib} GiB GPUs`) : '',
        e.epoch_s !== null ? ` · about ${formatDuration(e.epoch_s)} per epoch on ${e.gpu} (${e.micro_steps_per_epoch} micro-steps of ~${e.micro_step_s} s)`
          : ' · time per epoch: no known GPU on this machine'),
      h('table.compact', h('tbody', [['Frozen weights', m.weights], ['Activations', m.activations], ['LoRA + optimizer state', m.lora_optimizer],
        ['Overhead', m.overhead]].map(([k, x]) => h('tr', h('th', k), h('td.num', `${x} GiB`))),
      h('tr', h('th', 'Tokens per micro-batch'), h('td.num', String(e.tokens))))),
      h('p.muted.small', `${e.note}.`));
  };
  const later = debounce(update, 300);
  scope.add(() => later.cancel());
  Object.values(f).forEach((el) => el.addEventListener(el.tagName === 'SELECT' ? 'change' : 'input', later));
  update();
  return h('section.card.estimate-card', h('h2', 'Estimate a run'),
    h('p.muted.small', 'GPU memory and time per epoch of a LoRA run from its settings, before you start it.'),
    h('form.estimate-form', { onsubmit: (e) => { e.preventDefault(); update(); } },
      fieldRow('Model', f.variant), fieldRow('Width', f.width), fieldRow('Height', f.height), fieldRow('Frames', f.frames, '4n+1'),
      fieldRow('Micro-batch', f.micro_batch_size), fieldRow('LoRA rank', f.lora_rank), fieldRow('Blocks swapped', f.blocks_to_swap),
      fieldRow('Checkpointing', f.activation_checkpointing), fieldRow('Weights dtype', f.transformer_dtype), fieldRow('GPUs', f.gpus),
      fieldRow('Clips per epoch', f.items_per_epoch)), out);
}
