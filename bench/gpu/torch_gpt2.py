#!/usr/bin/env python3
"""PyTorch baseline for bench/gpu: the same GPT-2 shape, batch and step as
bench_gpu (forward, cross-entropy, backward, grad clip 1.0, AdamW; scoring =
no-grad forward + per-token log-probs), in bf16 autocast, eager and
torch.compile. Prints one JSON line per mode.

usage: torch_gpt2.py [--B 8] [--T 1024] [--L 12] [--C 768] [--NH 12]
                     [--V 50257] [--steps 10] [--warmup 3] [--modes eager,compile]
                     [--peak-tflops X]
"""
import argparse
import json
import math
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print(json.dumps({"engine": "torch", "skipped": "torch is not installed for " + sys.executable}))
    sys.exit(0)

PEAKS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0), ("A100", 312.0),
         ("L40S", 362.0), ("L4", 121.0), ("A10G", 70.0), ("RTX 4090", 165.0), ("A6000", 155.0)]


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, P, L, C, NH):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(P, C)
        self.h = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.h:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.t()  # tied head


def timed(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    for k, d in [("B", 8), ("T", 1024), ("L", 12), ("C", 768), ("NH", 12), ("V", 50257), ("steps", 10),
                 ("warmup", 3)]:
        ap.add_argument("--" + k, type=int, default=d)
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"engine": "torch", "skipped": "torch sees no CUDA device"}))
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(0)
    peak = a.peak_tflops or next((p for k, p in PEAKS if k in name), 0.0)
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, a.V, (a.B, a.T), generator=g).cuda()
    y = torch.roll(x, -1, dims=1)
    for mode in a.modes.split(","):
        torch.manual_seed(1)
        model = GPT(a.V, a.T, a.L, a.C, a.NH).cuda()
        n_params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        fwd = torch.compile(model) if mode == "compile" else model
        losses = []

        def train_step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = fwd(x)
            loss = F.cross_entropy(logits.float().view(-1, a.V), y.view(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.detach())

        def score_step():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                logits = fwd(x)
            lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, y.unsqueeze(-1))
            return lp.sum()

        tok = a.B * a.T * a.steps
        train_tps = tok / timed(train_step, a.warmup, a.steps)
        score_tps = tok / timed(score_step, a.warmup, a.steps)
        out = {"engine": "torch", "mode": "bf16-autocast-" + mode, "device": name, "B": a.B, "T": a.T,
               "params": n_params, "train_tokens_per_s": round(train_tps, 1),
               "score_tokens_per_s": round(score_tps, 1), "peak_tflops": peak,
               "mfu_train": round(6 * n_params * train_tps / (peak * 1e12), 4) if peak else -1,
               "mfu_score": round(2 * n_params * score_tps / (peak * 1e12), 4) if peak else -1,
               "first_loss": round(float(losses[0]), 4), "last_loss": round(float(losses[-1]), 4)}
        print(json.dumps(out), flush=True)
        del model, opt, fwd
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
