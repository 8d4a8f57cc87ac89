// Inference area: test the LoRAs a training run saved.
//
//   #/inference                          tasks with LoRAs, the test-image gallery, ComfyUI status
//   #/inference?tab=gallery              the gallery alone
//   #/inference/<task-id>?tab=results    the comparison grid (epochs x inputs x strengths, played in sync)
//   #/inference/<task-id>?tab=run        a new test run (an `infer` job)
//   #/inference/<task-id>?tab=batch      a batch evaluation (an `eval` job) and its results table
//   #/inference/<task-id>?tab=settings   the task's test prompts, images and preview settings
//
// The pieces live in js/inference/*.js; this file routes and draws the page frame.

import { api } from './api.js';
import { badge, h, showError, tabView } from './ui.js';
import { setQuery } from './router.js';
import { galleryView } from './inference/gallery.js';
import { resultsView } from './inference/grid.js';
import { runView } from './inference/form.js';
import { settingsView } from './inference/settings.js';
import { batchView } from './inference/batch.js';
import { comfyStatus, loraLabel } from './inference/common.js';

const TASK_TABS = [
  { id: 'results', title: 'Results', view: resultsView },
  { id: 'run', title: 'New test', view: runView },
  { id: 'batch', title: 'Batch evaluation', view: batchView },
  { id: 'settings', title: 'Prompts & previews', view: settingsView },
];

// A row of tabs over a body; the chosen tab is kept in the URL (?tab=, left out for the first one). A view
// is called as view(panel, {...ctx, scope, go(tab)}) and may return a cleanup function.
async function tabbed(container, head, items, active, ctx) {
  const go = (id) => tabs.show(id).catch((e) => showError(e));
  const tabs = tabView(items.map((t) => ({ ...t, render: (panel, scope) => t.view(panel, { ...ctx, scope, go }) })), {
    label: 'Inference views', panelClass: 'inf-body',
    onShow: (id) => setQuery({ tab: id === items[0].id ? null : id }),
  });
  container.append(head, tabs.bar, tabs.body);
  await tabs.show(active);
  return tabs.close;
}

function overview(container, route) {
  const items = [{ id: 'tasks', title: 'Tasks', view: tasksList }, { id: 'gallery', title: 'Test images', view: (body) => galleryView(body, {}) }];
  return tabbed(container, h('div.inf-head', h('h1', 'Inference'), comfyStatus()), items,
    route.query.get('tab') || 'tasks', {});
}

async function tasksList(body) {
  const [{ tasks }, groups] = await Promise.all([api('tasks'), api('inference/loras')]);
  const byTask = Object.fromEntries(groups.tasks.map((g) => [g.task_id, g]));
  if (!tasks.length) {
    body.append(h('p.muted', 'No task yet. Create one in Training; its saved LoRAs appear here.'));
    return;
  }
  body.append(h('table.inf-tasks',
    h('thead', h('tr', h('th', 'Task'), h('th', 'State'), h('th', 'LoRAs'), h('th', 'Best'), h('th', ''))),
    h('tbody', tasks.map((t) => {
      const g = byTask[t.id] || { loras: [] };
      return h('tr', { dataset: { task: t.id } },
        h('td', h('a', { href: `#/inference/${encodeURIComponent(t.id)}` }, t.name)),
        h('td', badge(t.state)),
        h('td', g.loras.length ? g.loras.map(loraLabel).join(', ') : h('span.muted', 'none yet')),
        h('td', t.best_lora ? `★ ${loraLabel({ name: t.best_lora.lora, epoch: t.best_lora.epoch })}` : ''),
        h('td', h('a.button', { href: `#/inference/${encodeURIComponent(t.id)}?tab=run` }, 'New test')));
    }))));
}

async function taskPage(container, route) {
  const taskId = route.parts[0];
  const task = await api(`tasks/${encodeURIComponent(taskId)}`);
  const head = h('div.inf-head',
    h('div', h('a.muted', { href: '#/inference' }, 'Inference'), ' / ', h('h1.inline', task.name)), comfyStatus());
  return tabbed(container, head, TASK_TABS, route.query.get('tab') || 'results', { task, taskId });
}

export default {
  id: 'inference',
  title: 'Inference',
  render(container, route) {
    return route.parts.length ? taskPage(container, route) : overview(container, route);
  },
};
