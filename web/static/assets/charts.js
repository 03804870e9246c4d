// Time-series charts drawn as inline SVG with DOM calls: stacked bars or
// lines, a y axis with round steps, a legend, a <title> on every mark for
// hover, and the numbers again in a table for screen readers and keyboards.

import { h, s } from './dom.js';

const W = 520;
const H = 220;
const PAD = { l: 58, r: 14, t: 12, b: 28 };

// ranges are the periods the portal charts.
export const ranges = {
  day: { label: 'Last day', granularity: 'hour', count: 24, stepMs: 3600e3 },
  week: { label: 'Last week', granularity: 'day', count: 7, stepMs: 86400e3 },
  month: { label: 'Last month', granularity: 'day', count: 30, stepMs: 86400e3 },
};

// buckets returns the period starts (ms, UTC-aligned) of a range ending now,
// with the from/to query values that select them.
export function buckets(rangeKey, now = Date.now()) {
  const r = ranges[rangeKey];
  const last = Math.floor(now / r.stepMs) * r.stepMs;
  const list = [];
  for (let i = r.count - 1; i >= 0; i -= 1) list.push(last - i * r.stepMs);
  return {
    list,
    granularity: r.granularity,
    from: new Date(list[0]).toISOString().replace('.000Z', 'Z'),
    to: new Date(last + r.stepMs).toISOString().replace('.000Z', 'Z'),
  };
}

// bucketOf maps an RFC 3339 period start onto its bucket start.
export function bucketOf(iso, granularity) {
  const t = Date.parse(iso);
  const step = granularity === 'hour' ? 3600e3 : 86400e3;
  return Math.floor(t / step) * step;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// niceStepInt is the smallest whole 1, 2, 2.5 or 5 × 10^k step at least v.
function niceStepInt(v) {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v && Number.isInteger(m * p)) return m * p;
  return 10 * p;
}

function xLabel(ms, granularity) {
  const d = new Date(ms);
  if (granularity === 'hour') return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
}

// timeChart draws series over buckets. series: [{name, values: number[]}];
// kind: "bar" (stacked) or "line"; fmt formats a value for axis and tips.
// integer keeps axis steps whole; empty, when given, decides whether the
// "no calls" note shows (an all-zero error rate is data, not emptiness).
export function timeChart({ title, bucketList, granularity, series, kind = 'line', fmt = String, id, integer = false, empty }) {
  const n = bucketList.length;
  const plotW = W - PAD.l - PAD.r;
  const plotH = H - PAD.t - PAD.b;
  let max = 0;
  for (let i = 0; i < n; i += 1) {
    if (kind === 'bar') {
      let t = 0;
      for (const sr of series) t += sr.values[i] || 0;
      max = Math.max(max, t);
    } else {
      for (const sr of series) if (sr.values[i] != null) max = Math.max(max, sr.values[i]);
    }
  }
  const top = integer ? 4 * niceStepInt(max / 4) : niceMax(max);
  const y = (v) => PAD.t + plotH - (v / top) * plotH;
  const slot = plotW / Math.max(n, 1);
  const xc = (i) => PAD.l + slot * i + slot / 2;
  const total = series.reduce((a, sr) => a + sr.values.reduce((b, v) => b + (v || 0), 0), 0);

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': `${title}: chart` });
  const grid = s('g', { class: 'chart-grid' });
  for (let k = 0; k <= 4; k += 1) {
    const v = (top * k) / 4;
    const yy = y(v);
    grid.appendChild(s('line', { x1: PAD.l, x2: W - PAD.r, y1: yy, y2: yy }));
    grid.appendChild(s('text', { x: PAD.l - 6, y: yy + 4, class: 'chart-ylabel', 'text-anchor': 'end' }, fmt(v, true)));
  }
  svg.appendChild(grid);
  const every = Math.max(1, Math.ceil(n / 6));
  const xa = s('g', { class: 'chart-xaxis' });
  for (let i = 0; i < n; i += every) {
    xa.appendChild(s('text', { x: xc(i), y: H - 8, 'text-anchor': 'middle' }, xLabel(bucketList[i], granularity)));
  }
  svg.appendChild(xa);

  series.forEach((sr, si) => {
    const g = s('g', { class: `series series-${si % 6}` });
    if (kind === 'line') {
      const pts = [];
      sr.values.forEach((v, i) => { if (v != null) pts.push(`${xc(i).toFixed(1)},${y(v).toFixed(1)}`); });
      if (pts.length > 1) g.appendChild(s('polyline', { points: pts.join(' '), class: 'chart-line' }));
    }
    sr.values.forEach((v, i) => {
      if (v == null) return;
      const tip = s('title', null, `${xLabel(bucketList[i], granularity)} · ${sr.name}: ${fmt(v)}`);
      if (kind === 'bar') {
        if (!v) return;
        let below = 0;
        for (let sj = 0; sj < si; sj += 1) below += series[sj].values[i] || 0;
        const bw = Math.max(2, slot * 0.68);
        const y1 = y(below + v);
        g.appendChild(s('rect', { x: (xc(i) - bw / 2).toFixed(1), y: y1.toFixed(1), width: bw.toFixed(1), height: Math.max(1, y(below) - y1).toFixed(1), class: 'chart-bar' }, tip));
      } else {
        g.appendChild(s('circle', { cx: xc(i).toFixed(1), cy: y(v).toFixed(1), r: 3, class: 'chart-dot' }, tip));
      }
    });
    svg.appendChild(g);
  });

  const legend = h('ul', { class: 'chart-legend' },
    series.map((sr, si) => h('li', null, h('span', { class: `swatch series-${si % 6}`, 'aria-hidden': 'true' }), sr.name)));

  const table = h('table', { class: 'data-table' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Period'), series.map((sr) => h('th', { scope: 'col' }, sr.name)))),
    h('tbody', null, bucketList.map((b, i) => h('tr', null, h('th', { scope: 'row' }, xLabel(b, granularity)),
      series.map((sr) => h('td', null, sr.values[i] == null ? '—' : fmt(sr.values[i])))))));

  const isEmpty = empty === undefined ? !series.length || total === 0 : empty;
  return h('figure', { class: 'chart', id },
    h('figcaption', null, title),
    isEmpty ? h('p', { class: 'chart-empty' }, 'No calls in this period yet.') : null,
    svg,
    series.length > 1 || kind === 'bar' ? legend : null,
    h('details', { class: 'chart-data' }, h('summary', null, 'Show the numbers'), table));
}
