// Training area (placeholder until built).
import { h } from './ui.js';

export default {
  id: 'training',
  title: 'Training',
  render(container) {
    container.append(h('h1', 'Training'), h('p.muted', 'This area is being built.'));
  },
};
