#!/usr/bin/env bash
# GPU benchmark: the native engine (bench_gpu) against PyTorch bf16 autocast
# (eager and torch.compile) on the same GPU, model and batch; prints a table
# with the engine/torch ratios.
#
# usage: bench/gpu/run.sh BENCH_GPU_BINARY [bench args, e.g. --B 8 --T 1024 --steps 10]
# env:   PYTHON (default python3; torch is skipped with a message when missing)
#        TORCH_MODES (default eager,compile)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:?usage: bench/gpu/run.sh BENCH_GPU_BINARY [args]}"
shift
py="${PYTHON:-python3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== assay engine (CUDA, fp32 + TF32 matmuls)"
if ! "$bin" "$@" > "$out/assay.jsonl"; then
  echo "bench_gpu failed" >&2
  exit 1
fi
cat "$out/assay.jsonl"
echo "== PyTorch ($py)"
if "$py" -c "import torch" 2> /dev/null; then
  "$py" "$here/torch_gpt2.py" --modes "${TORCH_MODES:-eager,compile}" "$@" > "$out/torch.jsonl" || \
    echo '{"engine": "torch", "skipped": "torch_gpt2.py failed"}' >> "$out/torch.jsonl"
else
  echo "{\"engine\": \"torch\", \"skipped\": \"torch is not importable by $py\"}" > "$out/torch.jsonl"
fi
cat "$out/torch.jsonl"

"$py" - "$out/assay.jsonl" "$out/torch.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip()]
ours = next(r for r in rows if r.get("engine") == "assay")
print()
print(f"GPU: {ours['device']}   B={ours['B']} T={ours['T']} params={ours['params']:.0f}   peak {ours['peak_tflops']} TFLOP/s (dense bf16)")
hdr = f"{'engine':32} {'train tok/s':>12} {'score tok/s':>12} {'MFU train':>10} {'MFU score':>10} {'train x':>8} {'score x':>8}"
print(hdr)
print("-" * len(hdr))
def line(r, ref):
    name = r["engine"] + " " + r.get("mode", "")
    tx = ours["train_tokens_per_s"] / r["train_tokens_per_s"] if ref else 1.0
    sx = ours["score_tokens_per_s"] / r["score_tokens_per_s"] if ref else 1.0
    print(f"{name:32} {r['train_tokens_per_s']:12.0f} {r['score_tokens_per_s']:12.0f} "
          f"{r['mfu_train']:10.3f} {r['mfu_score']:10.3f} {tx:8.2f} {sx:8.2f}")
line(ours, False)
for r in rows:
    if r.get("engine") == "torch":
        if "skipped" in r:
            print(f"{'torch':32} skipped: {r['skipped']}")
        else:
            line(r, True)
print("(train x / score x: assay tokens/s divided by that row's; target >= 1.0 vs torch eager)")
PY
