#!/usr/bin/env bash
# Continuation log-likelihood throughput: native backend (bench_score) against
# a PyTorch reimplementation of the same GPT forward on the same weights and
# requests (torch_score.py, Debian python3-torch), same threads and batch.
# Runs both alternately REPEATS times and prints the median tokens/s of each
# and their ratio, with the load average before and after.
#
# usage: bench/evalnative/run.sh [BUILD_DIR] [THREADS] [REPEATS]
# Environment: BATCH (16), REQUESTS (256), LAYERS (4), EMBD (256), HEADS (4),
# SEQ (256), PYTHON (/usr/bin/python3). Vocabulary: 257 (byte tokenizer).
# example: bench/evalnative/run.sh build-release 1 3
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build}"
threads="${2:-1}"
repeats="${3:-3}"
py="${PYTHON:-/usr/bin/python3}"
bin="$build/bench/evalnative/bench_score"
[[ -x "$bin" ]] || { echo "run.sh: $bin not found; build target bench_score" >&2; exit 1; }
"$py" -c 'import torch' 2>/dev/null || { echo "run.sh: $py cannot import torch" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS="$threads"
batch="${BATCH:-16}"
"$bin" --ckpt "$work/ckpt" --make --layers "${LAYERS:-4}" --embd "${EMBD:-256}" --heads "${HEADS:-4}" \
  --seq "${SEQ:-256}" --threads "$threads" --batch "$batch" --requests "${REQUESTS:-256}" \
  --repeats 1 --dump "$work/requests.json" > /dev/null
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 0; i < repeats; i++)); do
  "$bin" --ckpt "$work/ckpt" --threads "$threads" --batch "$batch" --requests "${REQUESTS:-256}" | tee -a "$work/out"
  "$py" "$here/torch_score.py" --ckpt "$work/ckpt" --requests "$work/requests.json" \
    --threads "$threads" --batch "$batch" | tee -a "$work/out"
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - "$work/out" "$threads" "$repeats" "$load_before" "$load_after" <<'PY'
import statistics, sys
path, threads, repeats, lb, la = sys.argv[1:6]
runs = {"native": [], "torch": []}
for line in open(path):
    p = line.split()
    if p and p[0] in runs:
        runs[p[0]].append(float(dict(x.split("=", 1) for x in p[1:])["cont_tok_s"]))
a, b = statistics.median(runs["native"]), statistics.median(runs["torch"])
print()
print("continuation log-likelihood, threads %s, median of %s runs" % (threads, repeats))
print("load average (1/5/15 min): before %s, after %s" % (lb, la))
print("continuation tokens/s: native %.0f, torch %.0f, ratio native/torch %.2fx" % (a, b, a / b))
PY
