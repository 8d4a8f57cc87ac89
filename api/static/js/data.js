// Data area: the list of datasets (#/data) and one dataset (#/data/<name>?tab=clips|captions|buckets|import
// &file=<clip>&q=<search>). The views live in js/data/*.js.
import { h } from './ui.js';
import datasetList from './data/list.js';
import datasetPage from './data/dataset.js';

export default {
  id: 'data',
  title: 'Data',
  // Each render draws into its own element, appended at once: a render overtaken by a newer one (the
  // router may render twice for one navigation) finds its element detached and stops.
  render(container, route) {
    const root = h('div.data-view');
    container.append(root);
    return route.parts[0] ? datasetPage(root, route.parts[0], route) : datasetList(root);
  },
};
