#!/usr/bin/env python3
"""The dashboard in a real browser: headless Chromium driven by Selenium.

Two servers, both real processes:
  * `assay coordinator` with a sweep submitted over the API and runs driven
    through the worker API from here (a live coordinator: a metric posted
    while the page is open must appear within 2 s; a wrong or missing token
    must show the login page and no data);
  * `assay ui` over a database made by `assay record`, plus rows written with
    sqlite3 where recording would be slow (a 1,000,000-point series, NaN
    values stored as NULL the way the coordinator stores them, an eval result).

Also: a 1,000-run sweep written with sqlite3 (the runs page, the sweep
analysis page: one scatter point per finished run with a value, the best
run per sweep), zooming the 1,000,000-point run (the zoomed range is fetched
again, still at most 2,000 points, in finer buckets), the state timeline with
a failure reason, checkpoint lineage across runs, and the live path: pages
wait on /v1/ui/changes (no blind polling) and show a metric point or a log
line written meanwhile within 2 s, through the coordinator (worker API) and
through `assay ui` (another process writing the database and the log file).

Screenshots of each page go to --out. Exit 77 (ctest: skipped) with the reason
when Chromium, its driver or python3-selenium is missing.
"""
import argparse
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIP = 77


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:  # pragma: no cover
    skip("python3-selenium is not installed (%s); scripts/install-deps installs it" % e)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
if not CHROMIUM or not DRIVER:
    skip("chromium and chromium-driver are needed (Debian packages; scripts/install-deps installs them)")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok: " + what)


def http(method, url, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def post_log(url, token, run, offset, text):
    """A worker's log chunk: raw bytes at a byte offset of the stdout file."""
    req = urllib.request.Request(
        url + "/v1/worker/runs/%d/logs?worker_id=w&attempt=1&stream=stdout&offset=%d" % (run, offset),
        data=text.encode(), method="POST")
    req.add_header("Content-Type", "application/octet-stream")
    req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def start(cmd, port_file):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(200):
        if os.path.exists(port_file):
            return proc, int(open(port_file).read())
        if proc.poll() is not None:
            raise RuntimeError("%s exited: %s" % (cmd[:2], proc.stdout.read()))
        time.sleep(0.05)
    raise RuntimeError("%s did not listen" % cmd[:2])


def runs_wide(db, where):
    con = sqlite3.connect(db)
    rows = con.execute("SELECT run_id, state FROM runs_wide WHERE %s ORDER BY run_id" % where).fetchall()
    con.close()
    return [[str(a), b] for a, b in rows]


# ---- Databases ---------------------------------------------------------------

CURVE = r'''
import os
f = os.fdopen(int(os.environ["ASSAY_METRICS_FD"]), "w")
for s in range(1, 201):
    f.write('{"step": %d, "metrics": {"loss": %g, "acc": %g}}\n' % (s, 2.0 / s ** 0.5, 1 - 1.0 / s))
'''


def make_ui_db(assay, tmp):
    db = os.path.join(tmp, "ui.db")
    script = os.path.join(tmp, "curve.py")
    open(script, "w").write(CURVE)
    record = lambda name, cmd: subprocess.run([assay, "record", "--db", db, "--name", name, "--"] + cmd,
                                              check=True, stdout=subprocess.DEVNULL)
    record("curve", ["python3", script])
    con = sqlite3.connect(db)
    con.execute("INSERT OR IGNORE INTO metric_keys(name) VALUES ('loss'), ('nan_metric')")
    grid = make_grid_sweep(con, dict(con.execute("SELECT name, id FROM metric_keys"))["loss"])
    # runs_wide gains the grid's param columns when the store next opens the
    # file (the next record).
    con.execute("DROP VIEW IF EXISTS runs_wide")
    con.commit()
    con.close()
    record("nometrics", ["true"])
    record("big", ["true"])
    con = sqlite3.connect(db)
    ids = dict(con.execute("SELECT name, id FROM runs WHERE sweep_id IS NULL"))
    ids.update(grid)
    keys = dict(con.execute("SELECT name, id FROM metric_keys"))
    # A million points with one spike: too slow to record through a pipe in a
    # test, the same rows the coordinator writes.
    big = ids["big"]
    con.executemany(
        "INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES (?, 1, ?, ?, ?, 0)",
        ((big, keys["loss"], s, 1.0 / (1 + s * 1e-4) + (50.0 if s == 777777 else 0.0)) for s in range(1000000)))
    # Non-finite values arrive as null and are stored as NULL.
    con.executemany(
        "INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES (?, 1, ?, ?, ?, 0)",
        ((ids["curve"], keys["nan_metric"], s, None if s % 10 == 0 else float(s)) for s in range(1, 101)))
    con.execute("INSERT INTO artifacts(run_id, kind, content_hash, path, step, created_at) "
                "VALUES (?, 'checkpoint', 'abc123', '/tmp/ckpt', 200, 0)", (ids["curve"],))
    con.execute("INSERT INTO eval_results(suite, metric, value, stderr, n, suite_version, checkpoint_hash, created_at) "
                "VALUES ('gsm8k', 'exact_match', 0.25, 0.01, 100, '1', 'abc123', 0)")
    # Lineage across runs: a checkpoint of the failed grid run continues the
    # curve run's checkpoint.
    parent = con.execute("SELECT id FROM artifacts WHERE content_hash = 'abc123'").fetchone()[0]
    con.execute("INSERT INTO artifacts(run_id, kind, content_hash, path, step, parent_id, created_at) "
                "VALUES (?, 'checkpoint', 'def456', '/tmp/ckpt2', 10, ?, 0)", (ids["failed"], parent))
    con.commit()
    con.close()
    return db, ids


GRID = 1000


def make_grid_sweep(con, loss_key):
    """A 1,000-run sweep as the coordinator stores one: numeric and text params,
    most runs finished with a final loss (some NaN, stored as NULL), some still
    running, one failed with its events and reason, and, when the database
    knows the state, a few pruned runs."""
    t = 1700000000.0
    con.execute("INSERT INTO sweeps(name, spec_json, content_hash, created_at) VALUES ('grid', '{}', 'h', ?)", (t,))
    sid = con.execute("SELECT id FROM sweeps WHERE name = 'grid'").fetchone()[0]
    for i in range(GRID):
        state = "running" if i % 50 == 7 else "failed" if i % 100 == 3 else "succeeded"
        params = {"lr": 10 ** (-4 + 3 * (i % 10) / 9), "wd": i // 10, "opt": ["adam", "sgd"][i % 2]}
        con.execute("INSERT INTO runs(sweep_id, name, spec_json, params_json, command, state, created_at, "
                    "started_at, finished_at) VALUES (?, ?, '{}', ?, 'train', ?, ?, ?, ?)",
                    (sid, "g%d" % i, json.dumps(params), state, t, t + 1, None if state == "running" else t + 60))
    rows = con.execute("SELECT id, state FROM runs WHERE sweep_id = ? ORDER BY id", (sid,)).fetchall()
    pts = []
    for n, (rid, state) in enumerate(rows):
        if n % 97 == 5:
            continue  # finished without the metric
        value = None if n % 89 == 11 else 0.5 + ((n * 37) % 101) / 100.0
        pts.append((rid, loss_key, 10, value, t + 30))
    con.executemany("INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES (?, 1, ?, ?, ?, ?)", pts)
    failed = [rid for rid, st in rows if st == "failed"][0]
    con.execute("UPDATE runs SET failure_reason = 'exit_code', exit_code = 3, "
                "failure_detail = 'exit code 3: CUDA error: device-side assert' WHERE id = ?", (failed,))
    for at, frm, to in [(t, None, "queued"), (t + 0.5, "queued", "leased"), (t + 1, "leased", "running"),
                        (t + 60, "running", "failed")]:
        con.execute("INSERT INTO run_events(run_id, at, actor, kind, from_state, to_state, detail) "
                    "VALUES (?, ?, 'coordinator', 'state', ?, ?, ?)", (failed, at, frm, to,
                    "exit code 3" if to == "failed" else None))
    pruned = 0
    try:
        con.execute("UPDATE runs SET state = 'pruned' WHERE id IN (?, ?)", (rows[1][0], rows[2][0]))
        pruned = 2
    except sqlite3.IntegrityError:
        pass  # this database predates the pruned state
    return {"grid": sid, "failed": failed, "pruned": pruned}


def grid_expect(db):
    """Finished grid runs with a final loss: the points the analysis page draws."""
    con = sqlite3.connect(db)
    n = con.execute(
        "SELECT COUNT(*) FROM runs r JOIN sweeps s ON s.id = r.sweep_id AND s.name = 'grid' "
        "WHERE r.state NOT IN ('queued', 'leased', 'running') AND (SELECT m.value FROM metrics m "
        "WHERE m.run_id = r.id AND m.attempt = r.attempt ORDER BY m.step DESC LIMIT 1) IS NOT NULL").fetchone()[0]
    best = con.execute(
        "SELECT r.id, MIN(m.value) FROM runs r JOIN sweeps s ON s.id = r.sweep_id AND s.name = 'grid' "
        "JOIN metrics m ON m.run_id = r.id WHERE m.value IS NOT NULL").fetchone()
    con.close()
    return n, best


# ---- Browser -----------------------------------------------------------------

def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def goto(d, base, frag, timeout=15):
    """Opens base + '#' + frag (a full load the first time, a hash change after)."""
    if d.current_url.startswith(base):
        d.execute_script("document.body.dataset.ready = '0'; location.hash = arguments[0];", frag)
    else:
        d.get(base + "#" + frag)
    WebDriverWait(d, timeout).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    err = d.find_elements(By.ID, "page-error")
    if err:
        raise AssertionError("page %s: %s" % (frag, err[0].text))


def chart_state(d, metric):
    return d.execute_script("""
      const c = window.assayCharts[arguments[0]];
      if (!c) return null;
      return c.data.datasets.map(ds => ({label: ds.label, n: ds.data.length,
        max: Math.max(...ds.data.filter(p => p.y !== null).map(p => p.y)),
        nulls: ds.data.filter(p => p.y === null).length}));""", metric)


def table_rows(d, table_id):
    return d.execute_script("""
      const t = document.getElementById(arguments[0]);
      const cols = [...t.querySelectorAll('thead th')].map(th => th.dataset.col);
      const id = cols.indexOf('run_id'), st = cols.indexOf('state');
      return [...t.querySelectorAll('tbody tr')].map(tr => {
        const td = tr.querySelectorAll('td'); return [td[id].textContent, td[st].textContent]; });""", table_id)


def fetches(d, fragment):
    """How many requests the page has made whose URL contains fragment."""
    return d.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes(arguments[0])).length",
        fragment)


def text_of(d, elem_id):
    """An element's text, read in one step (live pages replace their tables)."""
    return d.execute_script("const e = document.getElementById(arguments[0]); return e ? e.textContent : ''", elem_id)


def wait_for(d, cond, what, timeout=5.0):
    """Polls cond() from this script (the page does not poll); seconds taken."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time() - t0
        time.sleep(0.02)
    raise AssertionError("timed out after %.1f s: %s" % (timeout, what))


def drag_zoom(d, metric, lo, hi):
    """Drags across the metric's chart from x = lo to x = hi (axis units)."""
    canvas = d.find_element(By.ID, "chart-" + metric)
    px = d.execute_script("""
      const c = window.assayCharts[arguments[0]], r = c.canvas.getBoundingClientRect();
      return [c.scales.x.getPixelForValue(arguments[1]) - r.width / 2,
              c.scales.x.getPixelForValue(arguments[2]) - r.width / 2, (c.chartArea.top + c.chartArea.bottom) / 2 - r.height / 2];""",
        metric, lo, hi)
    d.execute_script("document.body.dataset.zoomed = '0'")
    ActionChains(d).move_to_element_with_offset(canvas, int(px[0]), int(px[2])).click_and_hold() \
        .move_by_offset(int(px[1] - px[0]) // 2, 0).move_by_offset(int(px[1] - px[0]) - int(px[1] - px[0]) // 2, 0) \
        .release().perform()
    WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.zoomed") == "1")


def shot(d, out, name, full=False):
    """A screenshot of the window, or with full of the whole page (up to 1,800 px tall)."""
    if not full:
        d.save_screenshot(os.path.join(out, "ui-%s.png" % name))
        return
    h = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1400, min(1800, h + 140))
    try:
        d.save_screenshot(os.path.join(out, "ui-%s.png" % name))
    finally:
        d.set_window_size(1400, 1000)


def fmt_num(v):
    """A number as the page prints it (6 significant digits)."""
    return ("%.6g" % v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--assay", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="assay-ui-test-")
    procs = []
    d = None
    try:
        # -- coordinator with a sweep driven through the worker API
        subprocess.run([a.assay, "coordinator", "init", "--dir", tmp], check=True, stdout=subprocess.DEVNULL)
        user = open(os.path.join(tmp, "user.token")).read().strip()
        worker = open(os.path.join(tmp, "worker.token")).read().strip()
        cdb = os.path.join(tmp, "coord.db")
        cp, cport = start([a.assay, "coordinator", "--db", cdb, "--listen", "127.0.0.1:0",
                           "--port-file", os.path.join(tmp, "cport")], os.path.join(tmp, "cport"))
        procs.append(cp)
        curl = "http://127.0.0.1:%d" % cport
        sweep = {"name": "uisweep", "command": "train --lr {lr}", "resources": {"cpus": 1},
                 "space": {"lr": {"type": "grid", "values": [0.1, 0.2, 0.3, 0.4]}}}
        http("POST", curl + "/v1/sweeps", user, sweep)
        http("POST", curl + "/v1/worker/register", worker,
             {"worker_id": "w", "instance": "i1", "host": "h", "cpus": 2, "gpus": []})
        leased = http("POST", curl + "/v1/worker/lease", worker, {"worker_id": "w", "max_runs": 2})["runs"]
        for n, r in enumerate(leased):
            rid = r["run_id"]
            http("POST", curl + "/v1/worker/runs/%d/started" % rid, worker, {"worker_id": "w", "attempt": 1, "pid": 1})
            pts = [{"key": "loss", "step": s, "value": (1 + n) / (1.0 + s)} for s in range(50)]
            http("POST", curl + "/v1/worker/runs/%d/metrics" % rid, worker,
                 {"worker_id": "w", "attempt": 1, "batch_seq": 0, "points": pts})
        http("POST", curl + "/v1/worker/runs/%d/finished" % leased[0]["run_id"], worker,
             {"worker_id": "w", "attempt": 1, "exit_code": 0})
        live = leased[1]["run_id"]

        # -- assay ui over a recorded database
        udb, ids = make_ui_db(a.assay, tmp)
        up, uport = start([a.assay, "ui", "--db", udb, "--listen", "127.0.0.1:0",
                           "--port-file", os.path.join(tmp, "uport")], os.path.join(tmp, "uport"))
        procs.append(up)
        line = up.stdout.readline()
        check("#token=" in line, "assay ui prints its URL with the token in the fragment")
        utoken = line.strip().split("#token=")[1]
        print("setup took %.1f s" % (time.time() - t0))

        d = browser()
        # Missing and wrong tokens: the login page, no data.
        cbase = curl + "/ui/"
        d.get(cbase)
        WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        check(d.find_element(By.ID, "login").is_displayed() and not d.find_elements(By.CSS_SELECTOR, "#main table"),
              "no token: login page, no table")
        d.get(cbase + "#token=" + "0" * 64)
        WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.page") == "login")
        check(d.find_element(By.ID, "login").is_displayed() and "uisweep" not in d.find_element(By.TAG_NAME, "body").text,
              "wrong token: login page, no sweep shown")
        shot(d, a.out, "login")

        # The coordinator's dashboard with the right token.
        d.get(cbase + "#token=" + user)
        WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        check("token=" not in d.current_url, "the token leaves the address bar")
        check("uisweep" in d.find_element(By.ID, "sweeps-table").text, "sweeps page lists the sweep")
        shot(d, a.out, "sweeps")
        goto(d, cbase, "/runs?sweep=uisweep")
        check(table_rows(d, "runs-table") == runs_wide(cdb, "sweep = 'uisweep'"),
              "coordinator runs table matches runs_wide row for row")
        d.find_element(By.CSS_SELECTOR, "#state-filter option[value=running]").click()
        check(table_rows(d, "runs-table") == runs_wide(cdb, "sweep = 'uisweep' AND state = 'running'"),
              "state filter keeps only running runs")
        d.find_element(By.CSS_SELECTOR, "#state-filter option[value='']").click()
        for rid in (leased[0]["run_id"], leased[1]["run_id"]):
            d.find_element(By.CSS_SELECTOR, "input.pick[data-run-id='%d']" % rid).click()
        shot(d, a.out, "runs")
        d.execute_script("document.body.dataset.ready = '0'")
        d.find_element(By.ID, "compare").click()
        WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        st = chart_state(d, "loss")
        check(st is not None and len(st) == 2 and all(s["n"] == 50 for s in st), "compare overlays two series of 50 points")
        shot(d, a.out, "compare")

        # Live: a metric posted while the run page is open shows within 2 s.
        goto(d, cbase, "/run/%d" % live)
        st = chart_state(d, "loss")
        check(st is not None and len(st) == 1 and st[0]["n"] == 50, "run chart: one series, 50 points")
        posted = time.time()
        http("POST", curl + "/v1/worker/runs/%d/metrics" % live, worker,
             {"worker_id": "w", "attempt": 1, "batch_seq": 1, "points": [{"key": "loss", "step": 50, "value": 0.01}]})
        WebDriverWait(d, 5, poll_frequency=0.05).until(lambda d: chart_state(d, "loss")[0]["n"] == 51)
        waited = time.time() - posted
        check(waited < 2.0, "a new point appears on the open page in %.2f s (< 2 s)" % waited)
        check(d.execute_script("return window.assayLive.refreshes") >= 1,
              "the point came through the change feed (/v1/ui/changes), not a timer")
        before = fetches(d, "/v1/ui/runs/%d" % live)
        time.sleep(1.5)
        check(fetches(d, "/v1/ui/runs/%d" % live) == before,
              "an idle open run page makes no requests (its change request waits on the server)")
        posted = time.time()
        post_log(curl, worker, live, 0, "epoch 1: loss 0.01\n")
        waited = wait_for(d, lambda: "epoch 1: loss 0.01" in text_of(d, "log-stdout"),
                          "the log line shows in the live tail")
        check(waited < 2.0, "a log line a worker uploads shows in the live tail in %.2f s (< 2 s)" % waited)
        post_log(curl, worker, live, 19, "epoch 2: loss 0.005\n")
        wait_for(d, lambda: "epoch 2" in text_of(d, "log-stdout"), "the second log line")
        check(text_of(d, "log-stdout").count("epoch 1") == 1,
              "the tail appends from its byte cursor (no line twice)")
        shot(d, a.out, "run-live", full=True)
        # Sweeps page on the coordinator: a run finishing moves the progress bar live.
        goto(d, cbase, "/sweeps")
        http("POST", curl + "/v1/worker/runs/%d/finished" % live, worker, {"worker_id": "w", "attempt": 1, "exit_code": 0})
        waited = wait_for(d, lambda: "2 succeeded" in text_of(d, "sweeps-table"),
                          "the sweeps page shows the second success")
        check(waited < 2.0, "sweeps page: a run that finishes shows in the progress within %.2f s" % waited)

        # assay ui: the recorded database.
        ubase = "http://127.0.0.1:%d/ui/" % uport
        d.get(ubase + "#token=" + utoken)
        WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        goto(d, ubase, "/runs?sweep=")
        check(table_rows(d, "runs-table") == runs_wide(udb, "sweep IS NULL"),
              "assay ui runs table matches runs_wide row for row")
        goto(d, ubase, "/run/%d" % ids["curve"])
        check(sorted(d.execute_script("return Object.keys(window.assayCharts)")) == ["acc", "loss", "nan_metric"],
              "run page: one chart per metric")
        st = chart_state(d, "loss")
        check(len(st) == 1 and st[0]["n"] == 200, "recorded run: loss has 200 points")
        st = chart_state(d, "nan_metric")
        check(st[0]["n"] == 100 and st[0]["nulls"] == 10, "NaN values show as 10 gaps in 100 points")
        check("gsm8k" in d.find_element(By.ID, "evals-table").text, "run page lists its checkpoint's eval")
        shot(d, a.out, "run")
        # x = time: the points' wall times, in seconds after the run started.
        d.find_element(By.CSS_SELECTOR, "#x-axis option[value=time]").click()
        WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.xaxis") == "time")
        xs = d.execute_script("return window.assayCharts.loss.data.datasets[0].data.map(p => p.x)")
        check(len(xs) == 200 and min(xs) >= -1 and max(xs) < 600, "x = time: seconds since start (%.2f..%.2f)" % (min(xs), max(xs)))
        d.find_element(By.CSS_SELECTOR, "#x-axis option[value=step]").click()
        WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.xaxis") == "step")
        # Live under `assay ui`: another process writes the database and the log file.
        time.sleep(0.3)
        before = fetches(d, "/v1/ui/runs/%d" % ids["curve"])
        con = sqlite3.connect(udb)
        key = con.execute("SELECT id FROM metric_keys WHERE name = 'loss'").fetchone()[0]
        con.execute("INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES (?, 1, ?, 201, 0.1, 0)",
                    (ids["curve"], key))
        con.commit()
        con.close()
        posted = time.time()
        WebDriverWait(d, 5, poll_frequency=0.05).until(lambda d: chart_state(d, "loss")[0]["n"] == 201)
        waited = time.time() - posted
        check(waited < 2.0, "assay ui: a point another process writes shows in %.2f s (< 2 s)" % waited)
        check(fetches(d, "/v1/ui/runs/%d" % ids["curve"]) - before <= 3,
              "assay ui: it came through the change feed (one refresh, no polling)")
        logdir = os.path.join(udb + ".logs", str(ids["curve"]))
        os.makedirs(logdir, exist_ok=True)
        with open(os.path.join(logdir, "1.stderr.log"), "a") as f:
            f.write("Traceback: something went wrong\n")
        posted = time.time()
        waited = wait_for(d, lambda: "something went wrong" in text_of(d, "log-stderr"),
                          "the stderr line shows")
        check(waited < 2.0, "assay ui: a log line appended to the run's log file shows in %.2f s (< 2 s)" % waited)
        goto(d, ubase, "/run/%d" % ids["nometrics"])
        check(d.find_elements(By.ID, "no-metrics"), "a run without metrics renders and says so")
        # A failed run: timeline with the reason, a checkpoint continuing another run's.
        goto(d, ubase, "/run/%d" % ids["failed"])
        states = d.execute_script("return [...document.querySelectorAll('#timeline span')].map(s => s.dataset.state)")
        check(states == ["queued", "leased", "running", "failed"], "state timeline from run_events: %s" % states)
        check("CUDA error: device-side assert" in d.find_element(By.ID, "failure").text, "the failure reason shows")
        check("run %d step 200" % ids["curve"] in d.find_element(By.ID, "artifacts-table").text,
              "checkpoint lineage: the parent checkpoint's run and step")
        shot(d, a.out, "run-failed", full=True)
        # The 1,000-run sweep: runs page, best run, analysis.
        goto(d, ubase, "/runs?sweep=grid")
        check(len(table_rows(d, "runs-table")) == GRID, "runs page of a 1,000-run sweep renders all rows")
        goto(d, ubase, "/sweeps")
        d.find_element(By.CSS_SELECTOR, "#best-metric option[value=loss]").click()
        expect_n, best = grid_expect(udb)
        WebDriverWait(d, 10).until(lambda d: "best loss (min)" in text_of(d, "sweeps-table"))
        row = d.execute_script("""return [...document.querySelectorAll('#sweeps-table tbody tr')]
          .map(tr => tr.textContent).find(t => t.startsWith('grid'))""")
        check(("%d g" % best[0]) in row and fmt_num(best[1]) in row,
              "sweeps page: the best grid run by min loss is run %d (%s)" % (best[0], fmt_num(best[1])))
        if ids["pruned"]:
            check("2 pruned" in row, "the progress counts pruned runs")
        else:
            print("note: this database has no pruned state yet; the pruned count is not checked")
        shot(d, a.out, "sweeps-best")
        goto(d, ubase, "/analysis?sweep=grid&metric=loss")
        n = d.execute_script("return window.assayCharts.scatter.data.datasets.reduce((a, ds) => a + ds.data.length, 0)")
        check(n == expect_n, "analysis scatter: one point per finished run with a loss (%d)" % expect_n)
        runs_drawn = d.execute_script(
            "return window.assayCharts.parallel.data.datasets.reduce((a, ds) => a + ds.data.filter(p => p.y === null).length, 0)")
        check(runs_drawn == expect_n, "parallel coordinates: one line per finished run (%d)" % runs_drawn)
        labels = d.execute_script("return window.assayCharts.parallel.scales.x.ticks.map(t => t.label)")
        check([l[0] for l in labels] == ["lr", "opt", "wd", "loss"], "parallel axes: the params, then the metric")
        shot(d, a.out, "analysis")
        d.find_element(By.CSS_SELECTOR, "#analysis-param option[value=opt]").click()
        n = d.execute_script("return window.assayCharts.scatter.data.datasets.reduce((a, ds) => a + ds.data.length, 0)")
        check(n == expect_n, "analysis against a text param (opt) keeps every point")
        started = time.time()
        goto(d, ubase, "/run/%d" % ids["big"], timeout=20)
        render_s = time.time() - started
        st = chart_state(d, "loss")
        check(st[0]["n"] <= 2000 and st[0]["max"] > 40,
              "1,000,000-point run: %d points drawn, spike kept, rendered in %.2f s" % (st[0]["n"], render_s))
        shot(d, a.out, "run-1m")
        whole = d.execute_script("return window.assaySeries.loss.bucket_steps")
        drag_zoom(d, "loss", 700000, 850000)
        z = d.execute_script("return window.assaySeries.loss")
        st = chart_state(d, "loss")
        check(z["range"].get("from", 0) > 650000 and z["range"].get("to", 10 ** 9) < 900000,
              "zoom asks the server for the selected steps only (%s)" % z["range"])
        check(st[0]["n"] <= 2000 and z["bucket_steps"] < whole / 4 and st[0]["max"] > 40,
              "zoomed series: %d points (<= 2000), %d-step buckets instead of %d, spike kept"
              % (st[0]["n"], z["bucket_steps"], whole))
        drag_zoom(d, "loss", 777000, 778500)
        z = d.execute_script("return window.assaySeries.loss")
        check(not z["downsampled"] and z["points"] <= 2000 and max(v for v in z["values"] if v is not None) > 40,
              "zoomed to %d steps: every point (%d), the spike itself" % (z["last_step"] - z["first_step"], z["points"]))
        shot(d, a.out, "run-zoom")
        d.find_element(By.ID, "zoom-reset").click()
        WebDriverWait(d, 10).until(lambda d: d.execute_script("return document.body.dataset.zoomed") == "0")
        check(d.execute_script("return window.assaySeries.loss.bucket_steps") == whole, "reset zoom: the whole run again")
        goto(d, ubase, "/evals")
        check("exact_match" in d.find_element(By.ID, "evals-table").text, "evals leaderboard")
        shot(d, a.out, "evals")
        goto(d, ubase, "/sql")
        d.find_element(By.ID, "sql").clear()
        d.find_element(By.ID, "sql").send_keys("SELECT COUNT(*) AS n FROM metrics")
        d.find_element(By.ID, "run-sql").click()
        WebDriverWait(d, 10).until(lambda d: d.find_elements(By.ID, "sql-table"))
        con = sqlite3.connect(udb)
        npts = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        con.close()
        check(str(npts) in d.find_element(By.ID, "sql-table").text, "SQL box answers a read-only query")
        d.find_element(By.ID, "sql").clear()
        d.find_element(By.ID, "sql").send_keys("DELETE FROM runs")
        d.find_element(By.ID, "run-sql").click()
        WebDriverWait(d, 10).until(lambda d: "read-only" in d.find_element(By.ID, "sql-result").text)
        check(True, "SQL box refuses a write")
        shot(d, a.out, "sql")
        print("browser test took %.1f s" % (time.time() - t0))
    finally:
        if d is not None:
            d.quit()
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
