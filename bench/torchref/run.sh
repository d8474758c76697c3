#!/usr/bin/env bash
# Training and forward-only throughput of the native engine against the same
# model in PyTorch eager (Debian python3-torch), same threads, batch and data
# shape. Runs both programs alternately REPEATS times and prints the median of
# the per-run figures (each run's figure is itself a median over timed steps),
# with the load average before and after. Wall-clock figures are the target;
# CPU-time figures (process CPU seconds per step, all threads) show the same
# comparison with less noise from other processes on a shared machine.
#
# usage: bench/torchref/run.sh [BUILD_DIR] [THREADS] [REPEATS]
#   BUILD_DIR  where bench_native was built (default: build)
#   THREADS    OpenMP/OpenBLAS threads for ours, torch.set_num_threads for
#              torch (default: 1)
#   REPEATS    alternating runs of each (default: 3)
# Environment: STEPS (timed steps, default 7), WARMUP (default 2), PYTHON
# (default /usr/bin/python3), NATIVE (another bench_native binary to run).
# Config: L=4, C=256, heads=4, T=256, B=8, V=257 (byte tokenizer vocabulary).
# Both sides use OMP_WAIT_POLICY=passive: both link libgomp, and spinning
# workers steal the CPU from working threads on a shared machine.
# example: bench/torchref/run.sh build 1 5
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build}"
threads="${2:-1}"
repeats="${3:-3}"
py="${PYTHON:-/usr/bin/python3}"
native="${NATIVE:-$build/bench/torchref/bench_native}"
[[ -x "$native" ]] || { echo "run.sh: $native not found; build target bench_native" >&2; exit 1; }
"$py" -c 'import torch' 2>/dev/null || { echo "run.sh: $py cannot import torch" >&2; exit 1; }

args=(--threads "$threads" --warmup "${WARMUP:-2}" --steps "${STEPS:-7}"
      --layers 4 --embd 256 --heads 4 --seq 256 --batch 8 --vocab 257)
export OMP_WAIT_POLICY=passive
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for ((i = 0; i < repeats; i++)); do
  OMP_NUM_THREADS="$threads" "$native" "${args[@]}" | tee -a "$out"
  OMP_NUM_THREADS="$threads" "$py" "$here/torch_bench.py" "${args[@]}" | tee -a "$out"
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
"$py" "$here/table.py" "$out" "$threads" "$repeats" "$load_before" "$load_after"
