"""Adaptive search benchmark, Optuna's side: TPESampler + SuccessiveHalvingPruner
on the synthetic curve of examples/search/curve.py, with the same simulation of
asynchronous workers as bench_search.cpp (ask/tell interface).

    python optuna_bench.py [--seeds 5] [--budget 16200] [--workers 4] [--every 10]

Prints one JSON line per seed. Run by bench/search/run with the peers' venv.
"""
import argparse
import heapq
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "examples", "search"))
import curve  # noqa: E402

import optuna  # noqa: E402

MIN_STEP, MAX_STEP, ETA = 10, 810, 3


def suggest(trial):
    return {"lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
            "width": trial.suggest_int("width", 16, 512),
            "momentum": trial.suggest_float("momentum", 0.0, 0.99),
            "act": trial.suggest_categorical("act", ["relu", "gelu", "tanh", "sigmoid"])}


def run_seed(args, seed):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=MIN_STEP, reduction_factor=ETA, min_early_stopping_rate=0))
    ask_s = report_s = 0.0
    proposals = reports = complete = used = 0
    best = math.inf
    running = [None] * args.workers

    def start(w):
        nonlocal ask_s, proposals
        t0 = time.perf_counter()
        trial = study.ask()
        params = suggest(trial)
        ask_s += time.perf_counter() - t0
        proposals += 1
        running[w] = {"trial": trial, "params": params, "step": 0, "last": None}

    q = []
    for w in range(args.workers):
        start(w)
        heapq.heappush(q, (0, w))
    while q and used < args.budget:
        now, w = heapq.heappop(q)
        t = running[w]
        n = min(args.every, MAX_STEP - t["step"], args.budget - used)
        t["step"] += n
        used += n
        t["last"] = curve.loss_at(dict(t["params"]), t["step"])
        t0 = time.perf_counter()
        t["trial"].report(t["last"], t["step"])
        prune = t["trial"].should_prune()
        done = t["step"] >= MAX_STEP
        if prune and not done:
            study.tell(t["trial"], state=optuna.trial.TrialState.PRUNED)
        elif done:
            study.tell(t["trial"], t["last"])
        report_s += time.perf_counter() - t0
        reports += 1
        if prune or done:
            if done:
                best = min(best, t["last"])
                complete += 1
            if used >= args.budget:
                break
            start(w)
        heapq.heappush(q, (now + n, w))
    print(json.dumps({"system": "optuna", "version": optuna.__version__, "seed": seed,
                      "best_final": best, "steps": used, "trials": proposals,
                      "complete": complete, "reports": reports,
                      "propose_us": 1e6 * ask_s / proposals, "report_us": 1e6 * report_s / reports,
                      "per_trial_us": 1e6 * (ask_s + report_s) / proposals}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=16200)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args()
    for seed in range(args.seeds):
        run_seed(args, seed)


if __name__ == "__main__":
    main()
