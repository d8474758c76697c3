"""PyTorch side of the scoring benchmark (bench/evalnative/run.sh).

Loads an Assay checkpoint (model.safetensors in the Hugging Face GPT-2
layout, Conv1D weights [in, out], head tied to wte; config.json) with torch,
reimplements the GPT-2 forward, and scores the requests that bench_score
dumped (token ids of context and continuation) the way the native backend
does: sort by length, batches of --batch padded to the longest, one forward
per batch, log-softmax, the continuation tokens' log-probs summed. Prints the
median continuation tokens/s over --repeats timed passes after one warm-up,
and the largest difference from the native log-likelihoods in the dump.

usage: torch_score.py --ckpt DIR --requests FILE [--threads 1] [--batch 16] [--repeats 3]
"""
import argparse
import json
import math
import os
import struct
import time

import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit("torch_score.py: %s: dtype %s, expected F32" % (name, info["dtype"]))
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(raw[base + b:base + e]), dtype=torch.float32)
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        out[key] = t.reshape(info["shape"])
    return out


class Gpt:
    def __init__(self, w, cfg):
        self.w, self.L, self.nh = w, cfg["n_layer"], cfg["n_head"]

    def layer_norm(self, x, p):
        return F.layer_norm(x, x.shape[-1:], self.w[p + ".weight"], self.w[p + ".bias"], 1e-5)

    def forward(self, idx):
        w = self.w
        B, T = idx.shape
        x = w["wte.weight"][idx] + w["wpe.weight"][:T]
        C = x.shape[-1]
        hs = C // self.nh
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for l in range(self.L):
            p = "h.%d." % l
            h = self.layer_norm(x, p + "ln_1")
            qkv = torch.addmm(w[p + "attn.c_attn.bias"], h.view(B * T, C), w[p + "attn.c_attn.weight"])
            q, k, v = qkv.view(B, T, 3, self.nh, hs).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B * T, C)
            x = x + torch.addmm(w[p + "attn.c_proj.bias"], y, w[p + "attn.c_proj.weight"]).view(B, T, C)
            h = self.layer_norm(x, p + "ln_2").view(B * T, C)
            h = F.gelu(torch.addmm(w[p + "mlp.c_fc.bias"], h, w[p + "mlp.c_fc.weight"]), approximate="tanh")
            x = x + torch.addmm(w[p + "mlp.c_proj.bias"], h, w[p + "mlp.c_proj.weight"]).view(B, T, C)
        x = self.layer_norm(x, "ln_f")
        return x @ w["wte.weight"].t()


def score(model, reqs, batch):
    # Each request: inputs = (context + continuation)[:-1]; the continuation's
    # tokens are predicted by the last len(continuation) positions.
    items = []
    for i, r in enumerate(reqs):
        seq = r["context"] + r["continuation"]
        items.append((len(seq) - 1, i, seq))
    items.sort(key=lambda t: -t[0])
    out = [0.0] * len(reqs)
    for s in range(0, len(items), batch):
        chunk = items[s:s + batch]
        T = chunk[0][0]
        x = torch.zeros(len(chunk), T, dtype=torch.long)
        for b, (n, _, seq) in enumerate(chunk):
            x[b, :n] = torch.tensor(seq[:-1])
        logp = model.forward(x).log_softmax(-1)
        for b, (n, i, seq) in enumerate(chunk):
            c = len(reqs[i]["continuation"])
            tgt = torch.tensor(seq[-c:])
            out[i] = logp[b, n - c:n].gather(1, tgt[:, None]).sum().item()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--requests", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.ckpt, "config.json")))
    model = Gpt(load_safetensors(os.path.join(a.ckpt, "model.safetensors")), cfg)
    reqs = json.load(open(a.requests))
    cont = sum(len(r["continuation"]) for r in reqs)
    secs = []
    with torch.inference_mode():
        for rep in range(a.repeats + 1):
            t0 = time.perf_counter()
            ll = score(model, reqs, a.batch)
            if rep > 0:
                secs.append(time.perf_counter() - t0)
    secs.sort()
    s = secs[len(secs) // 2]
    diff = max(abs(x - r["logprob"]) for x, r in zip(ll, reqs)) if "logprob" in reqs[0] else float("nan")
    print("torch cont_tok_s=%.1f seconds=%.4f requests=%d cont_tokens=%d threads=%d batch=%d max_abs_diff_vs_native=%.2e"
          % (cont / s, s, len(reqs), cont, torch.get_num_threads(), a.batch, diff))


if __name__ == "__main__":
    main()
