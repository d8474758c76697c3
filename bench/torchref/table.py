"""Summary table for run.sh: medians over runs of each figure, and the ratio.

usage: table.py RESULTS THREADS REPEATS LOAD_BEFORE LOAD_AFTER
RESULTS holds the "native ..." and "torch ..." lines of bench_native and
torch_bench.py (key=value fields).
"""
import statistics
import sys

KEYS = (("train_tok_s", "train (wall clock)"), ("forward_tok_s", "forward (wall clock)"),
        ("train_cpu_tok_s", "train (CPU time)"), ("forward_cpu_tok_s", "forward (CPU time)"))


def main(path, threads, repeats, load_before, load_after):
    runs = {"native": {k: [] for k, _ in KEYS}, "torch": {k: [] for k, _ in KEYS}}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0] not in runs:
                continue
            kv = dict(p.split("=", 1) for p in parts[1:])
            for k, _ in KEYS:
                runs[parts[0]][k].append(float(kv[k]))
    print()
    print("L=4 C=256 heads=4 T=256 B=8 V=257, threads %s, median of %s runs" % (threads, repeats))
    print("load average (1/5/15 min): before %s, after %s" % (load_before, load_after))
    print("%-22s %9s %9s %7s   %s" % ("tokens/s", "native", "torch", "ratio", "per run: native | torch"))
    for k, label in KEYS:
        a, b = runs["native"][k], runs["torch"][k]
        if not a or not b:
            print("%-22s missing" % label)
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        per = " ".join("%.0f" % v for v in a) + " | " + " ".join("%.0f" % v for v in b)
        print("%-22s %9.0f %9.0f %6.2fx   %s" % (label, ma, mb, ma / mb, per))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
