#!/usr/bin/env python3
"""Top-20 leaderboard by final metric, MLflow vs Assay, from one run.

Both sides hold the same runs and points (default 10,000 runs x 1,000 points
of `loss`, the size of bench_leaderboard) and answer "the 20 runs with the
lowest final loss":
  - MLflow: `MlflowClient.search_runs(order_by=["metrics.loss ASC"],
    max_results=20)` on its SQLAlchemy store over a local SQLite file, timed
    in-process and as a process (`python -c` doing the same, start-up
    included);
  - Assay: `bench_leaderboard`, the SQL in-process and `assay query` as a
    process.
MLflow's side is built with log_batch (1,000 metrics per call);
--mlflow-points logs fewer points per run on its side when building 10M points
through MLflow takes too long (hours at its ~5,000 points/s here): its
search_runs reads the latest_metrics table, one row per run and metric, so its
query time follows the number of runs, not of points. The size per million
points is then MLflow's own, measured on what it holds.

MLflow comes from PyPI in a venv outside the test path
(~/.cache/assay/bench-peers-venv, made by bench/peers/setup-venv):
  <venv>/bin/python bench/peers/mlflow_leaderboard.py
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SEARCH = ("import mlflow, sys\n"
          "from mlflow.tracking import MlflowClient\n"
          "mlflow.set_tracking_uri(sys.argv[1])\n"
          "c = MlflowClient()\n"
          "e = c.get_experiment_by_name('lb').experiment_id\n"
          "rs = c.search_runs([e], order_by=['metrics.loss ASC'], max_results=20)\n"
          "print(len(rs))\n")


def assay_side(bench, runs, points):
    out = subprocess.run([bench, "--runs", str(runs), "--points", str(points), "--no-scan"], check=True,
                         capture_output=True, text=True).stdout
    sql = re.search(r"SQL in-process, run_metric_summary \(0007\)\s+\d+ rows: median\s+([\d.]+) ms", out)
    proc = re.search(r"`assay query` process, run_metric_summary \(0007\)\s+median\s+([\d.]+) ms", out)
    size = re.search(r"= ([\d.]+) MB per million points", out)
    if not (sql and proc and size):
        sys.exit("cannot read the Assay figures from:\n" + out)
    return float(sql.group(1)), float(proc.group(1)), float(size.group(1)), out.strip()


def mlflow_build(uri, tmp, runs, points):
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    c = MlflowClient()
    e = c.create_experiment("lb", artifact_location="file://" + tmp + "/artifacts")
    t0 = time.perf_counter()
    for r in range(runs):
        run_id = c.create_run(e).info.run_id
        c.log_param(run_id, "lr", 0.001 * (r % 100 + 1))
        offset = 1e-4 * ((r // 100 * 7919 + r % 100 * 104729) % 1000)
        ms = [Metric("loss", 1.0 / (k + 1) + offset, 1_700_000_000_000 + k, k) for k in range(points)]
        for i in range(0, points, 1000):
            c.log_batch(run_id, metrics=ms[i:i + 1000])
    return time.perf_counter() - t0, mlflow.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default="build/bench/coordinator/bench_leaderboard")
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--mlflow-points", type=int, default=0,
                    help="points per run on MLflow's side (default: --points)")
    a = ap.parse_args()
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        sys.exit("mlflow_leaderboard: mlflow is not installed in " + sys.executable +
                 "; run bench/peers/setup-venv and use its python")
    tmp = tempfile.mkdtemp(prefix="assay-mlflow-lb-")
    try:
        sql_ms, proc_ms, assay_mb, assay_out = assay_side(a.bench, a.runs, a.points)
        db = os.path.join(tmp, "mlflow.db")
        uri = "sqlite:///" + db
        ml_points = a.mlflow_points or a.points
        build_s, ver = mlflow_build(uri, tmp, a.runs, ml_points)
        c = MlflowClient()
        e = c.get_experiment_by_name("lb").experiment_id
        t = []
        for _ in range(5):
            t0 = time.perf_counter()
            rs = c.search_runs([e], order_by=["metrics.loss ASC"], max_results=20)
            t.append(time.perf_counter() - t0)
        assert len(rs) == 20
        p = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", SEARCH, uri], check=True, capture_output=True)
            p.append(time.perf_counter() - t0)
        ml_mb = os.path.getsize(db) / 1e6 / (a.runs * ml_points / 1e6)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(l for l in assay_out.splitlines() if "leaderboard:" in l))
    total = a.runs * ml_points
    print("mlflow %s: built %d runs x %d points in %.0f s (%.0f points/s)"
          % (ver, a.runs, ml_points, build_s, total / build_s))
    ml_sql, ml_proc = 1e3 * statistics.median(t), 1e3 * statistics.median(p)
    print("mlflow search_runs top 20 in-process: median %.1f ms; as a process: median %.0f ms"
          % (ml_sql, ml_proc))
    print("mlflow database %.1f MB per million points" % ml_mb)
    print("leaderboard ratio MLflow/Assay: in-process %.1fx, as a process %.1fx; "
          "database size per point %.1fx" % (ml_sql / sql_ms, ml_proc / proc_ms, ml_mb / assay_mb))


if __name__ == "__main__":
    main()
