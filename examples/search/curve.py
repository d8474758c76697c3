#!/usr/bin/env python3
"""A deterministic synthetic trainer for adaptive-search sweeps (stdlib only).

It emits a learning curve through the Assay metric protocol: one line
{"step": s, "metrics": {"loss": ...}} per step on ASSAY_METRICS_FD (stdout
outside Assay). The curve depends only on the params and the step, so a rerun
prints the same numbers:

    loss(step) = floor(params) + 1 / sqrt(1 + step / k(lr)) + noise(params, step)

floor is smallest at lr = 10^-2.5, width = 128, momentum = 0.9, act = gelu;
k(lr) = 50 * sqrt(1e-3 / lr) steps, so a large lr converges fast to a worse
floor and a small one slowly: curves cross, and early stopping can be wrong.
noise is a fixed sine hash of (params, step), amplitude 0.005.

Params come as --name value arguments (the sweep's command template), or
from ASSAY_PARAMS (the JSON object Assay gives every run) for those not given:
  --lr (1e-3)  --width (64)  --momentum (0.9)  --act (relu)
  --steps      total steps, default 810
  --every      report every N steps (default 1; the last step always reports)
  --sleep      seconds to sleep per step (default 0), to make runs take time
  --fail-at    exit with status 3 at this step (a run that fails), default never

bench/search/ imports this file and calls loss_at(), so the benchmark and the
end-to-end tests see exactly the same problem.
"""
import json
import math
import os
import sys
import time

DEFAULTS = {"lr": 1e-3, "width": 64, "momentum": 0.9, "act": "relu",
            "steps": 810, "every": 1, "sleep": 0.0, "fail_at": -1}
ACT_OFFSET = {"relu": 0.0, "gelu": -0.02, "tanh": 0.05, "sigmoid": 0.1}


def floor_of(p):
    """The loss the run converges to."""
    lr, width = float(p["lr"]), float(p["width"])
    m, act = float(p["momentum"]), str(p["act"])
    return (0.1 + 0.5 * (math.log10(lr) + 2.5) ** 2
            + 0.02 * (math.log2(width) - 7.0) ** 2
            + 0.3 * (m - 0.9) ** 2 + ACT_OFFSET.get(act, 0.2))


def loss_at(p, step):
    """The loss a run with params p reports at `step` (>= 0)."""
    lr = float(p["lr"])
    k = 50.0 * math.sqrt(1e-3 / lr)
    noise = 0.005 * math.sin(12.9898 * step + 78.233 * math.log10(lr)
                             + 37.719 * float(p["width"]) + 4.1 * float(p["momentum"]))
    return floor_of(p) + 1.0 / math.sqrt(1.0 + step / k) + noise


def parse_params(argv, env):
    p = dict(DEFAULTS)
    given = json.loads(env.get("ASSAY_PARAMS", "") or "{}")
    for key, value in given.items():
        if key in p:
            p[key] = value
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or i + 1 >= len(argv):
            sys.exit("curve.py: expected --name value pairs, got %r" % arg)
        key = arg[2:].replace("-", "_")
        if key not in p:
            sys.exit("curve.py: unknown param --%s; expected one of %s"
                     % (key, ", ".join(sorted(p))))
        p[key] = argv[i + 1]
        i += 2
    for key in ("lr", "width", "momentum", "sleep"):
        p[key] = float(p[key])
    for key in ("steps", "every", "fail_at"):
        p[key] = int(float(p[key]))
    if p["lr"] <= 0 or p["width"] <= 0 or p["steps"] < 1 or p["every"] < 1:
        sys.exit("curve.py: expected lr > 0, width > 0, steps >= 1, every >= 1, got %r" % p)
    return p


def main():
    p = parse_params(sys.argv[1:], os.environ)
    fd = os.environ.get("ASSAY_METRICS_FD", "")
    out = os.fdopen(int(fd), "w", buffering=1, closefd=False) if fd.isdigit() else sys.stdout
    for step in range(1, p["steps"] + 1):
        if step == p["fail_at"]:
            sys.stderr.write("curve.py: failing at step %d as asked\n" % step)
            sys.exit(3)
        if p["sleep"] > 0:
            time.sleep(p["sleep"])
        if step % p["every"] == 0 or step == p["steps"]:
            line = {"step": step, "metrics": {"loss": round(loss_at(p, step), 9)}}
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
