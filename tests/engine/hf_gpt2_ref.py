"""Logits of a checkpoint directory through transformers' GPT2LMHeadModel.

usage: hf_gpt2_ref.py CKPT_DIR TOKENS(comma-separated) B T OUT
Writes logits [B,T,V] as raw little-endian float64 to OUT. Also checks that
GPT2Tokenizer, reading the saved byte tokenizer files, yields byte ids.
"""
import sys

import torch
from transformers import GPT2LMHeadModel, GPT2Tokenizer


def main():
    d, toks, B, T, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    model = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float32).eval()
    ids = torch.tensor([int(t) for t in toks.split(",")]).reshape(B, T)
    with torch.no_grad():
        logits = model(ids).logits.double().numpy()
    logits.astype("<f8").tofile(out)
    tok = GPT2Tokenizer.from_pretrained(d)
    text = "Hello, w\u00f6rld!\n"
    got = tok.encode(text)
    want = list(text.encode("utf-8"))
    if got != want:
        sys.exit("GPT2Tokenizer ids %r != bytes %r" % (got, want))


if __name__ == "__main__":
    main()
