// Tell the user when a run ends or needs attention, wherever they are in the studio: the tab title
// ("(1) ✓ fox done — ODEO Studio") until the tab is looked at again, and, once the user asked for it with
// "Notify me" (and the browser allowed it), a browser notification.
//
//   startNotifier();            // once, from app.js: polls GET /jobs and GET /tasks
//   container.append(notifyButton());

import { api } from './api.js';
import { h, toast } from './ui.js';

const ACTIVE = ['queued', 'running', 'stopping'];
const SYMBOL = { done: '✓', failed: '✗', interrupted: '✗', stopped: '■', attention: '⚠' };
const WORD = { done: 'done', failed: 'failed', interrupted: 'interrupted', stopped: 'stopped', attention: 'needs attention' };
const KIND = { train: '', infer: ' test run', eval: ' evaluation', caption: ' captioning', download: ' download' };
const STORE = 'odeo.notify';
const POLL_MS = 3000;

let unseen = 0;
let latest = '';
let pageTitle = document.title;
let mine = null;                     // the title we set (to tell it from the page's own)

function wanted() {
  return localStorage.getItem(STORE) === '1' && typeof Notification !== 'undefined' && Notification.permission === 'granted';
}

function showTitle() {
  mine = unseen ? `(${unseen}) ${latest} — ODEO Studio` : null;
  document.title = mine || pageTitle;
}

function seen() {
  if (!unseen || document.visibilityState !== 'visible' || !document.hasFocus()) return;
  unseen = 0;
  showTitle();
}

function announce(job, what, name) {
  const text = `${SYMBOL[what]} ${name}${KIND[job.kind] ?? ''} ${WORD[what]}`;
  unseen += 1;
  latest = text;
  showTitle();
  if (wanted()) {
    try {
      const n = new Notification(`ODEO Studio: ${text}`, { body: job.message || '', tag: `odeo-${job.id}-${what}` });
      n.onclick = () => { window.focus(); window.location.hash = `#/training/${encodeURIComponent(job.task_id)}?tab=monitor&job=${encodeURIComponent(job.id)}`; };
    } catch (_) { /* a browser that allows notifications only from a service worker: the title is enough */ }
  }
}

export function startNotifier() {
  const known = new Map();           // job id -> {state, warnings}
  let first = true;
  const titleEl = document.querySelector('title');
  if (titleEl) {                     // the page sets its own titles: keep ours on top while something is unseen
    new MutationObserver(() => {
      if (document.title !== mine) {
        pageTitle = document.title;
        if (unseen) showTitle();
      }
    }).observe(titleEl, { childList: true });
  }
  window.addEventListener('focus', seen);
  document.addEventListener('visibilitychange', seen);
  document.addEventListener('click', seen);
  const tick = async () => {
    try {
      const [{ jobs }, { tasks }] = await Promise.all([api('jobs'), api('tasks')]);
      const names = new Map(tasks.map((t) => [t.id, t.name]));
      for (const j of jobs) {
        if ((j.origin || {}).action === 'preview') continue;         // samples come and go with training
        const before = known.get(j.id);
        const warnings = ((j.progress || {}).warnings || []).length;
        known.set(j.id, { state: j.state, warnings });
        if (first || !before) continue;
        const name = names.get(j.task_id) || j.task_id || j.id;
        if (ACTIVE.includes(before.state) && SYMBOL[j.state]) announce(j, j.state, name);
        else if (warnings > before.warnings) announce(j, 'attention', name);
      }
      first = false;
    } catch (_) { /* offline or unauthorized: the next tick tries again */ }
    setTimeout(tick, POLL_MS);
  };
  tick();
}

export function notifyButton() {
  const btn = h('button.plain.notify-me', { type: 'button', title: 'A browser notification when a run ends or needs attention' });
  const show = () => {
    const on = wanted();
    btn.textContent = on ? 'Notifications on ✓' : 'Notify me';
    btn.setAttribute('aria-pressed', on);
  };
  btn.onclick = async () => {
    if (typeof Notification === 'undefined') {
      toast('This browser has no notifications; the tab title still shows when a run ends.', 'info');
      return;
    }
    if (wanted()) {
      localStorage.removeItem(STORE);
    } else {
      const answer = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
      if (answer === 'granted') localStorage.setItem(STORE, '1');
      else toast('Notifications are blocked for this site; the tab title still shows when a run ends.', 'info');
    }
    show();
  };
  show();
  return btn;
}
