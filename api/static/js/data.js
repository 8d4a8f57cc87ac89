// Data area: the list of datasets (#/data) and one dataset (#/data/<name>?tab=clips|captions|buckets|import
// &file=<clip>&q=<search>). The views live in js/data/*.js.
import datasetList from './data/list.js';
import datasetPage from './data/dataset.js';

export default {
  id: 'data',
  title: 'Data',
  // The router gives each render an element of its own, so a render a newer one overtook finds it detached.
  render(container, route) {
    container.classList.add('data-view');
    return route.parts[0] ? datasetPage(container, route.parts[0], route) : datasetList(container);
  },
};
