// Small pieces the Inference views share: labels, the ComfyUI status badge, number parsing, job progress.

import { api, fileUrl } from '../api.js';
import { fill, h, poll, showError, formatDuration } from '../ui.js';

export function loraLabel(l) {
  if (!l) return 'base model';
  if (l.label) return l.label;
  if (l.name && l.name.startsWith('epoch') && l.epoch !== null && l.epoch !== undefined) return `epoch ${l.epoch}`;
  return l.name;
}

export function imageUrl(path) {
  const [folder, name] = path.split('/');
  return fileUrl(`gallery/${encodeURIComponent(folder)}/images/${encodeURIComponent(name)}`);
}

// "1, 0.75" -> [1, 0.75]; throws with a readable message.
export function parseNumbers(text, what) {
  const parts = String(text).split(/[\s,;]+/).filter(Boolean);
  const nums = parts.map(Number);
  if (!parts.length || nums.some((n) => !Number.isFinite(n))) throw new Error(`${what}: give numbers separated by commas`);
  return nums;
}

// A number input; value null / undefined leaves it empty.
export function num(name, value, attrs = {}) {
  return h('input', { name, type: 'number', value: value ?? '', ...attrs });
}

export function lines(text) {
  return String(text || '').split('\n').map((s) => s.trim()).filter(Boolean);
}

// The ComfyUI backend's state in the page head: quiet when usable, a visible warning with the reason and a
// link to Settings when not (a ComfyUI test is then refused at submit with the same reason).
export function comfyStatus() {
  const el = h('span.inf-comfy.muted', { title: 'ComfyUI backend' }, 'ComfyUI: …');
  api('inference/comfyui').then((s) => {
    const ok = Boolean(s.reachable || (s.mode === 'managed' && s.checkout));
    el.classList.toggle('ok', ok);
    el.classList.toggle('down', !ok);
    el.classList.toggle('muted', false);
    if (ok) {
      el.textContent = s.reachable ? `ComfyUI ${s.version || ''} at ${s.url}`.replace('  ', ' ') : 'ComfyUI: started per job';
      return;
    }
    fill(el, h('strong', s.mode === 'managed' ? 'ComfyUI cannot be started' : `ComfyUI not reachable at ${s.url}`),
      s.error ? `: ${s.error}. ` : '. ', h('a', { href: '#/settings' }, 'Settings'));
  }).catch(() => { el.textContent = 'ComfyUI: unknown'; });
  return el;
}

// A live progress line for a job, with a Stop button; calls onEnd(job) once it finishes, and then stops
// polling by itself. .stop() ends the polling earlier (leaving the view).
export function jobProgress(jobId, onEnd) {
  const bar = h('progress', { max: 1, value: 0 });
  const text = h('span.muted', 'queued');
  const stop = h('button', { type: 'button', onclick: async () => {
    stop.disabled = true;
    try { await api(`jobs/${jobId}/stop`, { method: 'POST', body: {} }); } catch (e) { showError(e, 'Stop'); }
  } }, 'Stop');
  const box = h('div.inf-job', { dataset: { job: jobId } }, h('div.row', h('strong', `Job ${jobId}`), text, stop), bar);
  const stopPolling = poll(async () => {
    const p = await api(`jobs/${jobId}/progress`);
    bar.value = p.fraction || 0;
    const eta = p.eta_s ? ` · about ${formatDuration(p.eta_s)} left` : '';
    text.textContent = p.state === 'queued' ? 'queued'
      : `${p.status || p.state}${p.message ? `: ${p.message}` : ''}${p.total_steps ? ` · step ${p.step}/${p.total_steps}` : ''}${eta}`;
    if (['done', 'stopped', 'failed', 'cancelled', 'interrupted'].includes(p.state)) {
      stopPolling();
      stop.remove();
      box.classList.add(p.state);
      if (p.state === 'failed') text.textContent = `failed: ${p.failure || p.message || ''}`;
      onEnd && onEnd(p);
    }
  }, 1000);
  return { el: box, stop: stopPolling };
}
