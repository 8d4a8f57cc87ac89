// Training area. Views (the URL holds them, so refresh and back keep the place):
//   #/training                                  task list (create, import, copy, rename, delete)
//   #/training?new=1[&dataset=<name>]           a new draft task (on that dataset), then its form
//   #/training/queue                            queued runs: order, why they wait, move, cancel
//   #/training/<task-id>?tab=config|toml|monitor[&job=<job-id>]   one task: form, TOML, monitor
// Task ids always contain a '-' (<prefix>-<yyyymmdd>-<nn>), so 'queue' never names a task.

import { api } from './api.js';
import { h, scope as makeScope } from './ui.js';
import { createFromLink, renderList } from './training/list.js';
import { renderQueue } from './training/queue.js';
import { renderTask } from './training/task.js';

function areaHeader(container, active, scope) {
  const count = h('span.count');
  const actions = h('div.row.header-actions');
  container.append(h('div.area-header',
    h('h1', 'Training'),
    h('nav.subtabs', { 'aria-label': 'Training views' },
      h('a', { href: '#/training', class: active === 'tasks' ? 'active' : '', 'aria-current': active === 'tasks' ? 'page' : false }, 'Tasks'),
      h('a', { href: '#/training/queue', class: active === 'queue' ? 'active' : '', 'aria-current': active === 'queue' ? 'page' : false }, 'Queue ', count)),
    h('span.grow'), actions));
  const setCount = (n) => { count.textContent = n ? String(n) : ''; };
  if (active !== 'queue') api('queue', { signal: scope.signal }).then((q) => setCount(q.jobs.length)).catch(() => {});
  return { actions, setCount };
}

export default {
  id: 'training',
  title: 'Training',
  async render(container, route) {
    const scope = makeScope();
    try {
      const sub = route.parts[0];
      if (!sub && route.query.get('new') === '1') {
        await createFromLink(route.query.get('dataset'));
      } else if (sub && sub !== 'queue') {
        await renderTask(container, route, scope);
      } else {
        const { actions, setCount } = areaHeader(container, sub === 'queue' ? 'queue' : 'tasks', scope);
        if (sub === 'queue') await renderQueue(container, scope, setCount);
        else await renderList(container, scope, actions);
      }
    } catch (e) {
      scope.close();
      if (e.status === 404) {
        container.append(h('div.empty', h('h2', 'No such task'), h('p.muted', e.message),
          h('a', { href: '#/training' }, 'Back to the task list')));
        return null;
      }
      throw e;
    }
    return scope.close;
  },
};
