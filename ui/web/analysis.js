// Sweep analysis: a metric's final value against a chosen param (scatter),
// and parallel coordinates of the params and the metric. Chart.js has no
// parallel-coordinates type: it is a line chart over one x position per
// axis, each value scaled to 0..1 on its axis, one polyline per run (runs
// separated by a null point), runs binned by metric value into a few
// datasets colored from low (blue) to high (red), so 10,000 runs are a
// handful of datasets. Finished runs (succeeded, pruned, failed, cancelled)
// with a value only. Helpers (el, api, followLive) are in app.js.
'use strict';

const BINS = 8;  // metric color bins of the parallel-coordinates view

function binColor(i, n) {
  const t = n <= 1 ? 0 : i / (n - 1);
  return 'hsl(' + Math.round(230 - 230 * t) + ', 70%, 45%)';
}

// How one axis places a value in 0..1: numbers linearly (log10 when all are
// > 0 and span 100x or more), anything else by its rank among the values.
function axisOf(name, values) {
  const nums = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  if (nums.length && nums.length === values.filter((v) => v !== undefined && v !== null).length) {
    let lo = Math.min(...nums), hi = Math.max(...nums);
    const log = lo > 0 && hi / lo >= 100;
    const f = log ? Math.log10 : (v) => v;
    const a = f(lo), b = f(hi);
    return { name, numeric: true, log, lo, hi, pos: (v) => (typeof v === 'number' ? (b > a ? (f(v) - a) / (b - a) : 0.5) : null),
      label: [name, fmt(lo) + ' … ' + fmt(hi) + (log ? ' (log)' : '')] };
  }
  const cats = [...new Set(values.filter((v) => v !== undefined && v !== null).map(String))].sort();
  return { name, numeric: false, cats, pos: (v) => (v === undefined || v === null ? null : cats.length > 1 ? cats.indexOf(String(v)) / (cats.length - 1) : 0.5),
    label: [name, cats.length <= 4 ? cats.join(' · ') : cats.length + ' values'] };
}

function scatterChart(canvas) {
  return new Chart(canvas, {
    type: 'scatter',
    data: { datasets: [] },
    options: {
      animation: false, parsing: false, maintainAspectRatio: false,
      elements: { point: { radius: 3 } },
      scales: { x: { type: 'linear', title: { display: true } }, y: { type: 'linear', title: { display: true } } },
      plugins: {
        legend: { position: 'bottom' },
        tooltip: { callbacks: { label: (ctx) => 'run ' + ctx.raw.run + (ctx.raw.name ? ' ' + ctx.raw.name : '') + ': ' + fmt(ctx.raw.y) } },
      },
      onClick: (ev, els, chart) => { if (els.length) location.hash = '#/run/' + chart.data.datasets[els[0].datasetIndex].data[els[0].index].run; },
    },
  });
}

function parallelChart(canvas) {
  return new Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      animation: false, parsing: false, maintainAspectRatio: false, spanGaps: false,
      elements: { point: { radius: 0, hitRadius: 4 }, line: { borderWidth: 1 } },
      interaction: { mode: 'nearest', intersect: true },
      scales: {
        x: { type: 'linear', min: 0, ticks: { stepSize: 1, autoSkip: false } },
        y: { min: 0, max: 1, ticks: { display: false }, grid: { display: false } },
      },
      plugins: {
        legend: { position: 'bottom' },
        tooltip: { callbacks: { label: (ctx) => 'run ' + ctx.raw.run + ': ' + ctx.raw.shown } },
      },
    },
  });
}

async function pageAnalysis(main, params, seq) {
  const sweep = params.get('sweep') ?? '';
  const cursor = await liveCursor();
  const path = () => 'analysis?sweep=' + encodeURIComponent(sweep) +
    (params.get('metric') ? '&metric=' + encodeURIComponent(params.get('metric')) : '');
  let data = await api(path());
  if (seq !== pageSeq) return;
  main.append(el('h1', {}, 'Analysis of ', el('a', { href: '#/runs?sweep=' + encodeURIComponent(sweep) }, sweep || '(runs without a sweep)')));
  const metricSel = el('select', { id: 'analysis-metric' }, ...data.metrics.map((m) => el('option', { value: m }, m)));
  metricSel.value = data.metric || '';
  metricSel.addEventListener('change', () => {
    location.hash = '#/analysis?sweep=' + encodeURIComponent(sweep) + '&metric=' + encodeURIComponent(metricSel.value);
  });
  const paramSel = el('select', { id: 'analysis-param' });
  const note = el('p', { class: 'muted', id: 'analysis-note' });
  const sc = el('canvas', { id: 'chart-scatter' }), pc = el('canvas', { id: 'chart-parallel' });
  main.append(el('div', { class: 'toolbar' }, el('label', {}, 'metric (final value) ', metricSel),
    el('label', {}, 'against ', paramSel)), note,
  el('div', { class: 'charts analysis' },
    el('div', { class: 'chart' }, el('h3', {}, 'Final value against a param'), el('div', {}, sc)),
    el('div', { class: 'chart wide' }, el('h3', {}, 'Parallel coordinates'), el('div', {}, pc))));
  const scatter = scatterChart(sc), parallel = parallelChart(pc);
  window.assayCharts.scatter = scatter;
  window.assayCharts.parallel = parallel;

  const draw = () => {
    const names = data.params.map((p) => p.name);
    if (paramSel.options.length !== names.length || [...paramSel.options].some((o, i) => o.value !== names[i])) {
      const keep = paramSel.value;
      paramSel.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
      paramSel.value = names.includes(keep) ? keep : (names[0] || '');
    }
    const done = data.runs.filter((r) => TERMINAL.has(r.state) && typeof r.value === 'number' && Number.isFinite(r.value));
    const pname = paramSel.value;
    // Scatter: one dataset per state, so pruned and failed runs stand out.
    const px = axisOf(pname, done.map((r) => r.params[pname]));
    const placed = done.filter((r) => r.params[pname] !== undefined);
    const byState = {};
    for (const r of placed) {
      const v = r.params[pname];
      (byState[r.state] = byState[r.state] || []).push({ x: px.numeric ? v : px.cats.indexOf(String(v)), y: r.value, run: r.run_id, name: r.name });
    }
    const col = { succeeded: '#10b981', pruned: '#64748b', failed: '#ef4444', cancelled: '#f59e0b' };
    scatter.data.datasets = statesOf(Object.fromEntries(Object.entries(byState).map(([k, v]) => [k, v.length]))).map((k) => ({
      label: k + ' (' + byState[k].length + ')', data: byState[k], borderColor: col[k] || '#6b7280', backgroundColor: col[k] || '#6b7280' }));
    scatter.options.scales.x.type = px.log ? 'logarithmic' : 'linear';
    scatter.options.scales.x.title.text = pname;
    scatter.options.scales.x.ticks = px.numeric ? {} : { stepSize: 1, callback: (v) => px.cats[v] ?? '' };
    scatter.options.scales.y.title.text = data.metric || '';
    scatter.update('none');

    // Parallel coordinates: every param, then the metric.
    const axes = names.map((n) => axisOf(n, done.map((r) => r.params[n]))).concat([axisOf(data.metric || 'value', done.map((r) => r.value))]);
    const m = axes[axes.length - 1];
    const bins = Array.from({ length: BINS }, () => []);
    for (const r of done) {
      const t = m.pos(r.value);
      const bin = Math.min(BINS - 1, Math.floor(t * BINS));
      const pts = bins[bin];
      axes.forEach((a, i) => {
        const v = i === axes.length - 1 ? r.value : r.params[a.name];
        pts.push({ x: i, y: a.pos(v), run: r.run_id, shown: a.name + ' = ' + (v === undefined ? '—' : fmt(v)) });
      });
      pts.push({ x: axes.length - 1, y: null, run: r.run_id, shown: '' });
    }
    parallel.data.datasets = bins.map((pts, i) => ({
      label: m.numeric ? fmt(m.lo + (m.hi - m.lo) * i / BINS) + '…' : 'bin ' + (i + 1),
      data: pts, borderColor: binColor(i, BINS), backgroundColor: binColor(i, BINS),
    })).filter((d) => d.data.length);
    parallel.options.scales.x.max = Math.max(1, axes.length - 1);
    parallel.options.scales.x.ticks.callback = (v) => (Number.isInteger(v) && axes[v] ? axes[v].label : '');
    parallel.update('none');
    note.textContent = done.length + ' finished runs with a value of ' + (data.metric || '(no metric)') + ' (of ' + data.runs.length +
      ' runs)' + (placed.length < done.length ? '; ' + (done.length - placed.length) + ' without ' + pname + ' are left out of the scatter' : '') +
      (data.truncated ? '; truncated' : '') + '. Click a point to open its run.';
    document.body.dataset.analysisPoints = String(placed.length);
  };
  paramSel.addEventListener('change', draw);
  draw();
  followLive(seq, 0, cursor, async () => {
    const d = await api(path());
    if (seq !== pageSeq) return;
    data = d;
    draw();
  });
}
