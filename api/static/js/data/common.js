// Helpers the Data area's views share: dataset URLs, media URLs with the token, formats.
import { api, fileUrl } from '../api.js';

export const enc = encodeURIComponent;
export const encPath = (p) => p.split('/').map(encodeURIComponent).join('/');

// api() for a path under /api/v1/datasets/<name>
export function dsApi(dataset, rest = '', options = {}) {
  return api(`datasets/${enc(dataset)}${rest}`, options);
}

// A URL the browser loads directly (img, video): thumbnail, strip, media, preview.
export function mediaUrl(kind, dataset, file, query = {}) {
  const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null));
  const qs = [...q].length ? `?${q}` : '';
  return fileUrl(`/api/v1/datasets/${enc(dataset)}/${kind}/${encPath(file)}${qs}`);
}

export function formatSeconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return '–';
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, '0')}`;
}

export function mediaSummary(media) {
  if (!media) return '';
  const size = `${media.width}×${media.height}`;
  if (!media.duration) return size;
  return `${size} · ${formatSeconds(media.duration)} · ${media.fps ? media.fps.toFixed(2).replace(/\.?0+$/, '') : '?'} fps · ${media.frames} frames`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
