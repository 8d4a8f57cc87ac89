// The comparison grid: LoRAs (rows: best first, the base model, then by run and epoch) x test inputs x
// strengths (columns), every video of the chosen settings group playing in sync under one play / pause /
// scrub control. A cell's settings show on hover and, with its download link, on click. Rows can be
// marked as the task's best epoch (stored on the task: PATCH /tasks/<id>/inference {best}).
// While a test job runs, its running video's live preview (the newest denoising step decoded by the task's
// TAEHV, or ComfyUI's own preview image) loops beside the job's progress line and Stop button: the grid holds
// finished videos only, and a running video's row or column may not exist in it yet.

import { api, fileUrl } from '../api.js';
import { h, clear, fill, showError, toast } from '../ui.js';
import { imageUrl, jobProgress, loraLabel } from './common.js';

const ACTIVE = ['queued', 'running', 'stopping'];

// One clock for many <video> elements: the first playable one leads, the others follow it.
class SyncPlayer {
  constructor(onTime) {
    this.videos = [];
    this.playing = false;
    this.loop = true;
    this.onTime = onTime;
    this._raf = null;
  }

  attach(videos) {
    const t = this.time();
    this.pause();
    this.videos = videos;
    for (const v of videos) {
      v.muted = true;
      v.loop = false;
      v.playsInline = true;
      v.addEventListener('loadedmetadata', () => this.onTime && this.onTime(this.time(), this.duration()));
    }
    if (t) this.seek(t);
  }

  leader() { return this.videos.find((v) => v.readyState >= 1) || this.videos[0]; }

  duration() { return Math.max(0, ...this.videos.map((v) => (Number.isFinite(v.duration) ? v.duration : 0))); }

  time() { const l = this.leader(); return l ? l.currentTime : 0; }

  async play() {
    if (!this.videos.length) return;
    if (this.time() >= this.duration() - 0.02) this.seek(0);
    const t = this.time();
    this.playing = true;
    for (const v of this.videos) v.currentTime = t;
    await Promise.all(this.videos.map((v) => v.play().catch(() => {})));
    this._tick();
  }

  pause() {
    this.playing = false;
    cancelAnimationFrame(this._raf);
    const t = this.time();
    for (const v of this.videos) { v.pause(); v.currentTime = t; }
    this.onTime && this.onTime(t, this.duration());
  }

  seek(t) {
    for (const v of this.videos) v.currentTime = Math.min(t, Number.isFinite(v.duration) ? v.duration : t);
    this.onTime && this.onTime(t, this.duration());
  }

  _tick() {
    cancelAnimationFrame(this._raf);
    if (!this.playing) return;
    const lead = this.leader();
    const t = lead.currentTime;
    if (lead.ended || t >= this.duration() - 0.01) {
      if (this.loop) { this.seek(0); this.videos.forEach((v) => v.play().catch(() => {})); } else { this.pause(); return; }
    } else {
      for (const v of this.videos) {
        if (v !== lead && Math.abs(v.currentTime - t) > 0.08) v.currentTime = t;
        if (v.paused && !v.ended) v.play().catch(() => {});
      }
    }
    this.onTime && this.onTime(this.time(), this.duration());
    this._raf = requestAnimationFrame(() => this._tick());
  }
}

const groupKey = (c, job) => [c.seed, c.steps, c.frames, c.guidance, c.guidance_low, c.shift, job ? job.backend : ''].join('|');
const groupLabel = (c, job) => `seed ${c.seed} · ${c.steps} steps · ${c.frames} frames · cfg ${c.guidance}`
  + `${c.guidance_low !== null && c.guidance_low !== undefined ? `/${c.guidance_low}` : ''} · shift ${c.shift}`
  + `${job && job.backend === 'comfyui' ? ' · ComfyUI' : ''}`;
const rowKey = (c) => (c.lora ? c.lora.id : 'base');
const inputKey = (c) => `${c.image || ''}\u0000${c.prompt}`;

function describe(c) {
  return [`${loraLabel(c.lora)}${c.strength !== null && c.strength !== undefined ? ` at strength ${c.strength}` : ''}`,
    `prompt: ${c.prompt || '(none)'}`, c.image ? `image: ${c.image}` : null,
    `${c.width}×${c.height}, ${c.frames} frames at ${c.fps} fps`, `seed ${c.seed}, ${c.steps} steps, guidance ${c.guidance}`
    + `${c.guidance_low !== null && c.guidance_low !== undefined ? ` / ${c.guidance_low}` : ''}, shift ${c.shift}`,
    `job ${c.job_id}, ${c.seconds ?? '?'} s`].filter(Boolean).join('\n');
}

function downloadName(task, c) {
  const safe = (s) => String(s).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-|-$/g, '').slice(0, 40);
  const strength = c.strength !== null && c.strength !== undefined ? `_s${c.strength}` : '';
  return `${safe(task.name)}_${safe(loraLabel(c.lora))}${strength}_seed${c.seed}_${safe(c.image || c.prompt || 'input')}.mp4`;
}

export async function resultsView(container, ctx) {
  const player = new SyncPlayer((t, d) => {
    scrub.max = d || 0;
    if (document.activeElement !== scrub) scrub.value = t;
    clock.textContent = `${t.toFixed(2)} / ${d.toFixed(2)} s`;
  });
  const playBtn = h('button.primary#inf-play', { type: 'button', onclick: () => toggle() }, 'Play');
  const scrub = h('input#inf-scrub', { type: 'range', min: 0, max: 0, step: 0.01, value: 0, 'aria-label': 'Position',
    oninput: () => player.seek(Number(scrub.value)) });
  const clock = h('span.muted.inf-clock', '0.00 / 0.00 s');
  const loop = h('input', { type: 'checkbox', checked: true, onchange: () => { player.loop = loop.checked; } });
  const groupSel = h('select#inf-group', { 'aria-label': 'Settings', onchange: () => draw() });
  const active = h('div.inf-jobs');
  const grid = h('div.inf-grid-wrap');
  const details = h('aside.inf-details.card', { hidden: true });
  container.append(
    h('div.inf-toolbar.card', playBtn, scrub, clock, h('label.row', loop, 'loop'), h('span.grow'),
      h('label.row', 'Settings', groupSel), h('a.button', { href: `#/inference/${ctx.taskId}?tab=run` }, 'New test')),
    active, grid, details);

  let data = null;
  let signature = '';
  const following = new Map();

  function toggle() {
    if (player.playing) { player.pause(); playBtn.textContent = 'Play'; } else { player.play(); playBtn.textContent = 'Pause'; }
  }

  async function load() {
    const res = await api(`tasks/${ctx.taskId}/results`);
    if (ctx.scope.closed) return;               // the tab was left meanwhile: follow no job from a detached view
    data = res;
    for (const job of data.jobs.filter((j) => ACTIVE.includes(j.state))) {
      if (following.has(job.id)) continue;
      const p = jobProgress(job.id, () => setTimeout(() => refresh(), 300));
      p.live = h('div.inf-live');
      p.el.append(p.live);
      following.set(job.id, p);
      active.append(p.el);
    }
    showLive();
    const sig = JSON.stringify([data.best, data.cells.map((c) => [c.job_id, c.id, c.status])]);
    if (sig !== signature) { signature = sig; draw(); }
  }

  // The newest preview of each running cell, in its job's box; gone once the cell is done.
  function showLive() {
    for (const [jobId, p] of following) {
      const c = data.cells.find((x) => x.job_id === jobId && x.status === 'running' && (x.preview_url || x.video_fast_url));
      if (!c) { clear(p.live); continue; }
      const fast = Boolean(c.video_fast_url);        // sampling ended: TAEHV's full-size video, the full VAE's follows
      let fig = p.live.querySelector('figure');
      if (!fig || fig.dataset.cell !== c.id || fig.dataset.fast !== String(fast)) {
        const media = fast
          ? h('video', { src: fileUrl(c.video_fast_url), muted: true, autoplay: true, loop: true, playsinline: true })
          : h('img', { alt: 'live preview' });
        fig = h('figure.inf-live-cell', { dataset: { cell: c.id, fast: String(fast) } }, media, h('figcaption.muted.small'));
        fill(p.live, fig);
      }
      const img = fig.querySelector('img');
      if (img && img.getAttribute('src') !== fileUrl(c.preview_url)) img.setAttribute('src', fileUrl(c.preview_url));
      fig.querySelector('figcaption').textContent = `${loraLabel(c.lora)} · ${c.prompt || c.image || ''} · `
        + (fast ? 'fast decode (TAEHV); the full video follows' : `step ${c.preview_step}/${c.steps}`);
    }
  }

  async function refresh() { try { await load(); } catch (e) { showError(e, 'Results'); } }

  function draw() {
    const jobs = Object.fromEntries(data.jobs.map((j) => [j.id, j]));
    const done = data.cells.filter((c) => c.status === 'done');
    const groups = new Map();
    for (const c of [...done].reverse()) {
      const k = groupKey(c, jobs[c.job_id]);
      if (!groups.has(k)) groups.set(k, groupLabel(c, jobs[c.job_id]));
    }
    const keep = groupSel.value;
    fill(groupSel, [...groups].map(([k, label]) => h('option', { value: k, selected: k === keep }, label)));
    if (!groups.size) {
      fill(grid, h('p.muted', data.jobs.length ? 'No video yet: the test runs are on their way.'
        : 'No test yet: queue one in "New test", or switch on previews in "Prompts & previews".'));
      player.attach([]);
      return;
    }
    const key = groups.has(keep) ? keep : groups.keys().next().value;
    groupSel.value = key;
    const cells = new Map();         // row|input|strength -> newest cell
    for (const c of done) if (groupKey(c, jobs[c.job_id]) === key) cells.set(`${rowKey(c)}|${inputKey(c)}|${c.strength}`, c);
    const chosen = [...cells.values()];
    const inputs = [...new Map(chosen.map((c) => [inputKey(c), c])).values()];
    const strengths = [...new Set(chosen.filter((c) => c.strength !== null).map((c) => c.strength))].sort((a, b) => b - a);
    const nStr = Math.max(1, strengths.length);
    const best = data.best;
    const isBest = (c) => Boolean(best && c.lora && c.lora.job_id === best.job_id && c.lora.name === best.lora);
    const order = (c) => [isBest(c) ? 0 : 1, c.lora ? 1 : 0, c.lora ? c.lora.job_id : '', c.lora && c.lora.epoch !== null ? c.lora.epoch : 1e9,
      c.lora ? c.lora.step || 0 : 0];
    const rows = [...new Map(chosen.map((c) => [rowKey(c), c])).values()].sort((a, b) => {
      const x = order(a), y = order(b);
      for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
      return 0;
    });
    const head = h('tr', h('th', 'LoRA'), inputs.map((inp) => h('th', { colspan: nStr, class: 'inf-input' },
      inp.image ? h('img.inf-input-img', { src: imageUrl(inp.image), alt: inp.image, title: inp.image }) : null,
      h('span.inf-prompt', { title: inp.prompt }, inp.prompt || '(no prompt)'))));
    const sub = strengths.length ? h('tr', h('th'), inputs.map(() => strengths.map((s) => h('th.inf-strength', `strength ${s}`)))) : null;
    const body = rows.map((r) => h('tr', { class: isBest(r) ? 'best' : '', dataset: { row: rowKey(r) } },
      h('th.inf-row', h('div', `${isBest(r) ? '★ ' : ''}${loraLabel(r.lora)}`),
        r.lora ? h('div.muted.small', r.lora.job_id) : null,
        r.lora ? h('button.small', { type: 'button', onclick: () => markBest(isBest(r) ? null : r.lora) },
          isBest(r) ? 'Unmark best' : 'Mark best') : null),
      inputs.map((inp) => (r.lora
        ? strengths.map((s) => cellTd(cells.get(`${rowKey(r)}|${inputKey(inp)}|${s}`)))
        : cellTd(cells.get(`base|${inputKey(inp)}|null`), nStr)))));
    fill(grid, h('table.inf-grid', h('thead', head, sub), h('tbody', body)));
    player.attach([...grid.querySelectorAll('video')]);
    playBtn.textContent = 'Play';
  }

  function cellTd(c, colspan = 1) {
    if (!c) return h('td.inf-cell.empty', { colspan }, h('span.muted', '–'));
    const video = h('video', { src: fileUrl(c.video_url), poster: c.poster_url ? fileUrl(c.poster_url) : undefined,
      muted: true, playsinline: true, preload: 'auto', width: c.width, height: c.height });
    const link = h('a.button.small.inf-download', { href: downloadUrl(c), download: downloadName(ctx.task, c),
      title: 'Download the video' }, 'Download');
    return h('td.inf-cell', { colspan, title: describe(c), dataset: { cell: `${c.job_id}/${c.id}` } },
      h('div.inf-video', { onclick: () => showDetails(c) }, video),
      h('div.row.inf-cell-bar', h('button.small.link', { type: 'button', onclick: () => showDetails(c) }, 'Details'), link));
  }

  function downloadUrl(c) {
    return fileUrl(`${c.video_url}?download=${encodeURIComponent(downloadName(ctx.task, c))}`);
  }

  function showDetails(c) {
    details.hidden = false;
    fill(details, h('div.row', h('h2', loraLabel(c.lora)), h('span.grow'),
      h('button.small', { type: 'button', onclick: () => { details.hidden = true; } }, 'Close')),
    h('table', h('tbody', [['Strength', c.strength ?? '–'], ['Prompt', c.prompt || '(none)'], ['Image', c.image || '–'],
      ['Size', `${c.width}×${c.height}`], ['Frames', `${c.frames} at ${c.fps} fps`], ['Seed', c.seed], ['Steps', c.steps],
      ['Guidance', c.guidance_low !== null && c.guidance_low !== undefined ? `${c.guidance} / ${c.guidance_low}` : c.guidance],
      ['Shift', c.shift], ['Negative prompt', c.negative_default ? 'Wan\'s default' : (c.negative_prompt || '(none)')],
      ['Run', c.lora ? c.lora.job_id : '–'],
      ['Test job', c.job_id], ['Time', `${c.seconds ?? '?'} s`]].map(([k, v]) => h('tr', h('th', k), h('td', String(v)))))),
    h('a.button', { href: downloadUrl(c), download: downloadName(ctx.task, c) }, 'Download video'));
  }

  async function markBest(lora) {
    try {
      await api(`tasks/${ctx.taskId}/inference`, { method: 'PATCH',
        body: { best: lora ? { job_id: lora.job_id, name: lora.name } : null } });
      toast(lora ? `${loraLabel(lora)} marked as the best epoch` : 'Best epoch cleared', 'ok');
      await refresh();
    } catch (e) { showError(e, 'Best epoch'); }
  }

  // the first load, then again every second while a test job is queued or running (live previews; an error shows once)
  ctx.scope.poll(async () => { if (!data || data.jobs.some((j) => ACTIVE.includes(j.state))) await load(); }, 1000);
  return () => {
    player.pause();
    for (const p of following.values()) p.stop();
    clear(container);
  };
}
