// Loss curves with uPlot (vendored, global `uPlot`): train loss (raw and smoothed), each eval set's mean
// loss with its quantile curves and a q0.1-q0.9 band, and the learning rate on a second axis.
//
//   const chart = new LossChart(container);
//   chart.merge(metrics.series);    // {name: {steps, values}} as GET /jobs/{id}/metrics returns them
//   chart.reset();  chart.destroy();
//
// merge() takes the points `metrics?after=` returned: a series whose new points start at or before
// its last step (a resumed run redoing steps) is cut there first, as the studio's own series are.

import { clear, fill, h } from './ui.js';

const TRAIN = 'train/loss';
const LR = 'train/lr';
const EVAL_RE = /^eval\/(.+)\/loss(?:_q(0\.\d+))?$/;
const BLUE = '47,111,222', ORANGE = '224,123,0', GREEN = '31,138,76';
const EVAL_COLOURS = [ORANGE, '197,48,48', '128,64,192', '0,140,150'];

function rgba(rgb, a) { return `rgba(${rgb},${a})`; }

// Axis and grid colours of the current theme (CSS variables of app.css).
export function themeColours() {
  const css = getComputedStyle(document.documentElement);
  return { axis: css.getPropertyValue('--chart-axis').trim() || '#687385', grid: css.getPropertyValue('--chart-grid').trim() || '#eef0f4' };
}

// Exponential moving average, debiased like TensorBoard's smoothing (null where the input is null).
function smooth(values, weight) {
  let last = 0, n = 0;
  return values.map((v) => {
    if (v === null || v === undefined || !isFinite(v)) return null;
    n += 1;
    last = last * weight + (1 - weight) * v;
    return last / (1 - weight ** n);
  });
}

export class LossChart {
  constructor(container, { height = 300, smoothing = 0.9 } = {}) {
    this.container = container;
    this.height = height;
    this.smoothing = smoothing;
    this.points = new Map();           // name -> {steps: [], values: []}
    this.plot = null;
    this.layoutKey = '';
    this.box = h('div.chart-plot');
    this.empty = h('p.muted.chart-empty', 'No loss yet: points appear after the first training step.');
    this.showQuantiles = true;
    this.quantileBox = h('input', { type: 'checkbox', checked: true, onchange: () => this.toggleQuantiles(this.quantileBox.checked) });
    this.quantileToggle = h('label.inline.small', { hidden: true }, this.quantileBox, ' eval quantiles q0.1–q0.9');
    this.smoothSelect = h('select', { 'aria-label': 'Smoothing of the train loss',
      onchange: () => { this.smoothing = Number(this.smoothSelect.value); this.redraw(true); } },
    [['0', 'no smoothing'], ['0.6', 'smoothing 0.6'], ['0.9', 'smoothing 0.9'], ['0.97', 'smoothing 0.97']]
      .map(([v, t]) => h('option', { value: v, selected: Number(v) === smoothing }, t)));
    fill(container, h('div.chart-tools', this.quantileToggle, this.smoothSelect), this.empty, this.box);
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(container);
    this.onTheme = () => { if (this.plot) this.redraw(true); };
    document.addEventListener('odeo:theme', this.onTheme);
    this.publish();
  }

  merge(series) {
    for (const [name, s] of Object.entries(series || {})) {
      if (!s || !s.steps || !s.steps.length) continue;
      const mine = this.points.get(name) || { steps: [], values: [] };
      const first = s.steps[0];
      let cut = mine.steps.length;
      while (cut > 0 && mine.steps[cut - 1] >= first) cut -= 1;
      mine.steps.length = cut;
      mine.values.length = cut;
      mine.steps.push(...s.steps);
      mine.values.push(...s.values);
      this.points.set(name, mine);
    }
    this.redraw();
  }

  reset() {
    this.points.clear();
    this.redraw(true);
  }

  lastStep() {
    let last = null;
    for (const s of this.points.values()) {
      if (s.steps.length && (last === null || s.steps[s.steps.length - 1] > last)) last = s.steps[s.steps.length - 1];
    }
    return last;
  }

  // The series drawn, in order: [{name, label, scale, stroke, width, dash, points, fill?, derived?}]
  layout() {
    const out = [];
    if (this.points.has(TRAIN)) {
      out.push({ name: TRAIN, label: 'train loss', scale: 'loss', stroke: rgba(BLUE, this.smoothing ? 0.3 : 1), width: 1 });
      if (this.smoothing) out.push({ name: TRAIN, derived: 'smooth', label: 'train loss (smoothed)', scale: 'loss', stroke: rgba(BLUE, 1), width: 2 });
    }
    const evalSets = [...new Set([...this.points.keys()].map((n) => (n.match(EVAL_RE) || [])[1]).filter(Boolean))].sort();
    evalSets.forEach((set, i) => {
      const rgb = EVAL_COLOURS[i % EVAL_COLOURS.length];
      const qs = [...this.points.keys()].map((n) => n.match(EVAL_RE)).filter((m) => m && m[1] === set && m[2])
        .map((m) => m[2]).sort();
      for (const q of qs) {
        out.push({ name: `eval/${set}/loss_q${q}`, label: `eval ${set} q${q}`, scale: 'loss',
          stroke: rgba(rgb, 0.15 + 0.5 * (1 - 2 * Math.abs(Number(q) - 0.5))), width: 1, quantile: q, set });
      }
      if (this.points.has(`eval/${set}/loss`)) {
        out.push({ name: `eval/${set}/loss`, label: `eval ${set} mean`, scale: 'loss', stroke: rgba(rgb, 1), width: 2,
          points: true });
      }
    });
    if (this.points.has(LR)) out.push({ name: LR, label: 'learning rate', scale: 'lr', stroke: rgba(GREEN, 0.9), width: 1.5, dash: [6, 4] });
    return out;
  }

  data(layout) {
    const steps = new Set();
    for (const s of this.points.values()) for (const x of s.steps) steps.add(x);
    const xs = [...steps].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const columns = layout.map((l) => {
      const col = new Array(xs.length).fill(null);
      const s = this.points.get(l.name);
      s.steps.forEach((x, i) => { col[index.get(x)] = s.values[i]; });
      return l.derived === 'smooth' ? smooth(col, this.smoothing) : col;
    });
    return [xs, ...columns];
  }

  options(layout) {
    const band = [];
    const byKey = new Map(layout.map((l, i) => [`${l.set}:${l.quantile}`, i + 1]));
    for (const l of layout) {
      if (l.quantile === '0.9' && byKey.has(`${l.set}:0.1`)) {
        band.push({ series: [byKey.get(`${l.set}:0.9`), byKey.get(`${l.set}:0.1`)], fill: rgba(ORANGE, 0.08) });
      }
    }
    const hasLr = layout.some((l) => l.scale === 'lr');
    const { axis, grid } = themeColours();
    return {
      width: this.width(),
      height: this.height,
      scales: { x: { time: false }, loss: { auto: true }, lr: { auto: true } },
      axes: [
        { label: 'step', stroke: axis, grid: { stroke: grid } },
        { scale: 'loss', label: 'loss', stroke: axis, grid: { stroke: grid }, size: 56 },
        ...(hasLr ? [{ scale: 'lr', side: 1, label: 'learning rate', stroke: rgba(GREEN, 1), grid: { show: false }, size: 64,
          values: (u, ticks) => ticks.map((t) => (t === 0 ? '0' : t.toExponential(0))) }] : []),
      ],
      series: [
        { label: 'step' },
        ...layout.map((l) => ({
          label: l.label, scale: l.scale, stroke: l.stroke, width: l.width, spanGaps: true,
          show: l.quantile ? this.showQuantiles : true,
          ...(l.dash ? { dash: l.dash } : {}),
          // eval means always show their points; quantiles never; train curves when points are few (uPlot's default)
          points: l.points ? { show: true, size: 6, fill: l.stroke } : l.quantile ? { show: false } : {},
          value: (u, v) => (v === null || v === undefined ? '–' : l.scale === 'lr' ? v.toExponential(2) : v.toPrecision(4)),
        })),
      ],
      bands: band,
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    };
  }

  toggleQuantiles(on) {
    this.showQuantiles = on;
    if (!this.plot) return;
    this.layoutNow.forEach((l, i) => { if (l.quantile) this.plot.setSeries(i + 1, { show: on }); });
  }

  width() {
    return Math.max(320, this.container.clientWidth - 2);
  }

  redraw(rebuild = false) {
    const layout = this.layout();
    const key = layout.map((l) => `${l.name}:${l.derived || ''}`).join('|');
    this.empty.hidden = layout.length > 0;
    if (!layout.length) {
      this.destroyPlot();
      this.publish();
      return;
    }
    if (typeof uPlot === 'undefined') {           // the vendored library is missing: say so instead of breaking the page
      this.empty.hidden = false;
      this.empty.textContent = 'The chart library is missing from this installation (run tools/vendor_assets.py).';
      this.publish();
      return;
    }
    const data = this.data(layout);
    if (!this.plot || rebuild || key !== this.layoutKey) {
      this.destroyPlot();
      this.layoutKey = key;
      this.plot = new uPlot(this.options(layout), data, this.box);
      // quantile curves share one switch (above the chart) instead of nine legend entries
      const rows = this.plot.root.querySelectorAll('.u-legend .u-series');
      layout.forEach((l, i) => { if (l.quantile && rows[i + 1]) rows[i + 1].hidden = true; });
      this.quantileToggle.hidden = !layout.some((l) => l.quantile);
      this.layoutNow = layout;
    } else {
      this.plot.setData(data);
    }
    this.publish();
  }

  // What the chart shows, on the container's data attributes (handy for tests and for debugging).
  publish() {
    const train = this.points.get(TRAIN);
    this.container.dataset.points = train ? train.steps.length : 0;
    this.container.dataset.series = [...this.points.keys()].sort().join(' ');
  }

  resize() {
    if (this.plot && this.container.clientWidth > 0) this.plot.setSize({ width: this.width(), height: this.height });
  }

  destroyPlot() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
    clear(this.box);
  }

  destroy() {
    this.resizer.disconnect();
    document.removeEventListener('odeo:theme', this.onTheme);
    this.destroyPlot();
  }
}

// A time series chart (the GPUs area's resource history): x is unix seconds, each series {label, values,
// colour}, on one y scale with its unit. set(times, series) redraws; the theme's colours follow toggles.
export class TimeChart {
  constructor(container, { title, unit, height = 160, max = null } = {}) {
    this.container = container;
    this.unit = unit;
    this.height = height;
    this.max = max;
    this.plot = null;
    this.key = '';
    this.box = h('div.chart-plot');
    fill(container, h('div.time-chart-title.small.muted', title), this.box);
    this.resizer = new ResizeObserver(() => { if (this.plot && container.clientWidth) this.plot.setSize({ width: this.width(), height }); });
    this.resizer.observe(container);
    this.onTheme = () => { this.key = ''; if (this.last) this.set(...this.last); };
    document.addEventListener('odeo:theme', this.onTheme);
  }

  width() { return Math.max(240, this.container.clientWidth - 2); }

  set(times, series) {
    this.last = [times, series];
    this.container.dataset.points = times.length;
    if (typeof uPlot === 'undefined') return;
    const key = series.map((s) => s.label).join('|');
    const data = [times, ...series.map((s) => s.values)];
    if (this.plot && key === this.key) { this.plot.setData(data); return; }
    if (this.plot) this.plot.destroy();
    clear(this.box);
    this.key = key;
    const { axis, grid } = themeColours();
    const unit = this.unit;
    this.plot = new uPlot({
      width: this.width(), height: this.height,
      // at least the last 5 minutes on x, so a few samples do not stretch over years; y from 0
      scales: { x: { time: true, range: (u, lo, hi) => [Math.min(lo, hi - 300), hi] },
        y: { range: (u, lo, hi) => [0, this.max === null ? Math.max(1, hi * 1.1) : this.max] } },
      axes: [{ stroke: axis, grid: { stroke: grid } },
        { stroke: axis, grid: { stroke: grid }, size: 52, values: (u, ticks) => ticks.map((t) => `${t}${unit}`) }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.colour, width: 1.5, spanGaps: false,
        value: (u, v) => (v === null || v === undefined ? '–' : `${Number(v.toFixed(1))}${unit}`) }))],
      legend: { live: true },
    }, data, this.box);
  }

  destroy() {
    this.resizer.disconnect();
    document.removeEventListener('odeo:theme', this.onTheme);
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}
