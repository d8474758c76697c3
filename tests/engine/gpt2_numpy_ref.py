"""Reference GPT-2 forward in float64 numpy, for the engine's tests.

usage: gpt2_numpy_ref.py CKPT_DIR TOKENS(comma-separated) B T OUT
Reads config.json and model.safetensors (F32), writes logits [B,T,V] as
raw little-endian float64 to OUT. Written from the GPT-2 definition
(HF Conv1D weights [in, out], tanh GELU, LayerNorm eps 1e-5, tied head).
"""
import json
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", e["dtype"]
        b, en = e["data_offsets"]
        out[name] = np.frombuffer(data[b:en], dtype="<f4").astype(np.float64).reshape(e["shape"])
    return out


def layernorm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def main():
    d, toks, B, T, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    cfg = json.load(open(d + "/config.json"))
    p = load_safetensors(d + "/model.safetensors")
    g = lambda k: p["transformer." + k]
    C, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hs = C // H
    ids = np.array([int(t) for t in toks.split(",")]).reshape(B, T)
    x = g("wte.weight")[ids] + g("wpe.weight")[np.arange(T)][None]
    mask = np.tril(np.ones((T, T), dtype=bool))
    for l in range(L):
        pre = "h.%d." % l
        h = layernorm(x, g(pre + "ln_1.weight"), g(pre + "ln_1.bias"))
        qkv = h @ g(pre + "attn.c_attn.weight") + g(pre + "attn.c_attn.bias")
        q, k, v = np.split(qkv, 3, axis=-1)
        q = q.reshape(B, T, H, hs).transpose(0, 2, 1, 3)
        k = k.reshape(B, T, H, hs).transpose(0, 2, 1, 3)
        v = v.reshape(B, T, H, hs).transpose(0, 2, 1, 3)
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
        att = np.where(mask, att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + y @ g(pre + "attn.c_proj.weight") + g(pre + "attn.c_proj.bias")
        h = layernorm(x, g(pre + "ln_2.weight"), g(pre + "ln_2.bias"))
        h = gelu(h @ g(pre + "mlp.c_fc.weight") + g(pre + "mlp.c_fc.bias"))
        x = x + h @ g(pre + "mlp.c_proj.weight") + g(pre + "mlp.c_proj.bias")
    x = layernorm(x, g("ln_f.weight"), g("ln_f.bias"))
    logits = x @ g("wte.weight").T
    logits.astype("<f8").tofile(out)


if __name__ == "__main__":
    main()
