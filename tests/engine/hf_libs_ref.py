"""Reference peers from Hugging Face's `tokenizers` and `safetensors` packages.

usage:
  hf_libs_ref.py pretok IN.json OUT.json      GPT-2 ByteLevel pre-token strings
  hf_libs_ref.py train_bpe CORPUS.txt DIR N   train a byte-level BPE (vocab N)
  hf_libs_ref.py encode DIR IN.json OUT.json  ids from DIR/vocab.json+merges.txt
  hf_libs_ref.py st_read FILE OUT.json        {name: [dtype, shape, sum]}
  hf_libs_ref.py st_write FILE                write a small F32+F16 file
IN.json holds a list of strings; OUT.json a list with one entry per string.
"""
import json
import sys

import numpy as np


def byte_level():
    from tokenizers import pre_tokenizers
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def pretok(inp, out):
    pt = byte_level()
    res = []
    for s in json.load(open(inp, encoding="utf-8")):
        res.append([s[a:b] for _, (a, b) in pt.pre_tokenize_str(s)])
    json.dump(res, open(out, "w", encoding="utf-8"), ensure_ascii=False)


def train_bpe(corpus, d, n):
    from tokenizers import Tokenizer, decoders, models, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = byte_level()
    tok.decoder = decoders.ByteLevel()
    from tokenizers.pre_tokenizers import ByteLevel
    tr = trainers.BpeTrainer(vocab_size=int(n), special_tokens=["<|endoftext|>"],
                             initial_alphabet=ByteLevel.alphabet(), show_progress=False)
    tok.train([corpus], tr)
    tok.model.save(d)


def encode(d, inp, out):
    from tokenizers import Tokenizer, models
    tok = Tokenizer(models.BPE.from_file(d + "/vocab.json", d + "/merges.txt"))
    tok.pre_tokenizer = byte_level()
    res = [tok.encode(s).ids for s in json.load(open(inp, encoding="utf-8"))]
    json.dump(res, open(out, "w"))


def st_read(path, out):
    from safetensors.numpy import load_file
    res = {k: [str(v.dtype), list(v.shape), float(v.astype(np.float64).sum())]
           for k, v in load_file(path).items()}
    json.dump(res, open(out, "w"))


def st_write(path):
    from safetensors.numpy import save_file
    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5,
               "h": np.array([1.0, -2.0, 0.5, 65504.0], dtype=np.float16)},
              path, metadata={"format": "pt"})


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"pretok": pretok, "train_bpe": train_bpe, "encode": encode,
     "st_read": st_read, "st_write": st_write}[cmd](*args)
