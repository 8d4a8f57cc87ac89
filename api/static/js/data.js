// Data area (placeholder until built).
import { h } from './ui.js';

export default {
  id: 'data',
  title: 'Data',
  render(container) {
    container.append(h('h1', 'Data'), h('p.muted', 'This area is being built.'));
  },
};
