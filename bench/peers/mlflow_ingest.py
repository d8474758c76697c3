#!/usr/bin/env python3
"""Metric ingest, MLflow vs Assay, from one run.

MLflow: `MlflowClient.log_batch` (1,000 metrics per call, MLflow's limit) into
its SQLAlchemy store on a local SQLite file, in-process, no HTTP: MLflow's
fastest local path. Assay: `bench_coordinator ingest`, 8 runs posting metric
batches concurrently over HTTP to a coordinator that commits them to SQLite.
Same number of points by default (8 runs x 100 batches x 2,000 = 1.6M, 4
metrics); --scale shrinks MLflow's side (the ratio compares points/s).

MLflow comes from PyPI in a venv outside the test path:
  ~/.cache/assay/bench-peers-venv (bench/peers/setup-venv) or any python with
  mlflow: python bench/peers/mlflow_ingest.py --bench build/bench/coordinator/bench_coordinator
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def assay_ingest(bench, durability):
    out = subprocess.run([bench, "ingest", durability], check=True, capture_output=True,
                         text=True).stdout
    m = re.search(r"via HTTP in ([\d.]+) s: (\d+) points/s", out)
    if not m:
        sys.exit("cannot read the Assay figure from:\n" + out)
    return float(m.group(2)), out.strip()


def mlflow_ingest(runs, batches, points, tmp):
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri("sqlite:///" + os.path.join(tmp, "mlflow.db"))
    client = MlflowClient()
    exp = client.create_experiment("ingest", artifact_location="file://" + tmp + "/artifacts")
    keys = ["loss", "acc", "lr", "grad_norm"]
    ids = [client.create_run(exp).info.run_id for _ in range(runs)]
    # Built before timing, as the Assay side builds its request bodies first.
    work = []
    for r in range(runs):
        for b in range(batches):
            ms = []
            for p in range(points):
                step = b * (points // 4) + p // 4
                ms.append(Metric(keys[p % 4], 0.001 * p, 1_700_000_000_000 + step, step))
            for i in range(0, len(ms), 1000):
                work.append((ids[r], ms[i:i + 1000]))
    t0 = time.perf_counter()
    for run_id, ms in work:
        client.log_batch(run_id, metrics=ms)
    s = time.perf_counter() - t0
    total = runs * batches * points
    return total / s, total, s, mlflow.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default="build/bench/coordinator/bench_coordinator")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the 100 batches per run MLflow logs (default 1)")
    a = ap.parse_args()
    try:
        import mlflow  # noqa: F401
    except ImportError:
        sys.exit("mlflow_ingest: mlflow is not installed in " + sys.executable +
                 "; run bench/peers/setup-venv and use its python")
    tmp = tempfile.mkdtemp(prefix="assay-mlflow-ingest-")
    try:
        # MLflow's SQLite store keeps SQLite's defaults (rollback journal,
        # synchronous=FULL: an fsync per commit), so Assay's `full` is the
        # like-for-like figure; `normal` is shown beside it.
        assay = {d: assay_ingest(a.bench, d) for d in ("full", "normal")}
        batches = max(1, int(round(100 * a.scale)))
        ml_pps, total, s, ver = mlflow_ingest(8, batches, 2000, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for d, (pps, out) in assay.items():
        print(next(l for l in out.splitlines() if "via HTTP" in l))
    print("mlflow %s log_batch (SQLite store, in-process): %d points in %.1f s: %.0f points/s"
          % (ver, total, s, ml_pps))
    for d, (pps, _) in assay.items():
        print("ingest ratio Assay/MLflow, Assay durability %-6s: %.1fx" % (d, pps / ml_pps))


if __name__ == "__main__":
    main()
