#!/usr/bin/env python3
"""Trivial trials end to end, Ray Tune vs Assay, from one run.

Ray Tune: N function trials that report one result and return, as a grid
search on a local Ray with 8 CPUs (one per trial), from Tuner.fit() to its
return. Assay: the same N runs of `true` through a real coordinator and 2
real workers x 4 slots (bench/e2e/bench_e2e.py, trivial scenario), from the
submit request to the last run's recorded end. Prints trials/s for each and
the ratio.

Ray comes from PyPI in a venv outside the test path
(~/.cache/assay/bench-peers-venv, made by bench/peers/setup-venv):
  $(bench/peers/setup-venv) bench/peers/ray_e2e.py --assay build/cli/assay
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def assay_trivial(assay, runs):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "e2e.json")
        # The Assay side needs only the standard library: Debian's python.
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "..", "e2e", "bench_e2e.py"),
                        "--assay", "assay=" + assay, "--runs", str(runs),
                        "--scenarios", "trivial", "--json", out], check=True,
                       stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)["assay/trivial"]


def ray_trivial(runs, cpus):
    import ray
    from ray import tune
    try:
        from ray.tune import RunConfig
    except ImportError:  # before Ray 2.40
        from ray.air import RunConfig

    def trivial(config):
        tune.report({"x": config["x"]})

    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(trivial, {"cpu": 1}),
                param_space={"x": tune.grid_search(list(range(runs)))},
                run_config=RunConfig(storage_path=storage, name="trivial", verbose=0))
            t0 = time.time()
            results = tuner.fit()
            wall = time.time() - t0
            done = sum(1 for r in results if r.error is None)
    finally:
        ray.shutdown()
    return {"runs": runs, "succeeded": done, "wall_s": wall, "runs_per_s": runs / wall,
            "ray": ray.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assay", required=True, help="the assay binary")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--cpus", type=int, default=8, help="Ray CPUs (Assay: 2 workers x 4 slots)")
    a = ap.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        sys.exit("ray is not installed in " + sys.executable +
                 "; run bench/peers/setup-venv and use its python")
    print("machine: %d cores, load average %s; %s UTC" % (
        os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg()),
        time.strftime("%Y-%m-%d %H:%M", time.gmtime())), flush=True)
    asy = assay_trivial(a.assay, a.runs)
    print("assay:    %d runs of `true`, %d succeeded, %.2f s: %.0f runs/s" % (
        asy["runs"], asy["succeeded"], asy["wall_s"], asy["runs_per_s"]), flush=True)
    rt = ray_trivial(a.runs, a.cpus)
    print("ray tune: %d trials (Ray %s), %d succeeded, %.2f s: %.1f trials/s" % (
        rt["runs"], rt["ray"], rt["succeeded"], rt["wall_s"], rt["runs_per_s"]), flush=True)
    print("ratio:    Assay is %.1fx Ray Tune's trials/s" % (asy["runs_per_s"] / rt["runs_per_s"]))


if __name__ == "__main__":
    main()
