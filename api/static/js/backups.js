// The backup card (shown in the GPUs area, with the machine's other state): the last snapshot, its size,
// the last failure, when the next one is due, and "Back up now". Polls GET /backups while shown.

import { api } from './api.js';
import { badge, fill, formatBytes, formatShortTime, h, showError, toast } from './ui.js';

function lines(v) {
  const ok = v.last_ok;
  const last = v.last;
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return [
    ok ? h('div', 'Last backup ', h('strong', formatShortTime(ok.finished_at)), ` · ${formatBytes(ok.bytes)} in `,
      plural(ok.files, 'file'), ` (${formatBytes(ok.new_bytes)} new) · ${plural(ok.listed, 'file')} listed, not copied`)
      : h('div.muted', 'No backup yet.'),
    last && !last.ok ? h('div.backup-failure', { role: 'alert' },
      `Failed ${formatShortTime(last.finished_at)}: ${last.error}`) : null,
    ok && ok.skipped && ok.skipped.length ? h('div.backup-failure',
      `${plural(ok.skipped.length, 'file')} could not be read, e.g. ${ok.skipped[0].path}`) : null,
    h('div.muted.small', v.next_at ? `Every ${v.interval_h} h; next ${formatShortTime(v.next_at)}` : 'Schedule off (backup_interval_h = 0)',
      ` · keeps ${v.keep_daily} daily, ${v.keep_weekly} weekly · ${v.snapshots.length} kept in `, h('code', v.dir)),
    v.inside_data_root ? h('div.muted.small', 'This folder is on the disk it backs up: set backup_dir to another disk or a mounted share.') : null,
  ];
}

export function backupCard(scope) {
  const state = h('span');
  const body = h('div.backup-body');
  const button = h('button', { type: 'button' }, 'Back up now');
  let sig = '';
  const draw = (v) => {
    const s = JSON.stringify(v);
    if (s === sig) return;
    sig = s;
    button.disabled = Boolean(v.running);
    fill(state, v.running ? badge('running') : v.last ? badge(v.last.ok ? 'done' : 'failed') : null);
    fill(body, lines(v));
  };
  button.onclick = async () => {
    button.disabled = true;
    try {
      draw(await api('backups', { method: 'POST', signal: scope.signal }));
      toast('Backup started');
    } catch (e) {
      showError(e, 'Backup');
      button.disabled = false;
    }
  };
  scope.poll(async () => draw(await api('backups', { signal: scope.signal })), 3000);
  return h('section.card.backup-card', { 'aria-label': 'Backups' },
    h('div.row', h('h2', 'Backups'), state, h('span.grow'), button), body);
}
