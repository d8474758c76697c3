// The Assay dashboard: a hash-routed page over the /v1/ui JSON API
// (coordinator/API.md, "Dashboard"). Charts are Chart.js (Debian's
// libjs-chart.js, served by the binary as /ui/chart.js).
'use strict';

const LIVE_WAIT_S = 20;    // how long one /v1/ui/changes request may park on the server
// Least time between two refreshes of a page: a run's page, and a page over
// the whole database (whose changes, on a busy coordinator, never stop).
const LIVE_GAP_MS = { run: 300, all: 1000 };
const ROW_PAGE = 1000;     // table rows drawn at once; more behind "show more"
// Known states in display order; a state the database has that is not here
// (a newer server) still shows, after these, in a neutral color.
const STATES = ['queued', 'leased', 'running', 'succeeded', 'pruned', 'failed', 'cancelled'];
const TERMINAL = new Set(['succeeded', 'pruned', 'failed', 'cancelled']);
const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777',
                '#65a30d', '#4b5563', '#ea580c'];

let pageSeq = 0;           // bumps on navigation; stale fetches check it
let pageAbort = new AbortController();  // aborts the current page's parked change request
window.assayCharts = {};   // metric name -> Chart of the current page (tests read it)
// What the live loop did on this page (tests read it): change answers seen,
// refreshes made.
window.assayLive = { answers: 0, refreshes: 0 };

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
  pageAbort.abort();
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
function stateClass(s) { return STATES.includes(s) ? 's-' + s : 's-other'; }
function stateBadge(s) { return s ? el('span', { class: 'state ' + stateClass(s) }, s) : ''; }
// The states to show for counts {state: n}: known ones in order, then others.
function statesOf(counts) {
  return STATES.filter((k) => counts[k]).concat(Object.keys(counts).filter((k) => !STATES.includes(k) && counts[k]).sort());
}
function runLink(id) { return id ? el('a', { href: '#/run/' + id }, String(id)) : ''; }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- Live: wait on /v1/ui/changes, refresh on a change ----------------------

// The scope's current cursor: ask it before reading the page's data, so a
// change between the two still counts as new.
async function liveCursor(run) {
  return (await api('changes' + (run ? '?run=' + run : ''))).cursor;
}

// Resolves when the tab is visible (at once if it is).
function whenVisible(signal) {
  return new Promise((resolve) => {
    if (!document.hidden) return resolve();
    const done = () => { if (!document.hidden || signal.aborted) { document.removeEventListener('visibilitychange', done); resolve(); } };
    document.addEventListener('visibilitychange', done);
    signal.addEventListener('abort', done);
  });
}

// Parks a request on /v1/ui/changes (the server answers when the run, or
// with no run the database, changed, or after LIVE_WAIT_S) and calls
// refresh() after each change, until the page changes. A hidden tab (or one
// being left) gives its request up: browsers allow a host six connections
// across all tabs, and parked requests of background tabs would starve the
// visible one. Back in view, the next request, still with the old cursor,
// is answered at once if anything changed meanwhile.
function followLive(seq, run, cursor, refresh) {
  const poll = Math.random().toString(36).slice(2, 10);  // tells this page's requests apart
  const page = pageAbort.signal;
  let ctl = null;
  const giveUp = () => { if (ctl) ctl.abort(); };
  window.addEventListener('pagehide', giveUp, { signal: page });
  document.addEventListener('visibilitychange', () => { if (document.hidden) giveUp(); }, { signal: page });
  page.addEventListener('abort', giveUp);
  (async () => {
    let last = 0;
    while (seq === pageSeq) {
      await whenVisible(page);
      if (seq !== pageSeq) return;
      ctl = new AbortController();
      let r;
      try {
        r = await api('changes?' + (run ? 'run=' + run + '&' : '') + 'since=' + encodeURIComponent(cursor) +
          '&wait=' + LIVE_WAIT_S + '&poll=' + poll, { signal: ctl.signal });
      } catch (e) {
        if (seq !== pageSeq) return;
        if (e instanceof AuthError) return showLogin('The token was refused.');
        if (ctl.signal.aborted) continue;  // hidden: wait to be seen again
        await sleep(2000);  // server restarting, or too many waiting pages: try again
        continue;
      }
      if (seq !== pageSeq) return;
      window.assayLive.answers++;
      if (r.cursor === cursor) continue;
      cursor = r.cursor;
      const gap = Date.now() - last, least = run ? LIVE_GAP_MS.run : LIVE_GAP_MS.all;
      if (gap < least) await sleep(least - gap);
      last = Date.now();
      try {
        await refresh();
        window.assayLive.refreshes++;
      } catch (e) {
        if (e instanceof AuthError) return showLogin('The token was refused.');
      }
    }
  })();
}

// opts.state (an object the caller keeps) carries the sort and the rows
// shown across redraws of a live page.
function sortableTable(columns, rows, opts = {}) {
  const table = el('table', { id: opts.id });
  const tbody = el('tbody');
  const st = opts.state || {};
  let sortCol = st.sortCol ?? -1, asc = st.asc ?? true, shown = st.shown ?? ROW_PAGE;
  const keep = () => Object.assign(st, { sortCol, asc, shown });
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
  more.addEventListener('click', () => { shown += ROW_PAGE; keep(); draw(); });
  const head = el('tr');
  columns.forEach((c, i) => {
    const th = el('th', { 'data-col': c.name }, c.label || c.name);
    th.addEventListener('click', () => {
      asc = sortCol === i ? !asc : true;
      sortCol = i;
      keep();
      head.querySelectorAll('th').forEach((h) => h.classList.remove('sorted-asc', 'sorted-desc'));
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      draw();
    });
    if (i === sortCol) th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
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

// Chart points of a series reply: x is the step, or with xmode 'time' the
// point's wall time in seconds after t0.
function seriesData(s, smoothing, xmode, t0) {
  const pts = xmode === 'time' ? s.times.map((t, i) => ({ x: t - t0, y: s.values[i] }))
    : s.steps.map((x, i) => ({ x, y: s.values[i] }));
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

async function pageSweeps(main, seq) {
  const cursor = await liveCursor();
  const metricSel = el('select', { id: 'best-metric' }, el('option', { value: '' }, 'best run by…'));
  const modeSel = el('select', { id: 'best-mode' }, el('option', { value: 'min' }, 'min'), el('option', { value: 'max' }, 'max'));
  const holder = el('div');
  const tableState = {};
  main.append(el('h1', {}, 'Sweeps'), el('div', { class: 'toolbar' }, metricSel, modeSel), holder);
  const load = async () => {
    const m = metricSel.value || sessionStorage.getItem('assayBestMetric') || '';
    const mode = modeSel.value;
    const data = await api('sweeps' + (m ? '?metric=' + encodeURIComponent(m) + '&mode=' + mode : ''));
    if (seq !== pageSeq) return;
    if (metricSel.options.length !== data.metrics.length + 1) {
      metricSel.replaceChildren(el('option', { value: '' }, 'best run by…'), ...data.metrics.map((k) => el('option', { value: k }, k)));
      metricSel.value = data.metrics.includes(m) ? m : '';
    }
    if (!data.sweeps.length) { holder.replaceChildren(el('p', { class: 'muted' }, 'No runs in this database yet.')); return; }
    const rows = data.sweeps.map((s) => [s.name, s, s.runs, s.succeeded, s.failed,
      s.first_started_at && s.last_finished_at ? s.last_finished_at - s.first_started_at : null,
      s.best ? s.best.value : null, s.best || null, null, s.created_at]);
    const bestLabel = m ? 'best ' + m + ' (' + mode + ')' : 'best';
    holder.replaceChildren(sortableTable([
      { name: 'sweep', render: (v) => el('a', { href: '#/runs?sweep=' + encodeURIComponent(v || '') }, v || '(runs without a sweep)') },
      { name: 'progress', render: (s) => progressBar(s) },
      { name: 'runs' }, { name: 'succeeded' }, { name: 'failed' },
      { name: 'duration', render: fmtDuration },
      { name: 'best', label: bestLabel, render: (v) => fmt(v) },
      { name: 'best run', render: (b) => b ? el('span', {}, runLink(b.run_id), ' ', b.name || '', ' ', stateBadge(b.state)) : '' },
      { name: 'analysis', render: (v, r) => el('a', { href: '#/analysis?sweep=' + encodeURIComponent(r[0] || ''), class: 'analysis-link' }, 'analyse') },
      { name: 'created', render: fmtTime },
    ], rows, { id: 'sweeps-table', state: tableState }));
  };
  const chosen = () => {
    sessionStorage.setItem('assayBestMetric', metricSel.value);
    load();
  };
  metricSel.addEventListener('change', chosen);
  modeSel.addEventListener('change', chosen);
  await load();
  followLive(seq, 0, cursor, load);
}

function progressBar(s) {
  const counts = s.counts || Object.fromEntries(STATES.map((k) => [k, s[k] || 0]));
  const shown = statesOf(counts);
  const bar = el('div', { class: 'bar', title: shown.map((k) => k + ' ' + counts[k]).join(', ') });
  for (const k of shown)
    bar.append(el('span', { class: stateClass(k), 'data-state': k, style: 'width:' + (100 * counts[k] / Math.max(1, s.runs)) + '%' }));
  return el('div', { class: 'toolbar' }, bar, el('span', { class: 'muted progress-text' },
    shown.map((k) => counts[k] + ' ' + k).join(' · ')));
}

async function pageRuns(main, params, seq) {
  const sweep = params.get('sweep');
  const cursor = await liveCursor();
  const path = 'runs' + (sweep === null ? '' : '?sweep=' + encodeURIComponent(sweep));
  let data = await api(path);
  const hide = new Set(['params_json', 'command', 'sweep']);
  // Columns follow the data: a live refresh may bring a new metric column.
  let cols, stIdx;
  const columnsOf = () => {
    cols = data.columns.map((c, i) => ({ c, i })).filter(({ c }) => !hide.has(c));
    stIdx = data.columns.indexOf('state');
  };
  columnsOf();
  main.append(el('h1', {}, sweep === null ? 'All runs' : 'Runs of ' + (sweep || '(no sweep)'),
    sweep === null ? '' : el('a', { href: '#/analysis?sweep=' + encodeURIComponent(sweep), class: 'h-link' }, 'analyse')));
  const present = [...new Set(data.rows.map((r) => r[stIdx]))];
  const stateSel = el('select', { id: 'state-filter' }, el('option', { value: '' }, 'any state'),
    ...STATES.concat(present.filter((s) => !STATES.includes(s))).map((s) => el('option', { value: s }, s)));
  const tableState = {};
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
    const scrolled = holder.querySelector('.scroll')?.scrollTop || 0;  // a live redraw keeps the place
    holder.replaceChildren(sortableTable(columns, view, {
      id: 'runs-table', rowAttrs: (r) => ({ 'data-run-id': r[vId] }), state: tableState,
    }));
    if (scrolled) holder.querySelector('.scroll').scrollTop = scrolled;
  };
  stateSel.addEventListener('change', draw);
  text.addEventListener('input', draw);
  compare.addEventListener('click', () => { location.hash = '#/compare?runs=' + [...selected].join(','); });
  draw();
  followLive(seq, 0, cursor, async () => {
    const d = await api(path);
    if (seq !== pageSeq) return;
    if (JSON.stringify(d) === JSON.stringify(data)) return;
    data = d;
    columnsOf();
    draw();
  });
}

async function pageCompare(main, params, seq) {
  const ids = (params.get('runs') || '').split(',').filter((x) => /^\d+$/.test(x));
  main.append(el('h1', {}, 'Compare runs ' + ids.join(', ')));
  if (ids.length < 1) { main.append(el('p', { class: 'muted' }, 'Select runs on a runs page first.')); return; }
  const cursor = await liveCursor();
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
  const fetchSeries = (m) => Promise.all(details.map((d) => d.metrics.some((x) => x.metric === m)
    ? api('runs/' + d.run.id + '/series?key=' + encodeURIComponent(m)) : null));
  for (const m of metrics) {
    data[m] = await fetchSeries(m);
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
  // Live while any compared run is not finished: re-read the series that grew.
  if (details.every((d) => TERMINAL.has(d.run.state))) return;
  const mark = (ds) => JSON.stringify(ds.map((d) => d.metrics));
  let last = mark(details);
  followLive(seq, 0, cursor, async () => {
    const fresh = await Promise.all(ids.map((id) => api('runs/' + id)));
    if (seq !== pageSeq || mark(fresh) === last) return;
    last = mark(fresh);
    details.splice(0, details.length, ...fresh);
    for (const m of metrics) {
      const s = await fetchSeries(m);
      if (seq !== pageSeq) return;
      data[m] = s;
    }
    draw();
  });
}

async function pageEvals(main, seq) {
  const cursor = await liveCursor();
  main.append(el('h1', {}, 'Eval leaderboard'));
  const holder = el('div');
  const tableState = {};
  main.append(holder);
  let shown = null;
  const load = async () => {
    const data = await api('evals');
    if (seq !== pageSeq) return;
    const text = JSON.stringify(data);
    if (text === shown) return;
    shown = text;
    if (!data.rows.length) { holder.replaceChildren(el('p', { class: 'muted' }, 'No eval results yet.')); return; }
    holder.replaceChildren(sortableTable(data.columns.map((c) => ({
      name: c,
      render: c === 'producer_run_id' || c === 'eval_run_id' ? runLink
        : c === 'checkpoint_hash' ? (v) => el('code', {}, (v || '').slice(0, 12)) : undefined,
    })), data.rows, { id: 'evals-table', state: tableState }));
  };
  await load();
  followLive(seq, 0, cursor, load);
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
  pageAbort.abort();
  pageAbort = new AbortController();
  window.assayLive = { answers: 0, refreshes: 0 };
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
    if (parts[0] === 'runs') await pageRuns(main, params, seq);
    else if (parts[0] === 'run') await pageRun(main, parts[1], seq);
    else if (parts[0] === 'compare') await pageCompare(main, params, seq);
    else if (parts[0] === 'analysis') await pageAnalysis(main, params, seq);
    else if (parts[0] === 'evals') await pageEvals(main, seq);
    else if (parts[0] === 'sql') await pageSql(main);
    else { document.body.dataset.page = 'sweeps'; await pageSweeps(main, seq); }
  } catch (e) {
    if (e instanceof AuthError) { sessionStorage.removeItem('assayToken'); return showLogin('The token was refused.'); }
    if (seq !== pageSeq) return;  // left while loading: the abort is not an error
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
