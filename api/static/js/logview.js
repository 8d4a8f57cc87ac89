// An incremental log viewer over GET .../log?offset= (see docs/api.md, "Polling cheaply"): starts with
// the last `tail` bytes, then asks for what follows `next_offset`. Complete lines are appended; the
// unfinished last line (a progress bar's current state) is shown apart and replaced on every read.
// Follows the end while the user is at the bottom; keeps at most `maxChars` in the page. Scrolling to the
// top loads the lines before the first one shown (GET .../log?before=<offset>), a chunk at a time.
//
//   const log = new LogView({ read: (query) => api(`jobs/${id}/log`, { query }), downloadUrl });
//   container.append(log.el);  await log.update();     // call update() from a poll
//   log.reset();                                       // another source: start over

import { h, clear } from './ui.js';

export class LogView {
  constructor({ read, downloadUrl = null, tail = 16384, maxChars = 400000, maxReads = 8 }) {
    this.read = read;
    this.tail = tail;
    this.maxChars = maxChars;
    this.maxReads = maxReads;
    this.text = h('span.log-text');
    this.partial = h('span.log-partial');
    this.pre = h('pre.log-lines', { tabindex: '0', 'aria-label': 'Log', 'aria-live': 'off' }, this.text, this.partial);
    this.note = h('span.muted.log-note');
    this.follow = h('input', { type: 'checkbox', checked: true,
      onchange: () => { if (this.follow.checked) this.scrollToEnd(); } });
    this.el = h('div.logview',
      h('div.logview-bar',
        h('label.inline', this.follow, ' Follow the end'),
        this.note,
        h('span.grow'),
        this.full = downloadUrl ? h('a', { href: downloadUrl, target: '_blank', rel: 'noopener', hidden: true }, 'Open the full log') : null),
      this.pre);
    this.pre.addEventListener('scroll', () => {
      const atEnd = this.pre.scrollHeight - this.pre.scrollTop - this.pre.clientHeight < 24;
      if (this.follow.checked !== atEnd) this.follow.checked = atEnd;
      if (this.pre.scrollTop < 40) this.loadEarlier();
    });
    this.reset();
  }

  reset() {
    this.offset = null;        // null: nothing read yet (the first read takes the tail)
    this.first = null;         // byte offset of the first line shown (0: the file's start)
    this.chars = 0;
    this.dropped = false;
    this.size = 0;
    clear(this.text);
    this.partial.textContent = '';
    this.showNote();
  }

  async update() {
    for (let i = 0; i < this.maxReads; i += 1) {
      const query = this.offset === null ? { offset: 0, tail: this.tail } : { offset: this.offset };
      const chunk = await this.read(query);
      if (chunk.reset) this.reset();
      if (this.offset === null) this.first = chunk.offset;
      this.offset = chunk.next_offset;
      this.size = chunk.size;
      if (chunk.text) this.append(chunk.text);
      this.partial.textContent = chunk.partial || '';
      if (chunk.eof) break;
    }
    this.showNote();
    if (this.follow.checked) this.scrollToEnd();
  }

  // The lines before the first one shown, kept in view where the user was reading.
  async loadEarlier() {
    if (this.loading || !this.first || this.dropped) return;
    this.loading = true;
    try {
      const chunk = await this.read({ before: this.first });
      if (chunk.text && chunk.next_offset === this.first) {
        const height = this.pre.scrollHeight;
        this.text.prepend(document.createTextNode(chunk.text));
        this.chars += chunk.text.length;
        this.pre.scrollTop += this.pre.scrollHeight - height;
      }
      this.first = chunk.offset;
      this.showNote();
    } finally {
      this.loading = false;
    }
  }

  append(text) {
    this.text.append(document.createTextNode(text));
    this.chars += text.length;
    while (this.chars > this.maxChars && this.text.firstChild && this.text.childNodes.length > 1) {
      this.chars -= this.text.firstChild.textContent.length;
      this.text.firstChild.remove();
      this.dropped = true;
    }
  }

  showNote() {
    const empty = !this.chars && !this.partial.textContent;
    if (this.full) this.full.hidden = !this.size;
    this.note.textContent = empty ? 'Nothing logged yet.'
      : this.dropped ? 'Earlier lines are not shown here; open the full log to see them.'
        : this.first ? 'Scroll up for earlier lines.' : '';
  }

  scrollToEnd() {
    this.pre.scrollTop = this.pre.scrollHeight;
  }
}
