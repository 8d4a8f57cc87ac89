// Buckets tab: for a model variant and bucket settings, the bucket every file trains in or why it is
// dropped, counts per bucket, steps per epoch (the trainer's own report code, on the server), and
// suggestions from the data; "Save as dataset.toml" writes the settings a training task then uses.
// "What the cache holds": the clips a training run cached for the variant, each decodable back to video
// by a TAEHV (GET /datasets/<name>/cache/<variant>/<item>.mp4) to check crops, frame counts and buckets.
import { fileUrl } from '../api.js';
import { h, append, clear, debounce, fieldRow, showError, toast } from '../ui.js';
import { dsApi, enc } from './common.js';

const CLIP_MODES = ['single_beginning', 'single_middle', 'multiple_overlapping'];

function listText(values) {
  if (!values) return '';
  return values.map((v) => (Array.isArray(v) ? v.join('x') : String(v))).join(', ');
}

function parseList(text, { pairs = false, float = false } = {}) {
  const parts = text.split(/[,\s]+/).map((s) => s.trim()).filter(Boolean);
  if (!parts.length) return null;
  return parts.map((p) => {
    if (pairs && /x/i.test(p)) return p.split(/x/i).map(Number);
    return float ? Number(p) : parseInt(p, 10);
  });
}

export default async function bucketsTab(container, dataset) {
  const first = await dsApi(dataset, '/buckets');
  const f = {
    variant: h('select', { 'aria-label': 'Model variant' }, first.variants.map((v) => h('option', { value: v.id }, `${v.id} (${v.framerate} fps, /${v.size_multiple})`))),
    resolutions: h('input', { type: 'text', 'aria-label': 'Resolutions' }),
    frame_buckets: h('input', { type: 'text', 'aria-label': 'Frame buckets' }),
    enable_ar_bucket: h('input', { type: 'checkbox' }),
    min_ar: h('input', { type: 'number', step: 'any', min: 0.01, 'aria-label': 'Smallest aspect ratio' }),
    max_ar: h('input', { type: 'number', step: 'any', min: 0.01, 'aria-label': 'Largest aspect ratio' }),
    num_ar_buckets: h('input', { type: 'number', min: 1, 'aria-label': 'Aspect-ratio buckets' }),
    ar_buckets: h('input', { type: 'text', placeholder: 'from min/max above', 'aria-label': 'Explicit aspect ratios' }),
    num_repeats: h('input', { type: 'number', min: 1, 'aria-label': 'Repeats' }),
    micro_batch_size: h('input', { type: 'number', min: 1, value: 1, 'aria-label': 'Micro-batch size' }),
    image_micro_batch_size: h('input', { type: 'number', min: 1, placeholder: 'same', 'aria-label': 'Image micro-batch size' }),
    gradient_accumulation_steps: h('input', { type: 'number', min: 1, value: 1, 'aria-label': 'Gradient accumulation' }),
    gpus: h('input', { type: 'number', min: 1, value: 1, 'aria-label': 'GPUs' }),
    video_clip_mode: h('select', { 'aria-label': 'Clip mode' }, CLIP_MODES.map((m) => h('option', { value: m }, m))),
  };
  const fill = (view) => {
    const s = view.settings;
    f.variant.value = view.variant;
    f.resolutions.value = listText(s.resolutions);
    f.frame_buckets.value = listText(s.frame_buckets);
    f.enable_ar_bucket.checked = s.enable_ar_bucket === true;   // unset = false, as the trainer
    f.min_ar.value = s.min_ar ?? 0.5;
    f.max_ar.value = s.max_ar ?? 2.0;
    f.num_ar_buckets.value = s.num_ar_buckets ?? 7;
    f.ar_buckets.value = listText(s.ar_buckets);
    f.num_repeats.value = s.num_repeats ?? 1;
    f.video_clip_mode.value = view.options.video_clip_mode;
  };
  const settings = () => ({
    resolutions: parseList(f.resolutions.value, { pairs: true }),
    frame_buckets: parseList(f.frame_buckets.value),
    enable_ar_bucket: f.enable_ar_bucket.checked,
    min_ar: Number(f.min_ar.value), max_ar: Number(f.max_ar.value), num_ar_buckets: Number(f.num_ar_buckets.value),
    ar_buckets: parseList(f.ar_buckets.value, { float: true }),
    num_repeats: Number(f.num_repeats.value),
  });
  const num = (el) => (el.value === '' ? undefined : Number(el.value));
  const options = () => ({ variant: f.variant.value, micro_batch_size: num(f.micro_batch_size), image_micro_batch_size: num(f.image_micro_batch_size),
    gradient_accumulation_steps: num(f.gradient_accumulation_steps), gpus: num(f.gpus), video_clip_mode: f.video_clip_mode.value });

  const out = h('div.bucket-results');
  const saveBtn = h('button.primary', { type: 'button' }, 'Save as dataset.toml');
  const savedNote = h('span.muted');
  const update = async () => {
    try { render(await dsApi(dataset, '/buckets', { method: 'POST', body: { settings: settings(), options: options() } })); } catch (e) { showError(e, 'Buckets'); }
  };
  const later = debounce(update, 350);
  Object.values(f).forEach((el) => el.addEventListener(el.type === 'checkbox' || el.tagName === 'SELECT' ? 'change' : 'input', later));
  saveBtn.addEventListener('click', async () => {
    try {
      await dsApi(dataset, '/config', { method: 'PUT', body: { settings: settings(), variant: f.variant.value } });
      toast('Saved dataset.toml: new training tasks on this dataset start from it', 'ok');
      savedNote.textContent = 'this folder has its own dataset.toml';
    } catch (e) {
      showError(e, 'Save');
      if (e.details.issues) render({ issues: e.details.issues });
    }
  });

  const cacheCard = h('section.card.cache-view');
  let cacheVariant = null;

  async function showCache(variant) {
    if (variant === cacheVariant) return;
    cacheVariant = variant;
    let res;
    try { res = await dsApi(dataset, `/cache/${enc(variant)}`); } catch (e) { showError(e, 'Cache'); return; }
    if (variant !== cacheVariant) return;
    const decode = (it, cell, btn) => {
      btn.disabled = true;
      const video = h('video', { controls: true, muted: true, loop: true, autoplay: true, playsinline: true,
        src: fileUrl(`datasets/${enc(dataset)}/cache/${enc(variant)}/${enc(it.item)}.mp4?max_side=320`) });
      video.addEventListener('error', () => { cell.textContent = 'could not decode this clip (see the server log)'; });
      cell.replaceChildren(video);
    };
    const name = (p) => String(p || '').split('/').pop();
    cacheCard.replaceChildren(h('h3', 'What the cache holds'),
      !res.items.length ? h('p.muted', `Nothing cached for ${variant} yet: a training run on this dataset builds the cache.`)
        : !res.taehv.length ? h('p.muted', `${res.items.length} clip(s) cached; put a TAEHV for ${variant} under the model roots to decode them.`)
          : h('table', h('tbody', res.items.map((it) => {
            const cell = h('td.cache-video');
            const btn = h('button.small', { type: 'button', onclick: () => decode(it, cell, btn) }, 'Decode');
            return h('tr', { dataset: { item: it.item } }, h('td', name(it.source)), h('td.num', `${it.width}×${it.height}×${it.frames}`),
              h('td', btn), cell);
          }))));
  }

  function render(view) {
    clear(out);
    showCache(view.variant);
    if (view.issues && view.issues.length) {
      out.append(h('div.card.issues', h('h3', 'These settings do not work'), h('ul', view.issues.map((i) => h('li.error', `${i.key}: ${i.message}`)))));
      return;
    }
    const t = view.totals;
    const o = view.options;
    append(out, [
      h('p.bucket-summary', h('strong', `${view.steps_per_epoch} step(s) per epoch`),
        ` · ${t.files} file(s): ${t.used} train, ${t.dropped} dropped · ${t.items} clip(s), ${t.items_per_epoch} per epoch with repeats`,
        ` · global batch = micro-batch ${o.micro_batch_size} × ${o.dp_world} data-parallel × ${o.gradient_accumulation_steps} accumulation`,
        view.dropped_per_epoch ? ` · ${view.dropped_per_epoch} left over per epoch in partial batches` : ''),
      h('table.buckets-table', h('thead', h('tr', ['Bucket (w×h×frames)', 'Files', 'Clips', 'Per epoch', 'Global batch', 'Steps', 'Left over'].map((x) => h('th', x)))),
        h('tbody', view.buckets.length ? view.buckets.map((b) => h('tr', h('td', b.label), h('td', String(b.files)), h('td', String(b.items)),
          h('td', String(b.items_per_epoch)), h('td', String(b.global_batch)), h('td', String(b.steps)), h('td', String(b.dropped))))
          : h('tr', h('td', { colSpan: 7, class: 'muted' }, 'Nothing trains with these settings.')))),
      upscaled(view.files.filter((x) => x.status === 'used' && x.scale > 1.001)),
      suggestions(view.suggestions),
      dropped(view.files.filter((x) => x.status === 'dropped')),
      view.problems.length ? h('div.card', h('h3', 'Problems'), h('ul', view.problems.map((p) => h('li', p)))) : null]);
  }

  function suggestions(s) {
    if (!s) return null;
    const use = (key, value) => h('button', { type: 'button', onclick: () => { f[key].value = listText(value); if (key === 'ar_buckets') f.enable_ar_bucket.checked = true; update(); } }, 'Use');
    return h('div.card.suggestions', h('h3', 'Suggested from your clips'),
      s.ar_buckets.length ? h('div.row', h('span', `Aspect-ratio buckets: ${listText(s.ar_buckets)} (your files span ${s.min_ar}–${s.max_ar})`), use('ar_buckets', s.ar_buckets)) : null,
      s.frame_buckets.length ? h('div.row', h('span', `Frame buckets: ${listText(s.frame_buckets)}`), use('frame_buckets', s.frame_buckets)) : null,
      s.notes.length ? h('ul.muted', s.notes.map((n) => h('li', n))) : null);
  }

  // Files smaller than their bucket are enlarged to cover it (then cropped): say so, and by how much.
  function upscaled(files) {
    if (!files.length) return null;
    const size = (x) => (x.media ? `${x.media.width}×${x.media.height}` : '');
    return h('div.card.upscaled-files', h('h3', `${files.length} file(s) will be upscaled`),
      h('p.muted.small', 'Smaller than their bucket, so they are enlarged to cover it before training; over 2× they look soft.'),
      h('table', h('tbody', files.sort((a, b) => b.scale - a.scale).map((x) => h('tr', { dataset: { file: x.name } },
        h('td', h('a', { href: `#/data/${encodeURIComponent(dataset)}?file=${encodeURIComponent(x.name)}` }, x.name)),
        h('td.num', size(x)),
        h('td', Object.entries(x.bucket_scales).filter(([, v]) => v > 1.001).map(([label]) => label).join(', ')),
        h(`td.num${x.scale >= 2 ? '.warn-text' : ''}`, `upscaled ${x.scale.toFixed(1)}x`))))));
  }

  function dropped(files) {
    if (!files.length) return null;
    return h('div.card.dropped-files', h('h3', `${files.length} dropped file(s)`),
      h('table', h('tbody', files.map((x) => h('tr', h('td', h('a', { href: `#/data/${encodeURIComponent(dataset)}?file=${encodeURIComponent(x.name)}` }, x.name)), h('td.error', x.reason))))));
  }

  fill(first);
  savedNote.textContent = first.has_config ? 'this folder has its own dataset.toml' : 'no dataset.toml yet: the defaults below apply';
  container.append(h('section.card.bucket-form', h('h2', 'Bucket settings'),
    h('div.bucket-grid',
      fieldRow('Model variant', f.variant, 'frame rate and size step of the model'),
      fieldRow('Resolutions', f.resolutions, 'areas: 512 or 1280x720, comma separated'),
      fieldRow('Frame buckets', f.frame_buckets, '4n+1 frame counts; 1 = images'),
      fieldRow('Repeats', f.num_repeats),
      h('label.field.check', f.enable_ar_bucket, ' aspect-ratio buckets'),
      fieldRow('Smallest AR', f.min_ar), fieldRow('Largest AR', f.max_ar), fieldRow('AR buckets', f.num_ar_buckets),
      fieldRow('Explicit ARs', f.ar_buckets, 'width/height values, overrides the three above'),
      fieldRow('Clip mode', f.video_clip_mode),
      fieldRow('Micro-batch', f.micro_batch_size), fieldRow('Image micro-batch', f.image_micro_batch_size),
      fieldRow('Accumulation', f.gradient_accumulation_steps), fieldRow('GPUs', f.gpus)),
    h('div.row', saveBtn, savedNote)), out, cacheCard);
  render(first);
}
