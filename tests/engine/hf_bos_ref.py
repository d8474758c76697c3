"""transformers reading an Assay checkpoint directory as a user would.

usage: hf_bos_ref.py CKPT_DIR IN.json OUT.json
IN.json holds a list of texts. OUT.json gets, per text, the input_ids of
AutoTokenizer.from_pretrained(CKPT_DIR) (the fast tokenizer) and of the slow
one (use_fast=False), the fast tokenizer's decode of its ids without special
tokens, and sum_{i>=1} log p(ids[i] | ids[<i]) under GPT2LMHeadModel (fp32
forward, log-softmax in float64), plus the classes and library versions.
"""
import json
import sys

import torch
import transformers
from transformers import AutoTokenizer, GPT2LMHeadModel


def main():
    d, inp, out = sys.argv[1], sys.argv[2], sys.argv[3]
    texts = json.load(open(inp, encoding="utf-8"))
    fast = AutoTokenizer.from_pretrained(d)
    slow = AutoTokenizer.from_pretrained(d, use_fast=False)
    model = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float32).eval()
    res = {"fast_class": type(fast).__name__, "slow_class": type(slow).__name__,
           "transformers": transformers.__version__, "torch": torch.__version__,
           "fast": [], "slow": [], "decoded": [], "logprob": []}
    for t in texts:
        ids = fast(t).input_ids
        res["fast"].append(ids)
        res["slow"].append(slow(t).input_ids)
        res["decoded"].append(fast.decode(ids, skip_special_tokens=True))
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        lp = torch.log_softmax(logits, dim=-1)
        res["logprob"].append(float(sum(lp[i - 1, ids[i]] for i in range(1, len(ids)))))
    json.dump(res, open(out, "w", encoding="utf-8"), ensure_ascii=False)


if __name__ == "__main__":
    main()
