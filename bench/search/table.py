"""Prints the markdown table of bench/search results (JSON lines): per
system, medians over seeds."""
import json
import statistics
import sys

rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        key = r["system"] + ("" if r["system"].startswith(("optuna", "ray")) else
                             " (" + r.get("sampler", "") + ")")
        rows.setdefault(key, []).append(r)


def med(rs, k):
    v = [r[k] for r in rs if k in r]
    return statistics.median(v) if v else float("nan")


print("| system | seeds | best final loss, median (min-max) | trainer steps | trials (complete) "
      "| library time per proposal | per report | per trial |")
print("|---|---|---|---|---|---|---|---|")
for key, rs in rows.items():
    best = [r["best_final"] for r in rs]
    per_trial = med(rs, "per_trial_us")
    wall = " (wall)" if key.startswith("ray") else ""
    print("| %s | %d | %.4f (%.4f-%.4f) | %d | %d (%d) | %s | %.1f us | %.0f us%s |" % (
        key, len(rs), statistics.median(best), min(best), max(best), med(rs, "steps"),
        med(rs, "trials"), med(rs, "complete"),
        "%.0f us" % med(rs, "propose_us") if "propose_us" in rs[0] else "n/a",
        med(rs, "report_us"), per_trial, wall))
