"""The Assay GPT in plain PyTorch, as an independent reference for the engine.

The model is written from the GPT-2 definition with torch.nn building blocks:
token + position embeddings, pre-LN blocks (causal multi-head attention,
tanh-GELU MLP), a final LayerNorm (eps 1e-5) and an output head tied to the
token embedding. Linear weights use the Hugging Face Conv1D layout [in, out]
(y = x @ W + b), so parameter names and shapes are those of an Assay (or HF
GPT-2) checkpoint and load with load_state_dict(strict=True).

usage:
  torch_gpt.py parity CKPT_DIR INPUTS OUT [--lr LR] [--wd WD]
      INPUTS is a safetensors file with "tokens" and "targets" [B, T]
      (F32 holding integers, -1 = ignored target) and, per parameter NAME,
      "g1.NAME" and "g2.NAME": two gradients for the AdamW check.
      OUT (safetensors, F32) receives, for float32 and float64 runs
      (prefix "f32." / "f64."): "logits" [B, T, V], "loss" [1] (mean
      cross-entropy over counted targets) and "grad.NAME"; and
      "adamw1.NAME" / "adamw2.NAME": the parameters after one and two
      torch.optim.AdamW steps (float32, lr LR, weight decay WD on 2-D
      weights only) fed with g1 then g2.

The safetensors format is read and written here with struct + json + numpy
(8-byte little-endian header length, JSON header, raw little-endian data).
"""
import argparse
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_NP_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path):
    """Returns {name: np.ndarray} for every tensor in the file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        dt = e["dtype"]
        if dt == "BF16":
            bits = np.frombuffer(data[b:en], dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif dt in _NP_DTYPES:
            arr = np.frombuffer(data[b:en], dtype=_NP_DTYPES[dt])
        else:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
        out[name] = arr.reshape(e["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    """Writes {name: array} as F32 tensors, header padded to 8 bytes."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(a)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Conv1D(nn.Module):
    """Linear layer with the weight stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        shape = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class Attention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = Conv1D(n_embd, 3 * n_embd)
        self.c_proj = Conv1D(n_embd, n_embd)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        # [B, T, C] -> [B, NH, T, hs]
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = Conv1D(n_embd, 4 * n_embd)
        self.c_proj = Conv1D(4 * n_embd, n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, eps):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = Attention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Parameters are named as in a GPT-2 checkpoint: transformer.wte.weight, ..."""

    def __init__(self, vocab_size, n_positions, n_layer, n_head, n_embd, eps=1e-5):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(n_positions, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head, eps) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd, eps=eps),
        ))

    def forward(self, idx):
        """idx [B, T] int64 -> logits [B, T, V]."""
        tr = self.transformer
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = tr.wte(idx) + tr.wpe(pos)[None]
        for block in tr.h:
            x = block(x)
        return tr.ln_f(x) @ tr.wte.weight.t()  # tied head, no bias

    def init_gpt2(self, seed):
        """GPT-2 style random init (for benchmarks; not Assay's RNG)."""
        g = torch.Generator().manual_seed(seed)
        n_layer = len(self.transformer.h)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02
                    if name.endswith("c_proj.weight"):
                        std = 0.02 / math.sqrt(2 * n_layer)
                    p.normal_(0.0, std, generator=g)
                elif name.endswith("weight"):
                    p.fill_(1.0)
                else:
                    p.zero_()


def model_from_config(cfg):
    return GPT(cfg["vocab_size"], cfg["n_positions"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
               cfg.get("layer_norm_epsilon", 1e-5))


def load_checkpoint(ckpt_dir, dtype=torch.float32):
    """A GPT with the weights of an Assay checkpoint directory."""
    with open(ckpt_dir + "/config.json") as f:
        cfg = json.load(f)
    model = model_from_config(cfg)
    state = {}
    for name, a in read_safetensors(ckpt_dir + "/model.safetensors").items():
        if not name.startswith("transformer."):
            name = "transformer." + name
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias") or name == "lm_head.weight":
            continue
        state[name] = torch.from_numpy(a.astype(np.float32))
    model.load_state_dict(state, strict=True)
    return model.to(dtype)


def forward_backward(model, tokens, targets):
    """Mean cross-entropy over targets >= 0; returns (logits, loss) after backward."""
    model.zero_grad(set_to_none=True)
    logits = model(tokens)
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-1)
    loss.backward()
    return logits.detach(), loss.detach()


def adamw_steps(model, grads_seq, lr, wd):
    """Parameters after each torch.optim.AdamW step fed with grads_seq[i]."""
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() == 2]
    other = [p for n, p in named if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                             {"params": other, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8)
    out = []
    for grads in grads_seq:
        for n, p in named:
            p.grad = torch.from_numpy(grads[n]).to(p.dtype)
        opt.step()
        out.append({n: p.detach().numpy().copy() for n, p in named})
    return out


def cmd_parity(args):
    inputs = read_safetensors(args.inputs)
    tokens = torch.from_numpy(inputs["tokens"].astype(np.int64))
    targets = torch.from_numpy(inputs["targets"].astype(np.int64))
    out = {}
    for tag, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        model = load_checkpoint(args.ckpt, dtype)
        logits, loss = forward_backward(model, tokens, targets)
        out[tag + ".logits"] = logits.numpy()
        out[tag + ".loss"] = loss.reshape(1).numpy()
        for n, p in model.named_parameters():
            out[tag + ".grad." + n] = p.grad.numpy()
    model = load_checkpoint(args.ckpt, torch.float32)
    names = [n for n, _ in model.named_parameters()]
    seq = [{n: inputs["g%d.%s" % (i, n)] for n in names} for i in (1, 2)]
    for i, params in enumerate(adamw_steps(model, seq, args.lr, args.wd), start=1):
        for n, a in params.items():
            out["adamw%d.%s" % (i, n)] = a
    write_safetensors(args.out, out)
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parity", help="logits, gradients and AdamW steps for a checkpoint")
    p.add_argument("ckpt")
    p.add_argument("inputs")
    p.add_argument("out")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--wd", type=float, default=0.1)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    return cmd_parity(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
