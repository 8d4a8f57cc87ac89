// The raw TOML editors (config.toml and dataset.toml of the draft): a textarea with line numbers, the
// lines that validation issues name highlighted, and the issues listed under the editor with a link
// to their line. keyLine() finds the line of a dotted key such as `optimizer.lr` or `directory[0].path`.

import { fill, h } from '../ui.js';

const LINE_PX = 20;            // must match .code-editor line-height in training.css
const PAD_PX = 8;              // and its padding

function keyParts(dotted) {
  const out = [];
  for (const part of dotted.split('.')) {
    const m = part.match(/^([^[\]]+)((?:\[\d+\])*)$/);
    if (!m) return [...out, part];
    out.push(m[1], ...[...m[2].matchAll(/\[(\d+)\]/g)].map((x) => Number(x[1])));
  }
  return out;
}

function unquote(k) {
  k = k.trim();
  return /^(["']).*\1$/.test(k) ? k.slice(1, -1) : k;
}

function splitDotted(text) {
  return (text.match(/"[^"]*"|'[^']*'|[^.]+/g) || []).map(unquote);
}

// The line a TOML syntax error names ("... (at line 3, column 5)", or the end of the document).
function syntaxLine(text, message) {
  const m = String(message).match(/line (\d+)/);
  if (m) return Number(m[1]);
  return /end of document/.test(message) ? text.split('\n').length : null;
}

// 1-based line of `dotted` in `text`, or of the nearest enclosing key or table; null when absent.
function keyLine(text, dotted) {
  const want = keyParts(dotted).filter((p) => typeof p === 'string');
  const lines = text.split('\n');
  let table = [], best = null, bestLen = 0;
  const counts = new Map();
  lines.forEach((line, i) => {
    const t = line.trim();
    let hm = t.match(/^\[\[([^\]]+)\]\]/) || t.match(/^\[([^\]]+)\]/);
    if (hm) {
      table = splitDotted(hm[1]);
      const key = table.join('.');
      counts.set(key, (counts.get(key) || 0) + 1);
      const len = prefixLen(table, want);
      if (len > bestLen) { best = i + 1; bestLen = len; }
      return;
    }
    const km = t.match(/^((?:"[^"]*"|'[^']*'|[A-Za-z0-9_.\- ])+?)\s*=/);
    if (!km || t.startsWith('#')) return;
    const path = [...table, ...splitDotted(km[1])];
    const len = prefixLen(path, want);
    if (len === path.length && len > bestLen) { best = i + 1; bestLen = len; }
  });
  if (best !== null && bestLen < want.length) {
    // the rest of the key may sit inside an inline table or array below the matched line
    const last = want[want.length - 1];
    const re = new RegExp(`[{,\\s]${last.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*=`);
    for (let i = best - 1; i < Math.min(lines.length, best + 40); i += 1) {
      if (i > best - 1 && /^\s*(\[|[A-Za-z0-9_"'-]+\s*=)/.test(lines[i]) && !/^\s*\{/.test(lines[i])) break;
      if (re.test(` ${lines[i]}`)) return i + 1;
    }
  }
  return best;
}

function prefixLen(path, want) {
  let n = 0;
  while (n < path.length && n < want.length && path[n] === want[n]) n += 1;
  return n === path.length || n === want.length ? n : 0;
}

export class TomlEditor {
  constructor({ title, file, text, onInput }) {
    this.file = file;
    this.gutter = h('div.code-gutter', { 'aria-hidden': 'true' });
    this.marks = h('div.code-marks', { 'aria-hidden': 'true' });
    this.area = h('textarea.code-text', { wrap: 'off', spellcheck: false, autocomplete: 'off',
      'aria-label': `${title} (${file})`, dataset: { file } });
    this.area.value = text;
    this.list = h('ul.code-issues', { 'aria-live': 'polite' });
    this.issues = [];
    this.area.addEventListener('input', () => { this.renumber(); this.placeMarks(); onInput(this.area.value); });
    this.area.addEventListener('scroll', () => this.sync());
    this.el = h('section.toml-editor', { dataset: { file } },
      h('h2', title, ' ', h('span.muted', file)),
      h('div.code-editor', this.gutter, h('div.code-wrap', this.marks, this.area)),
      this.list);
    this.renumber();
  }

  get value() { return this.area.value; }

  // New text from the studio; not while the user types here.
  setText(text) {
    if (document.activeElement === this.area || this.area.value === text) return;
    const { scrollTop } = this.area;
    this.area.value = text;
    this.area.scrollTop = scrollTop;
    this.renumber();
    this.placeMarks();
  }

  renumber() {
    const n = this.area.value.split('\n').length;
    if (n === this.lineCount) return;
    this.lineCount = n;
    this.area.style.height = `${Math.min(Math.max(n, 12), 36) * LINE_PX + 2 * PAD_PX + 14}px`;
    fill(this.gutter, ...Array.from({ length: n }, (_, i) => h('div', String(i + 1))));
    this.paintGutter();
  }

  setIssues(issues) {
    this.issues = issues.filter((i) => i.file === this.file).map((i) => ({ ...i }));
    this.placeMarks();
    fill(this.list, ...this.issues.map((i) => h('li.issue',
      i.line ? h('a', { href: '#', onclick: (e) => { e.preventDefault(); this.goto(i.line); } }, `line ${i.line}`) : h('span.muted', 'not in the file'),
      ` ${i.key === '(syntax)' ? '' : `${i.key}: `}${i.message}`)));
  }

  placeMarks() {
    const text = this.area.value;
    for (const i of this.issues) i.line = i.key === '(syntax)' ? syntaxLine(text, i.message) : keyLine(text, i.key);
    fill(this.marks, ...this.issues.filter((i) => i.line).map((i) => h('div.code-mark', {
      style: { top: `${PAD_PX + (i.line - 1) * LINE_PX}px` }, title: i.message })));
    this.paintGutter();
    this.sync();
    if (this.list.children.length === this.issues.length) {
      this.issues.forEach((i, n) => {
        const a = this.list.children[n].firstChild;
        if (a && a.tagName === 'A') a.textContent = `line ${i.line}`;
      });
    }
  }

  paintGutter() {
    const bad = new Map(this.issues.filter((i) => i.line).map((i) => [i.line, i.message]));
    [...this.gutter.children].forEach((d, n) => {
      const msg = bad.get(n + 1);
      d.classList.toggle('bad', Boolean(msg));
      if (msg) d.title = msg; else d.removeAttribute('title');
    });
  }

  sync() {
    this.gutter.style.transform = `translateY(${-this.area.scrollTop}px)`;
    this.marks.style.transform = `translateY(${-this.area.scrollTop}px)`;
  }

  goto(line) {
    const lines = this.area.value.split('\n');
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    this.area.focus();
    this.area.setSelectionRange(start, start + (lines[line - 1] || '').length);
    this.area.scrollTop = Math.max(0, (line - 4) * LINE_PX);
    this.sync();
  }
}
