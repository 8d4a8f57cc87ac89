// The detail panel of one clip: player (Range-served, or a preview copy for codecs a browser cannot
// play), frame strip (click a frame to seek), caption editor, trim and scene split, delete.
import { h, confirmDialog, fieldRow, showError, toast, formatBytes } from '../ui.js';
import { dsApi, encPath, formatSeconds, mediaSummary, mediaUrl } from './common.js';

const STRIP_FRAMES = 8;

export async function clipDetail(dataset, file, { close, changed, removed }) {
  const info = await dsApi(dataset, `/files/${encPath(file)}`);
  const media = info.media;
  const isVideo = info.kind === 'video';
  const version = { v: Math.round(info.mtime) };
  const player = !media ? h('div.player.unreadable', info.error)
    : isVideo ? h('video.player', { src: mediaUrl('preview', dataset, file, version), controls: true, preload: 'metadata', loop: true, muted: true })
      : h('img.player', { src: mediaUrl('preview', dataset, file, version), alt: file });
  const seek = (t) => { if (isVideo) { player.currentTime = t; player.pause(); } };

  const strip = isVideo && media ? h('img.strip', {
    src: mediaUrl('strip', dataset, file, { ...version, n: STRIP_FRAMES }), alt: `${STRIP_FRAMES} frames of ${file}`,
    title: 'Click a frame to jump there',
    onclick: (e) => {
      const k = Math.min(STRIP_FRAMES - 1, Math.floor((e.offsetX / strip.clientWidth) * STRIP_FRAMES));
      seek(((k + 0.5) * media.duration) / STRIP_FRAMES);
    },
  }) : null;

  const remove = async () => {
    if (!await confirmDialog(`Delete ${file} and its caption from the dataset?`, { confirm: 'Delete', danger: true })) return;
    try { await dsApi(dataset, `/files/${encPath(file)}`, { method: 'DELETE', query: { confirm: 'true' } }); toast(`Deleted ${file}`, 'ok'); removed(); } catch (e) { showError(e, 'Delete'); }
  };

  return h('div.clip-panel', { dataset: { file } },
    h('div.row', h('h2.grow', { title: file }, file),
      h('button', { type: 'button', onclick: remove }, 'Delete'),
      h('button', { type: 'button', onclick: close, 'aria-label': 'Close' }, '×')),
    player,
    h('p.muted.clip-info', media ? `${mediaSummary(media)} · ${formatBytes(info.size)}` : info.error,
      isVideo && !info.playable ? ' · shown as a preview copy (this codec does not play in browsers)' : ''),
    strip,
    captionEditor(dataset, file, info.caption, changed),
    isVideo && media ? trimForm(dataset, file, media, player, changed) : null,
    isVideo && media ? splitForm(dataset, file, changed) : null);
}

function captionEditor(dataset, file, caption, changed) {
  const text = h('textarea.caption-edit', { rows: 5, 'aria-label': `Caption of ${file}` });
  text.value = caption.text || '';
  const origin = h('div.hint');
  const save = h('button.primary', { type: 'button' }, 'Save caption');
  const describe = (c) => {
    const who = { human: 'written by a person', machine: `written by ${c.model || 'a model'} (auto-captioning may replace it)`,
      none: 'no caption yet', table: `from ${c.source}, which takes precedence: edit that file instead` }[c.origin];
    origin.textContent = c.error ? `${c.error}. Saving replaces it.` : `${c.source ? `${c.source}: ` : ''}${who}`;
    origin.classList.toggle('error', Boolean(c.error));
    text.disabled = save.disabled = c.origin === 'table';
  };
  describe(caption);
  const doSave = async () => {
    try {
      const c = await dsApi(dataset, `/captions/${encPath(file)}`, { method: 'PUT', body: { text: text.value, replace_invalid: Boolean(caption.error) } });
      caption = c;
      describe(c);
      toast('Caption saved', 'ok', 2000);
      changed();
    } catch (e) { showError(e, 'Caption'); }
  };
  save.addEventListener('click', doSave);
  text.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); doSave(); } });
  return h('section.caption-box', h('h3', 'Caption'), text, h('div.row', save, h('span.muted', 'Ctrl+Enter saves')), origin);
}

function numberInput(value, label) {
  return h('input', { type: 'number', step: '0.01', min: '0', value, 'aria-label': label });
}

function trimForm(dataset, file, media, player, changed) {
  const start = numberInput('0', 'Trim start (seconds)');
  const end = numberInput(media.duration.toFixed(2), 'Trim end (seconds)');
  const here = (input) => h('button', { type: 'button', title: 'Use the player position', onclick: () => { input.value = player.currentTime.toFixed(2); } }, 'now');
  const run = h('button', { type: 'button' }, 'Cut new clip');
  run.addEventListener('click', async () => {
    run.disabled = true;
    try {
      const res = await dsApi(dataset, '/trim', { method: 'POST', body: { file, start: Number(start.value), end: Number(end.value) } });
      toast(`New clip ${res.file} (${formatSeconds(res.end - res.start)})`, 'ok');
      changed(res.file);
    } catch (e) { showError(e, 'Trim'); } finally { run.disabled = false; }
  });
  return h('section.trim', h('h3', 'Trim'),
    h('div.row', fieldRow('Start (s)', h('span.row', start, here(start))), fieldRow('End (s)', h('span.row', end, here(end))), run),
    h('div.hint', 'Writes a new clip with this part and a copy of the caption; the original stays as it is.'));
}

function splitForm(dataset, file, changed) {
  const threshold = h('input', { type: 'number', min: '1', max: '100', step: '1', value: '10', 'aria-label': 'Scene change threshold' });
  const minLength = h('input', { type: 'number', min: '0', step: '0.5', value: '1', 'aria-label': 'Minimum clip length (seconds)' });
  const result = h('div.split-result');
  let cuts = null;
  const find = h('button', { type: 'button' }, 'Find scenes');
  const apply = h('button.primary', { type: 'button', hidden: true }, 'Split');
  const body = () => ({ file, threshold: Number(threshold.value), min_length: Number(minLength.value) });
  find.addEventListener('click', async () => {
    find.disabled = true;
    result.textContent = 'looking for scene changes…';
    try {
      const res = await dsApi(dataset, '/split', { method: 'POST', body: { ...body(), dry_run: true } });
      cuts = res.cuts;
      const n = res.segments.length;
      result.replaceChildren(n > 1
        ? h('ol.segments', res.segments.map((s) => h('li', `${formatSeconds(s.start)} – ${formatSeconds(s.end)} (${formatSeconds(s.end - s.start)})`)))
        : h('span.muted', 'No scene change found at this threshold: try a lower one.'));
      apply.hidden = n < 2;
      apply.textContent = `Split into ${n} clips`;
    } catch (e) { showError(e, 'Scenes'); result.textContent = ''; } finally { find.disabled = false; }
  });
  apply.addEventListener('click', async () => {
    apply.disabled = true;
    try {
      const res = await dsApi(dataset, '/split', { method: 'POST', body: { ...body(), cuts } });
      toast(`${res.segments.length} new clips from ${file}`, 'ok');
      changed();
    } catch (e) { showError(e, 'Split'); } finally { apply.disabled = false; }
  });
  return h('section.split', h('h3', 'Split at scene changes'),
    h('div.row', fieldRow('Threshold (0–100)', threshold), fieldRow('Shortest clip (s)', minLength), find, apply),
    result,
    h('div.hint', 'FFmpeg scene detection (scdet); pieces shorter than the shortest length join their neighbour. Each new clip gets the caption.'));
}
