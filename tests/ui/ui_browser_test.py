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
    for name, cmd in [("curve", ["python3", script]), ("nometrics", ["true"]), ("big", ["true"])]:
        subprocess.run([assay, "record", "--db", db, "--name", name, "--"] + cmd, check=True,
                       stdout=subprocess.DEVNULL)
    con = sqlite3.connect(db)
    ids = dict(con.execute("SELECT name, id FROM runs"))
    con.execute("INSERT OR IGNORE INTO metric_keys(name) VALUES ('loss'), ('nan_metric')")
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
    con.commit()
    con.close()
    return db, ids


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


def shot(d, out, name):
    d.save_screenshot(os.path.join(out, "ui-%s.png" % name))


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
        shot(d, a.out, "run-live")

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
        goto(d, ubase, "/run/%d" % ids["nometrics"])
        check(d.find_elements(By.ID, "no-metrics"), "a run without metrics renders and says so")
        started = time.time()
        goto(d, ubase, "/run/%d" % ids["big"], timeout=20)
        render_s = time.time() - started
        st = chart_state(d, "loss")
        check(st[0]["n"] <= 2000 and st[0]["max"] > 40,
              "1,000,000-point run: %d points drawn, spike kept, rendered in %.2f s" % (st[0]["n"], render_s))
        shot(d, a.out, "run-1m")
        goto(d, ubase, "/evals")
        check("exact_match" in d.find_element(By.ID, "evals-table").text, "evals leaderboard")
        shot(d, a.out, "evals")
        goto(d, ubase, "/sql")
        d.find_element(By.ID, "sql").clear()
        d.find_element(By.ID, "sql").send_keys("SELECT COUNT(*) AS n FROM metrics")
        d.find_element(By.ID, "run-sql").click()
        WebDriverWait(d, 10).until(lambda d: d.find_elements(By.ID, "sql-table"))
        check("1000500" in d.find_element(By.ID, "sql-table").text, "SQL box answers a read-only query")
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
