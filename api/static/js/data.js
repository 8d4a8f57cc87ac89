// Data area: the list of datasets (#/data) and one dataset (#/data/<name>?tab=clips|captions|buckets|import
// &file=<clip>&q=<search>). The views live in js/data/*.js.
import datasetList from './data/list.js';
import datasetPage from './data/dataset.js';

export default {
  id: 'data',
  title: 'Data',
  render(container, route) {
    return route.parts[0] ? datasetPage(container, route.parts[0], route) : datasetList(container);
  },
};
