// GPUs area (placeholder until built).
import { h } from './ui.js';

export default {
  id: 'gpus',
  title: 'GPUs',
  render(container) {
    container.append(h('h1', 'GPUs'), h('p.muted', 'This area is being built.'));
  },
};
