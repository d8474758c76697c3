// The run page: metric curves (x = step or wall time; drag across a chart
// to zoom, which asks the server again for that range, so a long run shows
// its real detail rather than the whole-run buckets stretched), log scale
// and smoothing, the state timeline with the failure reason, the live log
// tail, checkpoints with their lineage and the eval results of its
// checkpoints. Helpers (el, api, charts, followLive) are in app.js.
'use strict';

const LOG_KEEP = 200000;  // characters of each log stream kept on the page

function runControls(onChange, onReset) {
  const log = el('input', { type: 'checkbox', id: 'log-scale' });
  const smooth = el('input', { type: 'range', id: 'smoothing', min: '0', max: '0.99', step: '0.01', value: '0' });
  const xsel = el('select', { id: 'x-axis' }, el('option', { value: 'step' }, 'x = step'),
    el('option', { value: 'time' }, 'x = time since start'));
  const reset = el('button', { type: 'button', id: 'zoom-reset', disabled: '' }, 'Reset zoom');
  log.addEventListener('change', onChange);
  smooth.addEventListener('input', onChange);
  xsel.addEventListener('change', onReset);
  reset.addEventListener('click', onReset);
  const bar = el('div', { class: 'toolbar' }, el('label', {}, log, ' log scale'),
    el('label', {}, 'smoothing ', smooth), xsel, reset,
    el('span', { class: 'muted' }, 'drag across a chart to zoom'));
  return { bar, reset, log: () => log.checked, smoothing: () => Number(smooth.value), x: () => xsel.value };
}

// Drag across the chart to select an x range; onZoom(lo, hi) in axis units.
function attachZoom(chart, box, onZoom) {
  const canvas = chart.canvas;
  const sel = el('div', { class: 'zoom-sel' });
  sel.hidden = true;
  box.append(sel);
  let x0 = null;
  const signal = pageAbort.signal;
  const at = (e) => e.clientX - canvas.getBoundingClientRect().left;
  const place = (a, b) => {
    sel.style.left = (canvas.offsetLeft + Math.min(a, b)) + 'px';
    sel.style.width = Math.abs(b - a) + 'px';
    sel.style.top = canvas.offsetTop + 'px';
    sel.style.height = canvas.offsetHeight + 'px';
  };
  canvas.addEventListener('mousedown', (e) => { x0 = at(e); place(x0, x0); sel.hidden = false; e.preventDefault(); });
  window.addEventListener('mousemove', (e) => { if (x0 !== null) place(x0, at(e)); }, { signal });
  window.addEventListener('mouseup', (e) => {
    if (x0 === null) return;
    const x1 = at(e), a = x0;
    x0 = null;
    sel.hidden = true;
    if (Math.abs(x1 - a) < 5) return;  // a click, not a drag
    const s = chart.scales.x;
    const lo = s.getValueForPixel(Math.max(s.left, Math.min(a, x1)));
    const hi = s.getValueForPixel(Math.min(s.right, Math.max(a, x1)));
    if (hi > lo) onZoom(lo, hi);
  }, { signal });
}

// The state timeline: one bar segment per state the run was in, from
// run_events, and the failure reason when it failed.
function timeline(run, events) {
  const ev = events.filter((e) => e.to_state);
  if (!ev.length) return el('p', { class: 'muted' }, 'No state changes recorded.');
  const now = Date.now() / 1000;
  const end = TERMINAL.has(run.state) ? Math.max(run.finished_at || 0, ev[ev.length - 1].at) : now;
  const total = Math.max(1e-6, end - ev[0].at);
  const bar = el('div', { class: 'timeline', id: 'timeline' });
  const legend = el('div', { class: 'muted timeline-legend' });
  ev.forEach((e, i) => {
    const until = i + 1 < ev.length ? ev[i + 1].at : end;
    const d = Math.max(0, until - e.at);
    const label = e.to_state + (i + 1 < ev.length || !TERMINAL.has(e.to_state) ? ' ' + fmtDuration(d) : '');
    bar.append(el('span', { class: stateClass(e.to_state), 'data-state': e.to_state,
      style: 'flex-grow:' + Math.max(d / total, 0.02), title: label + ' at ' + fmtTime(e.at) + (e.detail ? ': ' + e.detail : '') }));
    legend.append(el('span', {}, (i ? ' → ' : '') + label));
  });
  const out = el('div', {}, bar, legend);
  if (run.failure_reason)
    out.append(el('p', { class: 'error', id: 'failure' }, 'failed: ' + run.failure_reason +
      (run.failure_detail ? ': ' + run.failure_detail : '')));
  return out;
}

function checkpointsTable(run, artifacts) {
  if (!artifacts.length) return el('p', { class: 'muted' }, 'No checkpoints.');
  const parent = (a) => {
    if (!a.parent_id) return '';
    if (a.parent_run_id && a.parent_run_id !== run.id)
      return el('span', {}, 'run ', runLink(a.parent_run_id), a.parent_step !== null ? ' step ' + a.parent_step : '');
    return a.parent_step !== null ? 'step ' + a.parent_step : '#' + a.parent_id;
  };
  return sortableTable(
    [{ name: 'id' }, { name: 'kind' }, { name: 'step' }, { name: 'hash', render: (v) => el('code', {}, (v || '').slice(0, 12)) },
      { name: 'parent', render: (v, r) => parent(r[6]) }, { name: 'path' }],
    artifacts.map((a) => [a.id, a.kind, a.step, a.content_hash, null, a.path, a]), { id: 'artifacts-table' });
}

async function pageRun(main, id, seq) {
  const cursor = await liveCursor(id);
  let detail = await api('runs/' + id);
  const r = detail.run;
  const title = el('h1', {}, 'Run ' + r.id + ' ', r.name ? r.name + ' ' : '', stateBadge(r.state));
  const info = el('dl', { id: 'run-info' });
  let zoom = null;  // {lo, hi} in x units of the current axis, or null
  const controls = runControls(() => redrawAll(), () => setZoom(null));
  const charts = el('div', { class: 'charts', id: 'charts' });
  const events = el('div'), tl = el('div'), artifacts = el('div'), evals = el('div');
  const outPre = el('pre', { class: 'log', id: 'log-stdout' }), errPre = el('pre', { class: 'log stderr', id: 'log-stderr' });
  const logNote = el('span', { class: 'muted' });
  main.append(title, info, el('h2', {}, 'Metrics'), controls.bar, charts,
    el('h2', {}, 'Timeline'), tl, events, el('h2', {}, 'Log ', logNote), outPre, errPre,
    el('h2', {}, 'Checkpoints'), artifacts, el('h2', {}, 'Eval results of its checkpoints'), evals);
  const series = {};  // metric -> series reply drawn
  const full = {};    // metric -> the whole-run reply (maps a time range to steps)
  const seen = {};    // metric -> "points/last_step" drawn
  window.assaySeries = series;
  // Time axis origin: the run's start, else its first point.
  const t0 = () => detail.run.started_at || Math.min(...Object.values(full).filter(Boolean).map((s) => s.times[0] ?? Infinity));

  const drawInfo = (d) => {
    const run = d.run;
    title.replaceChildren('Run ' + run.id + ' ', run.name ? run.name + ' ' : '', stateBadge(run.state));
    const rows = [['sweep', run.sweep ? el('a', { href: '#/runs?sweep=' + encodeURIComponent(run.sweep) }, run.sweep) : '—'],
      ['attempt', run.attempt + ' of ' + run.max_attempts], ['command', el('code', {}, run.command)],
      ['params', el('code', {}, run.params_json)], ['worker', run.worker_id || ''],
      ['started', fmtTime(run.started_at)], ['finished', fmtTime(run.finished_at)],
      ['duration', run.started_at && run.finished_at ? fmtDuration(run.finished_at - run.started_at) : '']];
    if (run.failure_reason) rows.push(['failure', el('span', { class: 'error' }, run.failure_reason + (run.failure_detail ? ': ' + run.failure_detail : ''))]);
    info.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    tl.replaceChildren(timeline(run, d.events));
    events.replaceChildren(sortableTable(
      [{ name: 'at', render: fmtTime }, { name: 'actor' }, { name: 'kind' }, { name: 'from' }, { name: 'to', render: (v) => v ? stateBadge(v) : '' }, { name: 'detail' }],
      d.events.map((e) => [e.at, e.actor, e.kind, e.from_state, e.to_state, e.detail]), { id: 'events-table' }));
    artifacts.replaceChildren(checkpointsTable(run, d.artifacts));
    evals.replaceChildren(d.evals.length ? sortableTable(
      [{ name: 'step' }, { name: 'suite' }, { name: 'version' }, { name: 'metric' }, { name: 'filter' }, { name: 'value' }, { name: 'stderr' }, { name: 'n' }, { name: 'eval run', render: runLink }],
      d.evals.map((e) => [e.checkpoint_step, e.suite, e.suite_version, e.metric, e.filter, e.value, e.stderr, e.n, e.eval_run_id]),
      { id: 'evals-table' }) : el('p', { class: 'muted' }, 'No eval results.'));
  };

  const redraw = (metric) => {
    const c = window.assayCharts[metric], s = series[metric];
    if (!c || !s) return;
    const xmode = controls.x();
    c.options.scales.y.type = controls.log() ? 'logarithmic' : 'linear';
    c.options.scales.x.title.text = xmode === 'time' ? 'seconds since start' : 'step';
    c.options.scales.x.min = zoom ? zoom.lo : undefined;
    c.options.scales.x.max = zoom ? zoom.hi : undefined;
    c.data.datasets = [{ label: 'run ' + id, data: seriesData(s, controls.smoothing(), xmode, t0()), borderColor: COLORS[0], backgroundColor: COLORS[0],
      pointRadius: s.steps.length < 2 ? 3 : 0 }];  // a lone point has no line to show it
    c.update('none');
  };
  const redrawAll = () => Object.keys(series).forEach(redraw);

  // The step range of the zoom for one metric (time zoom: through its
  // whole-run series, whose points carry both).
  const stepRange = (metric) => {
    if (!zoom) return '';
    let lo = zoom.lo, hi = zoom.hi;
    if (controls.x() === 'time') {
      const s = full[metric], base = t0();
      const inside = s.steps.filter((_, i) => s.times[i] - base >= zoom.lo && s.times[i] - base <= zoom.hi);
      const before = s.steps.filter((_, i) => s.times[i] - base < zoom.lo);
      const after = s.steps.filter((_, i) => s.times[i] - base > zoom.hi);
      lo = before.length ? before[before.length - 1] : (inside[0] ?? s.first_step);
      hi = after.length ? after[0] : (inside[inside.length - 1] ?? s.last_step);
    }
    return '&from=' + Math.floor(lo) + '&to=' + Math.ceil(hi);
  };
  const fetchSeries = async (metric) => {
    // Wall times only on the time axis (they cost the server a longer scan).
    const timed = controls.x() === 'time';
    const base = 'runs/' + id + '/series?key=' + encodeURIComponent(metric) + (timed ? '&times=1' : '');
    if (!full[metric] || (timed && !full[metric].times)) full[metric] = await api(base);
    return zoom ? api(base + stepRange(metric)) : full[metric];
  };
  const noteOf = (s) => noteFor(s) + (zoom ? ' (zoomed: steps ' + (s.first_step ?? '–') + '…' + (s.last_step ?? '–') + ')' : '');
  const setZoom = async (z) => {
    zoom = z;
    controls.reset.disabled = !zoom;
    for (const m of Object.keys(series)) {
      const s = await fetchSeries(m);
      if (seq !== pageSeq) return;
      series[m] = s;
      window.assayCharts[m].$note.textContent = noteOf(s);
      redraw(m);
    }
    document.body.dataset.zoomed = zoom ? '1' : '0';
    document.body.dataset.xaxis = controls.x();  // drawn on this axis (tests wait for it)
  };

  const refreshSeries = async (d) => {
    // Every series that grew, fetched side by side, then drawn in order.
    const grown = d.metrics.filter((m) => seen[m.metric] !== m.points + '/' + m.last_step);
    grown.forEach((m) => { full[m.metric] = undefined; });  // the whole-run series is stale
    const fetched = await Promise.all(grown.map((m) => fetchSeries(m.metric)));
    if (seq !== pageSeq) return;
    for (const [i, m] of grown.entries()) {
      const mark = m.points + '/' + m.last_step, s = fetched[i];
      if (!window.assayCharts[m.metric]) {
        const b = chartBox(m.metric);
        charts.append(b.box);
        const c = lineChart(b.canvas, controls.log());
        c.$note = b.note;
        window.assayCharts[m.metric] = c;
        attachZoom(c, b.box, (lo, hi) => setZoom(controls.x() === 'step' ? { lo: Math.floor(lo), hi: Math.ceil(hi) } : { lo, hi }));
      }
      series[m.metric] = s;
      seen[m.metric] = mark;
      window.assayCharts[m.metric].$note.textContent = noteOf(s);
      redraw(m.metric);
    }
    if (!d.metrics.length) charts.replaceChildren(el('p', { class: 'muted', id: 'no-metrics' }, 'This run has no metrics (yet).'));
    else charts.querySelector('#no-metrics')?.remove();
  };

  // The log tail: the last 64 KiB of each stream, then what was appended
  // (byte cursors per stream); a new attempt starts over.
  const logs = { attempt: null, stdout: 0, stderr: 0 };
  const append = (pre, text) => {
    if (!text) return;
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    let all = pre.textContent + text;
    if (all.length > LOG_KEEP) all = all.slice(all.length - LOG_KEEP);
    pre.textContent = all;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  const refreshLogs = async (attempt) => {
    if (logs.attempt !== attempt) {
      Object.assign(logs, { attempt: null, stdout: 0, stderr: 0 });
      outPre.textContent = '';
      errPre.textContent = '';
    }
    const q = logs.attempt === null ? '' : '?attempt=' + logs.attempt + '&stdout=' + logs.stdout + '&stderr=' + logs.stderr;
    const l = await api('runs/' + id + '/logs' + q);
    if (seq !== pageSeq) return;
    logs.attempt = l.attempt;
    logs.stdout = l.stdout.next_offset;
    logs.stderr = l.stderr.next_offset;
    append(outPre, l.stdout.text);
    append(errPre, l.stderr.text);
    errPre.hidden = !errPre.textContent;
    logNote.textContent = '(attempt ' + l.attempt + ': stdout ' + l.stdout.size + ' bytes, stderr ' + l.stderr.size + ' bytes)';
  };

  drawInfo(detail);
  await Promise.all([refreshSeries(detail), refreshLogs(detail.run.attempt)]);
  let last = JSON.stringify([detail.run, detail.events.length, detail.artifacts.length, detail.evals.length]);
  followLive(seq, id, cursor, async () => {
    const d = await api('runs/' + id);
    if (seq !== pageSeq) return;
    const now = JSON.stringify([d.run, d.events.length, d.artifacts.length, d.evals.length]);
    detail = d;
    if (now !== last) { drawInfo(d); last = now; }
    await Promise.all([refreshSeries(d), refreshLogs(d.run.attempt)]);
  });
}
