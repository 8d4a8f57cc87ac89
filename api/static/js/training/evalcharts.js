// The monitor's evaluation card: the eval loss of each eval dataset (its mean per evaluation) on a scale of
// its own, the gradient norm of each step, and the trainer's warnings (e.g. asked to evaluate with nothing to
// evaluate). Fed with the same metric series as the loss chart.
//
//   const ev = new EvalCharts();  container.append(ev.el);
//   ev.merge(series);  ev.reset();  ev.setWarnings(progress.warnings);  ev.destroy();

import { LossChart } from '../chart.js';
import { fill, formatNumber, h } from '../ui.js';

const EVAL_MEAN = /^eval\/(.+)\/loss$/;
const GRAD = 'train/grad_norm';
const COLOURS = ['224,123,0', '197,48,48', '128,64,192', '0,140,150'];

// A LossChart drawing only the series `pick` chooses, with its own axis label and empty text.
class SeriesChart extends LossChart {
  constructor(container, { pick, axis, empty, height = 200 }) {
    super(container, { height, smoothing: 0 });
    this.pick = pick;
    this.axis = axis;
    this.empty.textContent = empty;
    this.smoothSelect.hidden = true;
    this.redraw(true);
  }

  layout() {
    if (!this.pick) return [];
    return [...this.points.keys()].sort().map((name) => this.pick(name)).filter(Boolean);
  }

  options(layout) {
    const o = super.options(layout);
    o.axes[1].label = this.axis;
    return o;
  }
}

export class EvalCharts {
  constructor() {
    this.warnings = h('div.eval-warnings');
    this.evalBox = h('div.eval-chart');
    this.gradBox = h('div.grad-chart');
    this.table = h('div.eval-table');
    this.evalChart = new SeriesChart(this.evalBox, {
      axis: 'eval loss',
      empty: 'No eval loss: this run evaluates nothing (choose an eval dataset or a held-out share in the configuration).',
      pick: (name) => {
        const m = name.match(EVAL_MEAN);
        if (!m) return null;
        this.sets = this.sets || [];
        if (!this.sets.includes(m[1])) this.sets.push(m[1]);
        const rgb = COLOURS[this.sets.indexOf(m[1]) % COLOURS.length];
        return { name, label: `eval ${m[1]}`, scale: 'loss', stroke: `rgba(${rgb},1)`, width: 2, points: true };
      },
    });
    this.gradChart = new SeriesChart(this.gradBox, {
      axis: 'grad norm',
      empty: 'No gradient norm yet.',
      pick: (name) => (name === GRAD ? { name, label: 'grad norm', scale: 'loss', stroke: 'rgba(31,138,76,1)', width: 1 } : null),
    });
    this.el = h('section.card.eval-card',
      h('h2', 'Evaluation and gradient norm'), this.warnings,
      h('div.eval-grid', h('div', h('h3', 'Eval loss'), this.evalBox, this.table), h('div', h('h3', 'Gradient norm'), this.gradBox)));
  }

  merge(series) {
    this.evalChart.merge(series);
    this.gradChart.merge(series);
    this.renderTable();
  }

  reset() {
    this.evalChart.reset();
    this.gradChart.reset();
  }

  // Each evaluation as a row: step, epoch, and the mean loss of each eval dataset.
  renderTable() {
    const names = [...this.evalChart.points.keys()].filter((n) => EVAL_MEAN.test(n)).sort();
    if (!names.length) {
      fill(this.table);
      return;
    }
    const steps = [...new Set(names.flatMap((n) => this.evalChart.points.get(n).steps))].sort((a, b) => a - b);
    const value = (n, step) => {
      const s = this.evalChart.points.get(n);
      const i = s.steps.indexOf(step);
      return i < 0 || s.values[i] === null ? '–' : formatNumber(s.values[i]);
    };
    fill(this.table, h('table.compact.eval-losses',
      h('thead', h('tr', h('th', 'step'), names.map((n) => h('th', `eval ${n.match(EVAL_MEAN)[1]}`)))),
      h('tbody', steps.map((step) => h('tr', { dataset: { step } }, h('td', step), names.map((n) => h('td', value(n, step))))))));
  }

  setWarnings(list) {
    const key = JSON.stringify(list || []);
    if (key === this.shown) return;
    this.shown = key;
    fill(this.warnings, (list || []).map((w) => h('div.notice.warn', { role: 'status' }, `Trainer: ${w}`)));
  }

  destroy() {
    this.evalChart.destroy();
    this.gradChart.destroy();
  }
}
