// Inference area (placeholder until built).
import { h } from './ui.js';

export default {
  id: 'inference',
  title: 'Inference',
  render(container) {
    container.append(h('h1', 'Inference'), h('p.muted', 'This area is being built.'));
  },
};
