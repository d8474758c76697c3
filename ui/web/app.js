// The Assay dashboard: a hash-routed page over the /v1/ui JSON API
// (coordinator/API.md, "Dashboard"). Charts are Chart.js (Debian's
// libjs-chart.js, served by the binary as /ui/chart.js).
'use strict';

const POLL_MS = 1000;  // live pages re-ask this often; new points show within 2 s
const ROW_PAGE = 1000; // table rows drawn at once; more behind "show more"
const STATES = ['queued', 'leased', 'running', 'succeeded', 'failed', 'cancelled'];
const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777',
                '#65a30d', '#4b5563', '#ea580c'];

let timer = null;          // the current page's poll timer
let pageSeq = 0;           // bumps on navigation; stale fetches check it
window.assayCharts = {};   // metric name -> Chart of the current page (tests read it)

// ---- Token and fetch ------------------------------------------------------

function token() { return sessionStorage.getItem('assayToken') || ''; }

function takeTokenFromFragment() {
  const m = /^#token=([^&]*)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem('assayToken', decodeURIComponent(m[1]));
  history.replaceState(null, '', location.pathname + location.search + '#/sweeps');
}

class AuthError extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: 'Bearer ' + token() }, options.headers || {});
  const resp = await fetch('/v1/ui/' + path, Object.assign({}, options, { headers }));
  if (resp.status === 401) throw new AuthError('token refused');
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error ? body.error.message : 'HTTP ' + resp.status);
  return body;
}

function showLogin(message) {
  stopPolling();
  document.getElementById('main').replaceChildren();
  document.getElementById('login').hidden = false;
  document.getElementById('logout').hidden = true;
  document.getElementById('login-error').textContent = message || '';
  document.body.dataset.page = 'login';
  document.body.dataset.ready = '1';
}

// ---- DOM helpers ----------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function fmt(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number' && !Number.isInteger(v)) return Number(v.toPrecision(6)).toString();
  return String(v);
}
function fmtTime(t) { return t ? new Date(t * 1000).toLocaleString() : ''; }
function fmtDuration(s) {
  if (s === null || s === undefined || s < 0) return '';
  if (s < 120) return s.toFixed(1) + ' s';
  if (s < 7200) return (s / 60).toFixed(1) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}
function stateBadge(s) { return el('span', { class: 'state s-' + s }, s); }
function runLink(id) { return id ? el('a', { href: '#/run/' + id }, String(id)) : ''; }

function stopPolling() { if (timer) clearTimeout(timer); timer = null; }
function poll(fn, seq) {
  timer = setTimeout(async () => {
    if (seq !== pageSeq) return;
    try { await fn(); } catch (e) { if (e instanceof AuthError) return showLogin('The token was refused.'); }
    if (seq === pageSeq) poll(fn, seq);
  }, POLL_MS);
}

// A sortable table: columns [{name, label, num, render}], rows as arrays.
function sortableTable(columns, rows, opts = {}) {
  const table = el('table', { id: opts.id });
  const tbody = el('tbody');
  let sortCol = -1, asc = true, shown = ROW_PAGE;
  const more = el('button', { type: 'button' });
  const draw = () => {
    let view = rows.slice();
    if (sortCol >= 0) {
      view.sort((a, b) => {
        const x = a[sortCol], y = b[sortCol];
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * (asc ? 1 : -1);
      });
    }
    tbody.replaceChildren(...view.slice(0, shown).map((r) => {
      const tr = el('tr', opts.rowAttrs ? opts.rowAttrs(r) : {});
      columns.forEach((c, i) => {
        const v = r[i];
        tr.append(el('td', { class: typeof v === 'number' ? 'num' : '' }, c.render ? c.render(v, r) : fmt(v)));
      });
      return tr;
    }));
    more.hidden = view.length <= shown;
    more.textContent = 'Show ' + Math.min(ROW_PAGE, view.length - shown) + ' more of ' + view.length;
  };
  more.addEventListener('click', () => { shown += ROW_PAGE; draw(); });
  const head = el('tr');
  columns.forEach((c, i) => {
    const th = el('th', { 'data-col': c.name }, c.label || c.name);
    th.addEventListener('click', () => {
      asc = sortCol === i ? !asc : true;
      sortCol = i;
      head.querySelectorAll('th').forEach((h) => h.classList.remove('sorted-asc', 'sorted-desc'));
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      draw();
    });
    head.append(th);
  });
  table.append(el('thead', {}, head), tbody);
  draw();
  return el('div', {}, el('div', { class: 'scroll' }, table), more);
}

// ---- Charts ---------------------------------------------------------------

function lineChart(canvas, logScale) {
  return new Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      animation: false, parsing: false, normalized: true, spanGaps: false,
      maintainAspectRatio: false,
      interaction: { mode: 'nearest', intersect: false },
      elements: { point: { radius: 0 }, line: { borderWidth: 1.5 } },
      scales: {
        x: { type: 'linear', title: { display: true, text: 'step' } },
        y: { type: logScale ? 'logarithmic' : 'linear' },
      },
      plugins: { legend: { display: true, position: 'bottom' } },
    },
  });
}

function seriesData(s, smoothing) {
  const pts = s.steps.map((x, i) => ({ x, y: s.values[i] }));
  if (!smoothing) return pts;
  // Exponential moving average (TensorBoard style), gaps kept as gaps.
  let ema = null;
  return pts.map((p) => {
    if (p.y === null) { ema = null; return p; }
    ema = ema === null ? p.y : smoothing * ema + (1 - smoothing) * p.y;
    return { x: p.x, y: ema };
  });
}

function chartControls(onChange) {
  const log = el('input', { type: 'checkbox', id: 'log-scale' });
  const smooth = el('input', { type: 'range', id: 'smoothing', min: '0', max: '0.99', step: '0.01', value: '0' });
  log.addEventListener('change', onChange);
  smooth.addEventListener('input', onChange);
  const bar = el('div', { class: 'toolbar' }, el('label', {}, log, ' log scale'),
    el('label', {}, 'smoothing ', smooth));
  return { bar, log: () => log.checked, smoothing: () => Number(smooth.value) };
}

function chartBox(metric) {
  const canvas = el('canvas', { id: 'chart-' + metric, 'data-metric': metric });
  const note = el('span', { class: 'note' });
  const box = el('div', { class: 'chart' }, el('h3', {}, metric, ' ', note), el('div', {}, canvas));
  return { box, canvas, note };
}

function noteFor(s) {
  return s.points + ' points' + (s.downsampled ? ', min/max of ' + s.bucket_steps + '-step buckets' : '');
}

// ---- Pages ----------------------------------------------------------------

async function pageSweeps(main) {
  const data = await api('sweeps');
  const rows = data.sweeps.map((s) => [s.name, s, s.runs, s.succeeded, s.failed,
    s.first_started_at && s.last_finished_at ? s.last_finished_at - s.first_started_at : null, s.created_at]);
  main.append(el('h1', {}, 'Sweeps'));
  if (!rows.length) { main.append(el('p', { class: 'muted' }, 'No runs in this database yet.')); return; }
  main.append(sortableTable([
    { name: 'sweep', render: (v) => el('a', { href: '#/runs?sweep=' + encodeURIComponent(v || '') }, v || '(runs without a sweep)') },
    { name: 'progress', render: (s) => progressBar(s) },
    { name: 'runs' }, { name: 'succeeded' }, { name: 'failed' },
    { name: 'duration', render: fmtDuration }, { name: 'created', render: fmtTime },
  ], rows, { id: 'sweeps-table' }));
}

function progressBar(s) {
  const bar = el('div', { class: 'bar', title: STATES.map((k) => k + ' ' + (s[k] || 0)).join(', ') });
  for (const k of STATES) {
    if (!s[k]) continue;
    bar.append(el('span', { class: 's-' + k, style: 'width:' + (100 * s[k] / Math.max(1, s.runs)) + '%' }));
  }
  return el('div', { class: 'toolbar' }, bar, el('span', { class: 'muted' },
    STATES.filter((k) => s[k]).map((k) => s[k] + ' ' + k).join(' · ')));
}

async function pageRuns(main, params) {
  const sweep = params.get('sweep');
  const data = await api('runs' + (sweep === null ? '' : '?sweep=' + encodeURIComponent(sweep)));
  const hide = new Set(['params_json', 'command', 'sweep']);
  const cols = data.columns.map((c, i) => ({ c, i })).filter(({ c }) => !hide.has(c));
  const stIdx = data.columns.indexOf('state');
  main.append(el('h1', {}, sweep === null ? 'All runs' : 'Runs of ' + (sweep || '(no sweep)')));
  const stateSel = el('select', { id: 'state-filter' }, el('option', { value: '' }, 'any state'),
    ...STATES.map((s) => el('option', { value: s }, s)));
  const text = el('input', { id: 'text-filter', placeholder: 'filter: text in any column' });
  const compare = el('button', { type: 'button', id: 'compare' }, 'Compare selected');
  const count = el('span', { class: 'muted' });
  const holder = el('div');
  const selected = new Set();
  main.append(el('div', { class: 'toolbar' }, stateSel, text, compare, count), holder);
  const draw = () => {
    const st = stateSel.value, q = text.value.toLowerCase();
    const rows = data.rows.filter((r) => (!st || r[stIdx] === st) &&
      (!q || r.some((v) => v !== null && String(v).toLowerCase().includes(q))));
    count.textContent = rows.length + ' of ' + data.rows.length + ' runs';
    const vId = 1 + cols.findIndex(({ c }) => c === 'run_id');  // run_id in a view row
    const columns = [{ name: 'select', label: '', render: (v, r) => {
      const box = el('input', { type: 'checkbox', class: 'pick', 'data-run-id': r[vId] });
      box.checked = selected.has(r[vId]);
      box.addEventListener('change', () => box.checked ? selected.add(r[vId]) : selected.delete(r[vId]));
      return box;
    } }].concat(cols.map(({ c }) => ({
      name: c,
      render: c === 'run_id' ? runLink : c === 'state' ? stateBadge : c.endsWith('_at') ? fmtTime
        : c === 'duration_s' ? fmtDuration : undefined,
    })));
    const view = rows.map((r) => [null].concat(cols.map(({ i }) => r[i])));
    holder.replaceChildren(sortableTable(columns, view, {
      id: 'runs-table', rowAttrs: (r) => ({ 'data-run-id': r[vId] }),
    }));
  };
  stateSel.addEventListener('change', draw);
  text.addEventListener('input', draw);
  compare.addEventListener('click', () => { location.hash = '#/compare?runs=' + [...selected].join(','); });
  draw();
}

async function pageRun(main, id, seq) {
  let detail = await api('runs/' + id);
  const r = detail.run;
  const title = el('h1', {}, 'Run ' + r.id + ' ', r.name ? r.name + ' ' : '', stateBadge(r.state));
  const info = el('dl', { id: 'run-info' });
  const controls = chartControls(() => redrawAll());
  const charts = el('div', { class: 'charts', id: 'charts' });
  const events = el('div'), artifacts = el('div'), evals = el('div');
  main.append(title, info, el('h2', {}, 'Metrics'), controls.bar, charts,
    el('h2', {}, 'Timeline'), events, el('h2', {}, 'Checkpoints'), artifacts,
    el('h2', {}, 'Eval results of its checkpoints'), evals);
  const series = {};  // metric -> last series reply
  const seen = {};    // metric -> "points/last_step" drawn

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
    events.replaceChildren(sortableTable(
      [{ name: 'at', render: fmtTime }, { name: 'actor' }, { name: 'kind' }, { name: 'from' }, { name: 'to', render: (v) => v ? stateBadge(v) : '' }, { name: 'detail' }],
      d.events.map((e) => [e.at, e.actor, e.kind, e.from_state, e.to_state, e.detail]), { id: 'events-table' }));
    const byId = Object.fromEntries(d.artifacts.map((a) => [a.id, a]));
    artifacts.replaceChildren(d.artifacts.length ? sortableTable(
      [{ name: 'id' }, { name: 'kind' }, { name: 'step' }, { name: 'hash', render: (v) => el('code', {}, (v || '').slice(0, 12)) }, { name: 'parent' }, { name: 'path' }],
      d.artifacts.map((a) => [a.id, a.kind, a.step, a.content_hash, a.parent_id ? (byId[a.parent_id] ? 'step ' + byId[a.parent_id].step : '#' + a.parent_id) : '', a.path]),
      { id: 'artifacts-table' }) : el('p', { class: 'muted' }, 'No checkpoints.'));
    evals.replaceChildren(d.evals.length ? sortableTable(
      [{ name: 'step' }, { name: 'suite' }, { name: 'version' }, { name: 'metric' }, { name: 'filter' }, { name: 'value' }, { name: 'stderr' }, { name: 'n' }, { name: 'eval run', render: runLink }],
      d.evals.map((e) => [e.checkpoint_step, e.suite, e.suite_version, e.metric, e.filter, e.value, e.stderr, e.n, e.eval_run_id]),
      { id: 'evals-table' }) : el('p', { class: 'muted' }, 'No eval results.'));
  };

  const redraw = (metric) => {
    const c = window.assayCharts[metric], s = series[metric];
    if (!c || !s) return;
    c.options.scales.y.type = controls.log() ? 'logarithmic' : 'linear';
    c.data.datasets = [{ label: 'run ' + id, data: seriesData(s, controls.smoothing()), borderColor: COLORS[0], backgroundColor: COLORS[0] }];
    c.update('none');
  };
  const redrawAll = () => Object.keys(series).forEach(redraw);

  const refreshSeries = async (d) => {
    for (const m of d.metrics) {
      const mark = m.points + '/' + m.last_step;
      if (seen[m.metric] === mark) continue;
      const s = await api('runs/' + id + '/series?key=' + encodeURIComponent(m.metric));
      if (seq !== pageSeq) return;
      if (!window.assayCharts[m.metric]) {
        const b = chartBox(m.metric);
        charts.append(b.box);
        window.assayCharts[m.metric] = lineChart(b.canvas, controls.log());
        window.assayCharts[m.metric].$note = b.note;
      }
      series[m.metric] = s;
      seen[m.metric] = mark;
      window.assayCharts[m.metric].$note.textContent = noteFor(s);
      redraw(m.metric);
    }
    if (!d.metrics.length) charts.replaceChildren(el('p', { class: 'muted', id: 'no-metrics' }, 'This run has no metrics (yet).'));
    else charts.querySelector('#no-metrics')?.remove();
  };

  drawInfo(detail);
  await refreshSeries(detail);
  let last = JSON.stringify([detail.run, detail.events.length, detail.artifacts.length, detail.evals.length]);
  poll(async () => {
    const d = await api('runs/' + id);
    if (seq !== pageSeq) return;
    const now = JSON.stringify([d.run, d.events.length, d.artifacts.length, d.evals.length]);
    if (now !== last) { drawInfo(d); last = now; }
    await refreshSeries(d);
  }, seq);
}

async function pageCompare(main, params, seq) {
  const ids = (params.get('runs') || '').split(',').filter((x) => /^\d+$/.test(x));
  main.append(el('h1', {}, 'Compare runs ' + ids.join(', ')));
  if (ids.length < 1) { main.append(el('p', { class: 'muted' }, 'Select runs on a runs page first.')); return; }
  const details = await Promise.all(ids.map((id) => api('runs/' + id)));
  // Params side by side; a row whose values differ is highlighted.
  const params2 = details.map((d) => { try { return JSON.parse(d.run.params_json || '{}'); } catch (e) { return {}; } });
  const keys = [...new Set(params2.flatMap((p) => Object.keys(p)))].sort();
  const ptable = el('table', { id: 'params-table' }, el('thead', {}, el('tr', {}, el('th', {}, 'param'),
    ...details.map((d) => el('th', {}, runLink(d.run.id), ' ', d.run.name || '')))));
  const tb = el('tbody');
  for (const k of keys) {
    const vals = params2.map((p) => JSON.stringify(p[k]));
    tb.append(el('tr', { class: new Set(vals).size > 1 ? 'diff' : '' }, el('td', {}, k), ...vals.map((v) => el('td', {}, v === undefined ? '' : v))));
  }
  ptable.append(tb);
  const controls = chartControls(() => draw());
  const charts = el('div', { class: 'charts', id: 'charts' });
  main.append(el('h2', {}, 'Params'), ptable, el('h2', {}, 'Metrics'), controls.bar, charts);
  const metrics = [...new Set(details.flatMap((d) => d.metrics.map((m) => m.metric)))].sort();
  const data = {};
  for (const m of metrics) {
    data[m] = await Promise.all(details.map((d) => d.metrics.some((x) => x.metric === m)
      ? api('runs/' + d.run.id + '/series?key=' + encodeURIComponent(m)) : null));
    if (seq !== pageSeq) return;
    const b = chartBox(m);
    charts.append(b.box);
    window.assayCharts[m] = lineChart(b.canvas, controls.log());
  }
  const draw = () => {
    for (const m of metrics) {
      const c = window.assayCharts[m];
      c.options.scales.y.type = controls.log() ? 'logarithmic' : 'linear';
      c.data.datasets = data[m].map((s, i) => s && {
        label: 'run ' + details[i].run.id + (details[i].run.name ? ' ' + details[i].run.name : ''),
        data: seriesData(s, controls.smoothing()), borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length],
      }).filter(Boolean);
      c.update('none');
    }
  };
  draw();
}

async function pageEvals(main) {
  const data = await api('evals');
  main.append(el('h1', {}, 'Eval leaderboard'));
  if (!data.rows.length) { main.append(el('p', { class: 'muted' }, 'No eval results yet.')); return; }
  const idx = (c) => data.columns.indexOf(c);
  main.append(sortableTable(data.columns.map((c) => ({
    name: c,
    render: c === 'producer_run_id' || c === 'eval_run_id' ? runLink
      : c === 'checkpoint_hash' ? (v) => el('code', {}, (v || '').slice(0, 12)) : undefined,
  })), data.rows, { id: 'evals-table' }));
  void idx;
}

function toCsv(columns, rows) {
  const q = (v) => {
    if (v === null || v === undefined) return '';
    const s = String(v);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  return [columns, ...rows].map((r) => r.map(q).join(',')).join('\r\n') + '\r\n';
}

async function pageSql(main) {
  const area = el('textarea', { id: 'sql' });
  area.value = sessionStorage.getItem('assaySql') || 'SELECT * FROM runs_wide ORDER BY run_id DESC LIMIT 100';
  const run = el('button', { type: 'button', id: 'run-sql' }, 'Run');
  const csv = el('button', { type: 'button', id: 'csv', disabled: '' }, 'Download CSV');
  const out = el('div', { id: 'sql-result' });
  main.append(el('h1', {}, 'SQL'), el('p', { class: 'muted' },
    'One read-only statement, the same path as assay query: tables runs, metrics, metric_keys, run_events, artifacts, eval_results; views runs_wide, run_summary, run_metric_summary, eval_summary.'),
  area, el('div', { class: 'toolbar' }, run, csv), out);
  let last = null;
  run.addEventListener('click', async () => {
    sessionStorage.setItem('assaySql', area.value);
    out.replaceChildren(el('p', { class: 'muted' }, 'running…'));
    try {
      last = await api('query', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ sql: area.value, max_rows: 10000 }) });
      csv.disabled = false;
      out.replaceChildren(el('p', { class: 'muted' }, last.rows.length + ' rows' + (last.truncated ? ' (truncated)' : '')),
        sortableTable(last.columns.map((c) => ({ name: c })), last.rows, { id: 'sql-table' }));
    } catch (e) {
      if (e instanceof AuthError) return showLogin('The token was refused.');
      csv.disabled = true;
      out.replaceChildren(el('p', { class: 'error' }, e.message));
    }
  });
  csv.addEventListener('click', () => {
    if (!last) return;
    const a = el('a', { href: URL.createObjectURL(new Blob([toCsv(last.columns, last.rows)], { type: 'text/csv' })), download: 'query.csv' });
    a.click();
  });
}

// ---- Router ---------------------------------------------------------------

async function route() {
  takeTokenFromFragment();
  stopPolling();
  const seq = ++pageSeq;
  for (const c of Object.values(window.assayCharts)) c.destroy();
  window.assayCharts = {};
  document.body.dataset.ready = '0';
  if (!token()) return showLogin('');
  document.getElementById('login').hidden = true;
  document.getElementById('logout').hidden = false;
  const main = document.getElementById('main');
  main.replaceChildren();
  const [path, qs] = (location.hash.replace(/^#\/?/, '') || 'sweeps').split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/');
  document.body.dataset.page = parts[0];
  try {
    if (typeof Chart === 'undefined') throw new Error('Chart.js did not load from /ui/chart.js (install libjs-chart.js)');
    if (parts[0] === 'runs') await pageRuns(main, params);
    else if (parts[0] === 'run') await pageRun(main, parts[1], seq);
    else if (parts[0] === 'compare') await pageCompare(main, params, seq);
    else if (parts[0] === 'evals') await pageEvals(main);
    else if (parts[0] === 'sql') await pageSql(main);
    else { document.body.dataset.page = 'sweeps'; await pageSweeps(main); }
  } catch (e) {
    if (e instanceof AuthError) { sessionStorage.removeItem('assayToken'); return showLogin('The token was refused.'); }
    main.append(el('p', { class: 'error', id: 'page-error' }, e.message));
  }
  if (seq === pageSeq) document.body.dataset.ready = '1';
}

document.getElementById('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem('assayToken', document.getElementById('login-token').value.trim());
  route();
});
document.getElementById('logout').addEventListener('click', () => {
  sessionStorage.removeItem('assayToken');
  showLogin('');
});
window.addEventListener('hashchange', route);
route();
