"""PyTorch (eager, CPU) side of the comparison in bench/torchref/run.sh.

Same steps as bench_native: training tokens/s (forward, mean cross-entropy,
backward, clip to norm 1, AdamW with weight decay on 2-D weights) and
forward-only scoring tokens/s (inference mode, logits only); B*T divided by
the median time of the timed steps (wall clock, and process CPU time, which
a loaded machine disturbs less), after warm-up steps. The model is
tests/torchref/torch_gpt.py.

usage: torch_bench.py [--threads N] [--warmup N] [--steps N] [--layers L]
                      [--embd C] [--heads NH] [--seq T] [--batch B] [--vocab V]
Output: one line "torch train_tok_s=... forward_tok_s=... train_cpu_tok_s=...
forward_cpu_tok_s=... loss=... threads=...".
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "torchref"))
from torch_gpt import GPT  # noqa: E402


def time_steps(warmup, steps, fn):
    """Median wall and process-CPU seconds per call after warm-up calls."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return sorted(wall)[len(wall) // 2], sorted(cpu)[len(cpu) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in (("threads", 1), ("warmup", 2), ("steps", 7), ("layers", 4), ("embd", 256),
                          ("heads", 4), ("seq", 256), ("batch", 8), ("vocab", 257)):
        ap.add_argument("--" + name, type=int, default=default)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = GPT(a.vocab, a.seq, a.layers, a.heads, a.embd)
    model.init_gpt2(1)
    named = list(model.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in named if p.dim() == 2], "weight_decay": 0.01},
                             {"params": [p for n, p in named if p.dim() != 2], "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(12345)
    seq = torch.randint(0, a.vocab, (a.batch * a.seq + 1,), generator=g)
    x = seq[:-1].view(a.batch, a.seq)
    y = seq[1:].view(a.batch, a.seq)
    loss_box = [0.0]

    def train_step():
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, a.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_box[0] = loss.item()

    def forward_step():
        with torch.inference_mode():
            model(x)

    bt = a.batch * a.seq
    train_w, train_c = time_steps(a.warmup, a.steps, train_step)
    fwd_w, fwd_c = time_steps(a.warmup, a.steps, forward_step)
    print("torch train_tok_s=%.1f forward_tok_s=%.1f train_cpu_tok_s=%.1f forward_cpu_tok_s=%.1f "
          "loss=%.4f threads=%d" % (bt / train_w, bt / fwd_w, bt / train_c, bt / fwd_c, loss_box[0],
                                    torch.get_num_threads()))


if __name__ == "__main__":
    main()
