// Small DOM helpers shared by every area: element builder, toasts, confirm dialog, formatting.

// h('div.card#id', {onclick, title, dataset: {...}, ...attrs}, child, [children], 'text')
export function h(spec, attrs = {}, ...children) {
  const [, tag = 'div', rest = ''] = spec.match(/^([a-z0-9-]*)(.*)$/i);
  const el = document.createElement(tag || 'div');
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs instanceof Node || typeof attrs === 'string' || typeof attrs === 'number' || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'class') el.className += ` ${v}`;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function toast(message, kind = 'info', ms = 5000) {
  const box = document.getElementById('toasts');
  const el = h(`div.toast.${kind}`, { role: kind === 'error' ? 'alert' : 'status' }, message);
  box.append(el);
  setTimeout(() => el.remove(), ms);
  return el;
}

// Show an error from api() (or anything thrown) as a message, never a stack trace.
export function showError(err, where) {
  const text = err && err.message ? err.message : String(err);
  toast(where ? `${where}: ${text}` : text, 'error', 8000);
}

export function confirmDialog(message, { confirm = 'OK', cancel = 'Cancel', danger = false } = {}) {
  return new Promise((resolve) => {
    const dialog = h('dialog.confirm', {},
      h('p', message),
      h('div.actions',
        h('button', { type: 'button', onclick: () => { dialog.close(); resolve(false); } }, cancel),
        h(`button${danger ? '.danger' : '.primary'}`, { type: 'button', onclick: () => { dialog.close(); resolve(true); } }, confirm)));
    dialog.addEventListener('close', () => { dialog.remove(); resolve(false); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function formatBytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '–';
  seconds = Math.round(seconds);
  const hh = Math.floor(seconds / 3600), mm = Math.floor((seconds % 3600) / 60), ss = seconds % 60;
  return hh ? `${hh}h ${String(mm).padStart(2, '0')}m` : mm ? `${mm}m ${String(ss).padStart(2, '0')}s` : `${ss}s`;
}

export function formatTime(unixSeconds) {
  return unixSeconds ? new Date(unixSeconds * 1000).toLocaleString() : '';
}

// The time alone for today, else the date and time without seconds.
export function formatShortTime(unixSeconds) {
  if (!unixSeconds) return '';
  const d = new Date(unixSeconds * 1000);
  return d.toDateString() === new Date().toDateString()
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : d.toLocaleString([], { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// Poll fn every ms while the view is alive; returns a stop function. Errors are shown once, not per tick.
export function poll(fn, ms) {
  let stopped = false, timer = null, failing = false;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
      failing = false;
    } catch (e) {
      if (stopped || (e && e.name === 'AbortError')) return;
      if (!failing) showError(e);
      failing = true;
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

// What a view owns while it is shown: polls, listeners, timers and in-flight requests (pass
// scope.signal to api()). The view's render returns scope.close, and leaving the view ends them all.
// What is added after the scope closed (by a render that finished late) is ended at once.
export function scope() {
  const controller = new AbortController();
  const enders = [];
  const end = (fn) => { try { fn(); } catch (_) { /* ignore */ } };
  const self = {
    signal: controller.signal,
    get closed() { return controller.signal.aborted; },
    add(fn) {
      if (self.closed) end(fn);
      else enders.push(fn);
      return fn;
    },
    poll(fn, ms) { return self.closed ? () => {} : self.add(poll(fn, ms)); },
    on(target, event, fn, options) {
      target.addEventListener(event, fn, options);
      return self.add(() => target.removeEventListener(event, fn, options));
    },
    close() {
      controller.abort();
      while (enders.length) end(enders.pop());
    },
  };
  return self;
}

// A row of tabs (.tabs > button.tab) over a body; items: [{id, title, render(panel, scope)}]. Each shown
// tab renders into a panel of its own (div.tab-panel, plus opts.panelClass) with a scope() of its own;
// render may be async and may return a cleanup function, which joins that scope. Showing another tab, or
// close() (the area's cleanup when it is left), closes the shown tab's scope, so a render still awaiting
// then draws into a detached panel and what it starts is ended. opts.onShow(id) runs on every switch
// (e.g. to keep the tab in the URL); show(id) returns when the tab is drawn and throws its render's error.
export function tabView(items, { label, panelClass, onShow } = {}) {
  let current = null;
  const show = async (id) => {
    const item = items.find((t) => t.id === id) || items[0];
    if (current) current.close();
    const mine = scope();
    current = mine;
    for (const b of bar.children) b.setAttribute('aria-selected', b.dataset.tab === item.id ? 'true' : 'false');
    if (onShow) onShow(item.id);
    const panel = h('div.tab-panel', { role: 'tabpanel', class: panelClass });
    body.replaceChildren(panel);
    try {
      const done = await item.render(panel, mine);
      if (typeof done === 'function') mine.add(done);
    } catch (e) {
      const overtaken = mine.closed;
      mine.close();
      if (!overtaken && !(e && e.name === 'AbortError')) throw e;
    }
  };
  const bar = h('div.tabs', { role: 'tablist', 'aria-label': label }, items.map((t) => h('button.tab', {
    type: 'button', role: 'tab', dataset: { tab: t.id }, onclick: () => show(t.id).catch((e) => showError(e, t.title)),
  }, t.title)));
  const body = h('div.tab-body');
  return { bar, body, show, close: () => { if (current) current.close(); } };
}

// fn delayed until `ms` passed with no new call; .cancel() drops a pending call, .pending() says if one waits.
export function debounce(fn, ms) {
  let timer = null, args = null;
  const run = () => { timer = null; const a = args; args = null; return fn(...a); };
  const wrapped = (...a) => { args = a; clearTimeout(timer); timer = setTimeout(run, ms); };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; args = null; };
  wrapped.pending = () => timer !== null;
  return wrapped;
}

export function promptDialog(message, { value = '', confirm = 'OK', cancel = 'Cancel', label = '' } = {}) {
  return new Promise((resolve) => {
    let answer = null;
    const input = h('input', { type: 'text', value, 'aria-label': label || message });
    const form = h('form', { method: 'dialog' },
      h('p', message), input,
      h('div.actions',
        h('button', { type: 'button', onclick: () => dialog.close() }, cancel),
        h('button.primary', { type: 'submit' }, confirm)));
    form.addEventListener('submit', () => { answer = input.value; });
    const dialog = h('dialog.confirm', {}, form);
    dialog.addEventListener('close', () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    input.select();
  });
}

export function formatNumber(v, digits = 4) {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

// A state badge: <span class="badge <state>">state</span> (colours in app.css).
export function badge(state, title) {
  return h(`span.badge.${String(state || 'unknown').replace(/[^a-z0-9_-]/gi, '')}`, { title }, state || 'unknown');
}

// Replace el's children (null / false skipped, arrays flattened, like h()).
export function fill(el, ...children) {
  return append(clear(el), children);
}

// A labelled form field: <label class="field"><span>label</span> input <div class="hint">hint</div></label>
export function fieldRow(label, input, hint) {
  return h('label.field', h('span', label), input, hint ? h('div.hint', hint) : null);
}
