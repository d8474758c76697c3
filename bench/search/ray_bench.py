"""Adaptive search benchmark, Ray Tune's side: ASHAScheduler with Ray's
default search (random) or OptunaSearch (TPE) on the synthetic curve of
examples/search/curve.py. Ray runs the trials itself (4 at a time, as actors);
a Stopper ends the experiment when the step budget is used.

    python ray_bench.py [--seeds 5] [--first-seed 0] [--budget 16200] [--workers 4] [--every 10]
                        [--search random|optuna] [--time-budget S]

Prints one JSON line per seed. Run by bench/search/run with the peers' venv.
"""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CURVE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "search"))
sys.path.insert(0, CURVE_DIR)
import curve  # noqa: E402

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler  # noqa: E402

MIN_STEP, MAX_STEP, ETA = 10, 810, 3


def _report(metrics):
    if hasattr(tune, "report"):
        tune.report(metrics)
    else:  # older Ray
        from ray import train
        train.report(metrics)


def trainable(config):
    every = config["every"]
    for step in range(every, MAX_STEP + 1, every):
        _report({"loss": curve.loss_at(config, step), "step": step})


class TimedAsha(ASHAScheduler):
    """ASHAScheduler that adds up the time of its decisions."""
    decide_s = 0.0
    decisions = 0

    def on_trial_result(self, tune_controller, trial, result):
        t0 = time.perf_counter()
        r = super().on_trial_result(tune_controller, trial, result)
        TimedAsha.decide_s += time.perf_counter() - t0
        TimedAsha.decisions += 1
        return r


class Budget(tune.Stopper):
    """Stops everything once the trials reported `budget` steps in all."""

    def __init__(self, budget, every):
        self.budget, self.every, self.used = budget, every, 0

    def __call__(self, trial_id, result):
        self.used += self.every
        return False

    def stop_all(self):
        return self.used >= self.budget


def run_seed(args, seed):
    TimedAsha.decide_s, TimedAsha.decisions = 0.0, 0
    space = {"lr": tune.loguniform(1e-5, 1e-1), "width": tune.randint(16, 513),
             "momentum": tune.uniform(0.0, 0.99),
             "act": tune.choice(["relu", "gelu", "tanh", "sigmoid"]), "every": args.every}
    search_alg = None
    if args.search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch
        search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
    else:
        from ray.tune.search import BasicVariantGenerator
        search_alg = BasicVariantGenerator(random_state=seed)
    sched = TimedAsha(time_attr="step", max_t=MAX_STEP, grace_period=MIN_STEP,
                      reduction_factor=ETA, brackets=1)
    stopper = Budget(args.budget, args.every)
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=sched,
                                    search_alg=search_alg, num_samples=100000,
                                    max_concurrent_trials=args.workers, reuse_actors=True,
                                    time_budget_s=args.time_budget or None),
        run_config=tune.RunConfig(stop=stopper, verbose=0,
                                  failure_config=tune.FailureConfig(fail_fast=True),
                                  storage_path=os.path.join(args.storage, "s%d" % seed)))
    # reuse_actors=True: without it every trial starts a fresh worker process
    # (measured here: 329 s per seed instead of 22 s), which would measure
    # process start-up rather than Tune.
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    best, complete, trials = math.inf, 0, 0
    for r in grid:
        m = r.metrics or {}
        if "step" not in m:
            continue  # created but never started before the budget ran out
        trials += 1
        if m.get("step") == MAX_STEP:
            complete += 1
            best = min(best, m["loss"])
    print(json.dumps({"system": "ray-" + args.search, "version": ray.__version__, "seed": seed,
                      "best_final": best, "steps": stopper.used, "trials": trials,
                      "complete": complete, "reports": TimedAsha.decisions,
                      "report_us": 1e6 * TimedAsha.decide_s / max(1, TimedAsha.decisions),
                      "wall_s": wall, "per_trial_us": 1e6 * wall / max(1, trials)}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=16200)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--time-budget", type=float, default=0,
                    help="seconds per seed before Ray stops (0: none); steps then shows the budget used")
    ap.add_argument("--search", choices=["random", "optuna"], default="random")
    ap.add_argument("--storage", default=os.path.join(os.path.expanduser("~"), ".cache", "assay",
                                                      "bench-search-ray"))
    args = ap.parse_args()
    # Ray's workers import curve.py from the repository, not a package.
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", runtime_env={"env_vars": {"PYTHONPATH": CURVE_DIR}})
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        run_seed(args, seed)


if __name__ == "__main__":
    main()
