#!/usr/bin/env python3
"""Time to first render of the dashboard in headless Chromium.

  bench_ui.py --assay build/cli/assay [--runs 10000] [--points 1000000]

Builds a database with one sweep of --runs runs (submitted to a real
`assay coordinator`, then marked finished, each run with a final loss) and
one run with --points loss points, serves it with `assay ui`, and reports,
for a fresh page load each time (median of 3): the runs page of the sweep,
the run page of the long run, and the sweep's analysis page (scatter and
parallel coordinates of every run), from navigation until the page marks
itself rendered (body[data-ready=1]: data fetched, table or charts drawn).
Target: < 1 s each.
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "ui"))
import ui_browser_test as t  # noqa: E402  (browser setup, server start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--assay", required=True)
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--points", type=int, default=1000000)
    ap.add_argument("--detail", action="store_true", help="print each request's time")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="assay-ui-bench-")
    procs = []
    try:
        subprocess.run([a.assay, "coordinator", "init", "--dir", tmp], check=True, stdout=subprocess.DEVNULL)
        user = open(os.path.join(tmp, "user.token")).read().strip()
        db = os.path.join(tmp, "bench.db")
        cp, cport = t.start([a.assay, "coordinator", "--db", db, "--listen", "127.0.0.1:0",
                             "--port-file", os.path.join(tmp, "cport")], os.path.join(tmp, "cport"))
        side = int(round(a.runs ** 0.5))
        sweep = {"name": "big", "command": "train --lr {lr} --wd {wd}", "resources": {"cpus": 1},
                 "space": {"lr": {"type": "grid", "values": [i / side for i in range(1, side + 1)]},
                           "wd": {"type": "grid", "values": list(range(a.runs // side))}}}
        t.http("POST", "http://127.0.0.1:%d/v1/sweeps" % cport, user, sweep)
        cp.terminate()
        cp.wait()
        con = sqlite3.connect(db)
        con.execute("INSERT OR IGNORE INTO metric_keys(name) VALUES ('loss')")
        key = con.execute("SELECT id FROM metric_keys WHERE name = 'loss'").fetchone()[0]
        ids = [r[0] for r in con.execute("SELECT id FROM runs ORDER BY id")]
        con.executemany("INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) "
                        "VALUES (?, 1, ?, 100, ?, 0)", ((i, key, 1.0 / i) for i in ids))
        con.execute("UPDATE runs SET state = 'succeeded', started_at = created_at, finished_at = created_at + 60")
        long_run = ids[0]
        con.executemany("INSERT OR REPLACE INTO metrics(run_id, attempt, key_id, step, value, wall_time) "
                        "VALUES (?, 1, ?, ?, ?, 0)",
                        ((long_run, key, s, 1.0 / (1 + s * 1e-4)) for s in range(a.points)))
        # Points written straight into `metrics` bypass the store's ingest,
        # which keeps metric_summary (migration 0007): fill it the same way.
        con.execute("INSERT OR REPLACE INTO metric_summary(run_id, attempt, key_id, points, last_step, "
                    "last_value, min_value, max_value) "
                    "SELECT m.run_id, m.attempt, m.key_id, count(*), max(m.step), "
                    "(SELECT x.value FROM metrics x WHERE x.run_id = m.run_id AND x.attempt = m.attempt "
                    "AND x.key_id = m.key_id ORDER BY x.step DESC LIMIT 1), min(m.value), max(m.value) "
                    "FROM metrics m GROUP BY m.run_id, m.attempt, m.key_id")
        con.commit()
        con.close()
        # runs_wide gains the loss columns when the store next opens the file
        # (here: recording one more run, outside the sweep).
        con = sqlite3.connect(db)
        con.execute("DROP VIEW IF EXISTS runs_wide")
        con.commit()
        con.close()
        subprocess.run([a.assay, "record", "--db", db, "--name", "touch", "--", "true"], check=True,
                       stdout=subprocess.DEVNULL)

        up, uport = t.start([a.assay, "ui", "--db", db, "--listen", "127.0.0.1:0",
                             "--port-file", os.path.join(tmp, "uport")], os.path.join(tmp, "uport"))
        procs.append(up)
        token = up.stdout.readline().strip().split("#token=")[1]
        base = "http://127.0.0.1:%d/ui/" % uport
        d = t.browser()
        try:
            d.get(base + "#token=" + token)
            t.WebDriverWait(d, 30).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
            results = {}
            for label, frag in [("runs page, %d-run sweep" % len(ids), "/runs?sweep=big"),
                                ("run page, %d-point run" % a.points, "/run/%d" % long_run),
                                ("analysis page, %d-run sweep" % len(ids), "/analysis?sweep=big&metric=loss")]:
                times = []
                for _ in range(3):
                    d.get("about:blank")
                    start = time.time()
                    d.get(base + "#" + frag)
                    t.WebDriverWait(d, 60, poll_frequency=0.01).until(
                        lambda d: d.execute_script("return document.body.dataset.ready") == "1")
                    times.append(time.time() - start)
                    if a.detail:
                        for name, dur in d.execute_script(
                                "return performance.getEntriesByType('resource').map(e => [e.name, e.duration])"):
                            print("    %7.1f ms  %s" % (dur, name.split("/v1/ui/")[-1][:90]))
                if "analysis" in label:
                    drawn = int(d.execute_script("return document.body.dataset.analysisPoints || '0'"))
                    if drawn != len(ids):
                        raise AssertionError("analysis page drew %d points, expected %d" % (drawn, len(ids)))
                results[label] = statistics.median(times)
                print("%-36s %.3f s (median of 3: %s)" % (label, results[label],
                                                       ", ".join("%.3f" % x for x in times)))
        finally:
            d.quit()
        print(json.dumps(results))
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
