#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: tests/fuzz/corpus/<target>/.

Deterministic; run it again after changing a seed here (the files are kept
in the repository so that a checkout fuzzes without Python). Seeds listed in
PENDING crash or stall a target on today's code for a reason tracked
elsewhere; they are written to corpus-pending/<target>/ instead, which the
ctest runs do not read (scripts/fuzz --pending runs them), and move back
here once fixed.
"""
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (target, seed name) that crash or stall a target on today's code, each for
# an issue-11 item fixed outside the fuzz targets; see README.md.
PENDING = set()  # empty: every issue-11 seed passes today

USER = "u0123456789abcdef"
WORKER = "w0123456789abcdef"


def deep(n, open_="[", close="]"):
    return open_ * n + close * n


# ---------------------------------------------------------------- specs

SWEEP = {
    "name": "quick",
    "command": "python train.py --lr {lr} --width {width} --seed {seed}",
    "space": {
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "width": {"type": "grid", "values": [1, 4]},
        "act": {"type": "choice", "values": ["relu", "gelu"]},
        "depth": {"type": "int", "low": 1, "high": 8},
        "drop": {"type": "uniform", "low": 0, "high": 0.5},
    },
    "samples": 2,
    "seed": 7,
    "seeds": [1, 2],
    "resources": {"gpus": 0, "cpus": 1},
    "priority": 1,
    "labels": {"pool": "cpu"},
    "max_attempts": 2,
    "timeout": 60,
    "env": {"A": "1"},
    "evals": [{"suite": "gsm8k", "on": "final", "args": {"limit": 5}}],
}
RUN = {"name": "one", "command": "echo hi", "params": {"lr": 0.1}, "resources": {"cpus": 1}}
SUITE = {"name": "gsm8k", "task": "gsm8k", "data": {"test": "t.jsonl"}, "num_fewshot": 2}


def with_(doc, **kw):
    d = json.loads(json.dumps(doc))
    d.update(kw)
    return d


def deep_evals_args(n):
    # A sweep whose evals[0].args nests n levels: '"args": [[[...]]]'.
    head = json.dumps(with_(SWEEP, evals=[]))[:-1]
    return head + ', "evals": [{"suite": "s", "args": ' + deep(n) + "}]}"


def spec_seeds():
    s = {
        "sweep": json.dumps(SWEEP, indent=1),
        "run": json.dumps(RUN),
        "suite": json.dumps(SUITE),
        # issue 11: the inputs that crashed or misread a spec.
        "issue11-labels-100k-deep": '{"name":"x","command":"c","labels":' + deep(100000) + "}",
        "issue11-evals-args-50k-deep": deep_evals_args(50000),
        "issue11-int-high-1e19": json.dumps(
            with_(SWEEP, space={"n": {"type": "int", "low": 0, "high": 1e19}})),
        "issue11-uniform-1e308": json.dumps(
            with_(SWEEP, space={"x": {"type": "uniform", "low": -1e308, "high": 1e308}})),
        "issue11-timeout-1e999": json.dumps(RUN)[:-1] + ', "timeout": 1e999}',
        "issue11-duplicate-keys": '{"name":"a","name":"b","command":"echo","command":"x"}',
        "issue11-seeds-5000-dups": json.dumps(with_(SWEEP, seeds=[1] * 5000)),
        "priority-1e20": json.dumps(RUN)[:-1] + ', "priority": 1e20}',
        "gpus-neg": json.dumps(with_(RUN, resources={"gpus": -1})),
    }
    return s


# ---------------------------------------------------------------- metric lines

def batch(points, **kw):
    d = {"worker_id": "w1", "attempt": 1, "batch_seq": 0, "points": points}
    d.update(kw)
    return d


def metric_seeds():
    return {
        "line": '{"step": 3, "metrics": {"loss": 0.5, "acc": 1}}',
        "line-time": '{"step": 0, "time": 1700000000.5, "metrics": {"loss": 1e-3}}',
        "checkpoint": '{"step": 10, "checkpoint": "/tmp/ck/10"}',
        "batch": json.dumps(batch([{"key": "loss", "step": 1, "value": 0.25, "time": 1.5},
                                   {"key": "acc", "step": 2, "value": None}])),
        "batch-escaped-key": json.dumps(batch([{"key": "l\u00e9\\n", "step": 1, "value": 1}])),
        # issue 11
        "issue11-nested-200k": '{"step": 1, "metrics": {"loss": ' + deep(100000) + "}}",
        "issue11-nul-key": '{"metrics":{"loss\\u0000x":1}}',
        "issue11-nul-key-step": '{"step":1,"metrics":{"loss\\u0000x":1}}',
        "issue11-step-1e20": '{"step": 1e20, "metrics": {"loss": 1}}',
        "issue11-value-1e999": '{"step": 1, "metrics": {"loss": 1e999}}',
        "issue11-duplicate-keys": '{"step": 1, "step": 2, "metrics": {"a": 1, "a": 2}}',
        "batch-step-1e20": '{"worker_id":"w1","attempt":1,"points":[{"key":"l","step":1e20,"value":1}]}',
        "batch-step-19digits": '{"worker_id":"w1","attempt":1,"points":[{"key":"l","step":99999999999999999999,"value":1}]}',
        # Not JSON, but the batch fast path reads it (README.md, "Findings").
        "batch-step-leading-zeros": '{"worker_id":"w1","attempt":1,"points":[{"key":"l","step":00000000001017053277,"value":1}]}',
        "batch-nul-key": '{"worker_id":"w1","attempt":1,"points":[{"key":"loss\\u0000x","step":1,"value":1}]}',
    }


# ---------------------------------------------------------------- HTTP handler

def req(role, method, target, body=""):
    if not isinstance(body, str):
        body = json.dumps(body)
    return f"{role} {method} {target}\n{body}"


def seq(*reqs):
    return "\n=====\n".join(reqs)


REGISTER = req("W", "POST", "/v1/worker/register",
               {"worker_id": "w1", "instance": "i1", "cpus": 4, "max_runs": 4,
                "gpus": [{"index": 0, "uuid": "GPU-0", "name": "H", "mem_total_mb": 80000,
                          "mem_free_mb": 80000}], "labels": {"pool": "cpu"}})


def lifecycle():
    return seq(
        req("U", "POST", "/v1/runs", RUN),
        REGISTER,
        req("W", "POST", "/v1/worker/lease", {"worker_id": "w1", "max_runs": 1}),
        req("W", "POST", "/v1/worker/runs/{run}/started", {"worker_id": "w1", "attempt": 1, "pid": 42}),
        req("W", "POST", "/v1/worker/runs/{run}/metrics",
            batch([{"key": "loss", "step": 1, "value": 0.5}])),
        req("W", "POST", "/v1/worker/runs/{run}/logs?offset=0&stream=stdout", "hello\n"),
        req("W", "POST", "/v1/worker/runs/{run}/finished",
            {"worker_id": "w1", "attempt": 1, "exit_code": 0}),
        req("U", "GET", "/v1/runs/{run}/metrics?key=loss"),
    )


def handler_seeds():
    return {
        "health": req("-", "GET", "/v1/health"),
        "sweep": req("U", "POST", "/v1/sweeps", SWEEP),
        "lists": seq(req("U", "GET", "/v1/sweeps"), req("U", "GET", "/v1/runs?state=queued&limit=5"),
                     req("U", "GET", "/v1/workers"), req("U", "GET", "/v1/runs/1"),
                     req("U", "POST", "/v1/runs/1/cancel"), req("U", "POST", "/v1/runs/1/retry")),
        "query": req("U", "POST", "/v1/query", {"sql": "SELECT id, state FROM runs LIMIT 3"}),
        "lifecycle": lifecycle(),
        "heartbeat": seq(REGISTER, req("W", "POST", "/v1/worker/heartbeat",
                                       {"worker_id": "w1", "instance": "i1",
                                        "active": [{"run_id": 1, "attempt": 1}],
                                        "gpus": [{"index": 0, "mem_free_mb": 10}]})),
        "events-artifacts": seq(
            req("U", "POST", "/v1/runs", RUN), REGISTER,
            req("W", "POST", "/v1/worker/lease", {"worker_id": "w1"}),
            req("W", "POST", "/v1/worker/runs/{run}/events", {"worker_id": "w1", "attempt": 1,
                                                              "kind": "note", "detail": "x"}),
            req("W", "POST", "/v1/worker/runs/{run}/artifacts",
                {"worker_id": "w1", "attempt": 1, "kind": "checkpoint", "path": "/tmp/x",
                 "step": 5, "metadata": {"a": 1}})),
        "wrong-tokens": seq(req("W", "GET", "/v1/runs"), req("U", "POST", "/v1/worker/lease", {}),
                            req("X", "GET", "/v1/runs"), req("-", "GET", "/v1/sweeps")),
        # issue 11
        "issue11-query-100k-deep": req("U", "POST", "/v1/query", deep(100000)),
        "issue11-heartbeat-100k-deep": req("W", "POST", "/v1/worker/heartbeat", deep(100000)),
        "issue11-sweeps-50k-deep": req("U", "POST", "/v1/sweeps", deep(50000)),
        "issue11-evals-args-50k-deep": req("U", "POST", "/v1/sweeps", deep_evals_args(50000)),
        "issue11-nul-metric-key": seq(
            req("U", "POST", "/v1/runs", RUN), REGISTER,
            req("W", "POST", "/v1/worker/lease", {"worker_id": "w1"}),
            req("W", "POST", "/v1/worker/runs/{run}/metrics",
                '{"worker_id":"w1","attempt":1,"points":[{"key":"loss\\u0000x","step":1,"value":1}]}'),
            req("U", "POST", "/v1/query", {"sql": "SELECT * FROM runs_wide"})),
        "issue11-int-high-1e19": req("U", "POST", "/v1/sweeps",
                                     with_(SWEEP, space={"n": {"type": "int", "low": 0, "high": 1e19}})),
        "issue11-uniform-1e308": req("U", "POST", "/v1/sweeps",
                                     with_(SWEEP, space={"x": {"type": "uniform", "low": -1e308,
                                                               "high": 1e308}})),
        "issue11-timeout-1e999": req("U", "POST", "/v1/runs", json.dumps(RUN)[:-1] + ', "timeout": 1e999}'),
        "issue11-metric-step-1e20": seq(
            req("U", "POST", "/v1/runs", RUN), REGISTER,
            req("W", "POST", "/v1/worker/lease", {"worker_id": "w1"}),
            req("W", "POST", "/v1/worker/runs/{run}/metrics",
                '{"worker_id":"w1","attempt":1,"points":[{"key":"l","step":1e20,"value":1}]}')),
        "issue11-duplicate-keys": req("U", "POST", "/v1/runs",
                                      '{"name":"a","name":"b","command":"echo","command":"x"}'),
        "issue11-seeds-5000-dups": req("U", "POST", "/v1/sweeps", with_(SWEEP, seeds=[1] * 5000)),
        "issue11-recursive-query": req(
            "U", "POST", "/v1/query",
            {"sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
                    "SELECT count(*) FROM c"}),
        "issue11-fts3-tokenizer": req("U", "POST", "/v1/query", {"sql": "SELECT fts3_tokenizer('simple')"}),
    }


# ---------------------------------------------------------------- raw HTTP

def http(method, target, body=b"", headers=(), auth=USER, length=True):
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    if auth:
        lines.append(f"Authorization: Bearer {auth}")
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(method, target, chunks, auth=USER):
    out = http(method, target, auth=auth, length=False, headers=["Transfer-Encoding: chunked"])
    for c in chunks:
        out += f"{len(c):x}\r\n".encode() + c.encode() + b"\r\n"
    return out + b"0\r\n\r\n"


def raw_seeds():
    run = json.dumps(RUN)
    return {
        "health": http("GET", "/v1/health", auth=None, length=False),
        "post-run": http("POST", "/v1/runs", run),
        "pipelined": http("GET", "/v1/runs") + http("POST", "/v1/runs", run)
                     + http("GET", "/v1/sweeps", headers=["Connection: close"]),
        "chunked": chunked("POST", "/v1/runs", [run[:10], run[10:]]),
        "expect-continue": http("POST", "/v1/runs", run, headers=["Expect: 100-continue"]),
        "worker-register": http("POST", "/v1/worker/register",
                                json.dumps({"worker_id": "w1", "cpus": 2}), auth=WORKER),
        "http10": b"GET /v1/health HTTP/1.0\r\n\r\n",
        # issue 11: malformed raw HTTP.
        "issue11-garbage": bytes(range(256)) * 4,
        "issue11-garbage-text": b"HELLO WORLD\r\n\r\n",
        "issue11-long-header": http("GET", "/v1/runs", headers=["X-Pad: " + "a" * 70000]),
        "issue11-many-headers": http("GET", "/v1/runs", headers=[f"X-{i}: {i}" for i in range(5000)]),
        "issue11-long-target": http("GET", "/v1/runs?" + "a" * 70000),
        "issue11-bad-content-length": http("POST", "/v1/runs", run, length=False,
                                           headers=["Content-Length: abc"]),
        "issue11-negative-content-length": http("POST", "/v1/runs", run, length=False,
                                                headers=["Content-Length: -5"]),
        "issue11-huge-content-length": http("POST", "/v1/runs", run, length=False,
                                            headers=["Content-Length: 99999999999999999999999"]),
        "issue11-over-max-body": http("POST", "/v1/runs", run, length=False,
                                      headers=["Content-Length: 9000000"]),
        "issue11-two-content-lengths": http("POST", "/v1/runs", run,
                                            headers=["Content-Length: 3"]),
        "issue11-short-body": http("POST", "/v1/runs", length=False,
                                   headers=["Content-Length: 100"]) + b"{}",
        "issue11-bad-chunk-size": http("POST", "/v1/runs", length=False,
                                       headers=["Transfer-Encoding: chunked"]) + b"zz\r\n{}\r\n0\r\n\r\n",
        "issue11-huge-chunk": http("POST", "/v1/runs", length=False,
                                   headers=["Transfer-Encoding: chunked"]) + b"ffffffffffffffff\r\n{}\r\n",
        "issue11-chunk-no-crlf": http("POST", "/v1/runs", length=False,
                                      headers=["Transfer-Encoding: chunked"]) + b"2\r\n{}0\r\n\r\n",
        "issue11-chunk-and-length": http("POST", "/v1/runs", length=False,
                                         headers=["Transfer-Encoding: chunked", "Content-Length: 2"])
                                    + b"2\r\n{}\r\n0\r\n\r\n",
        "issue11-deep-body": http("POST", "/v1/query", deep(100000)),
        # Content-Length under the limit check's radar if the body were read
        # eagerly with the header: the string body would reserve 4e17 bytes.
        "content-length-4e17": http("POST", "/v1/runs", run, length=False,
                                    headers=["Content-Length: 00000400752841041379326"]),
        "bad-version": b"GET /v1/health HTTP/9.9\r\n\r\n",
        "lf-only": b"GET /v1/health HTTP/1.1\nHost: x\n\n",
    }


# ---------------------------------------------------------------- safetensors

def safetensors(tensors, data, meta=None, pad=True):
    """tensors: list of (name, dtype, shape, nbytes); data: bytes."""
    h = {}
    if meta is not None:
        h["__metadata__"] = meta
    off = 0
    for name, dtype, shape, nbytes in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    text = json.dumps(h, separators=(",", ":"))
    return header_file(text, data, pad)


def header_file(text, data, pad=True):
    b = text.encode()
    if pad:
        b += b" " * ((8 - len(b) % 8) % 8)
    return struct.pack("<Q", len(b)) + b + data


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def safetensors_seeds():
    return {
        "f32": safetensors([("a", "F32", [2, 2], 16)], f32([1, 2, 3, 4]), {"format": "pt"}),
        "mixed": safetensors([("h", "F16", [2], 4), ("b", "BF16", [2], 4), ("d", "F64", [1], 8),
                              ("i", "I32", [1], 4), ("e", "F32", [0, 3], 0)],
                             struct.pack("<4H", 0x3C00, 0x7C00, 0x3F80, 0xC060)
                             + struct.pack("<d", 2.5) + b"\0" * 4),
        # copy_f32 of an empty tensor: memcpy from/to a null pointer (issue 11 #14).
        "issue11-empty-tensor": safetensors([("e", "F32", [0], 0)], b""),
        "issue11-deep-header": header_file(deep(100000), b""),
        "dup-names": header_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                 '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
        "huge-shape": header_file('{"a":{"dtype":"F32","shape":[4294967296,4294967296],'
                                  '"data_offsets":[0,0]}}', b""),
        "offsets-1e19": header_file('{"a":{"dtype":"F32","shape":[1],'
                                    '"data_offsets":[18446744073709551612,18446744073709551616]}}', b""),
    }


# ---------------------------------------------------------------- checkpoints

# The smallest model the byte tokenizer fits: vocab 257, 4 positions, width 4,
# one layer, one head. Tensor names and shapes as GPT2LMHeadModel's.
V, P, C = 257, 4, 4


def gpt2_tensors():
    t = [("transformer.wte.weight", [V, C]), ("transformer.wpe.weight", [P, C])]
    h = "transformer.h.0."
    t += [(h + "ln_1.weight", [C]), (h + "ln_1.bias", [C]),
          (h + "attn.c_attn.weight", [C, 3 * C]), (h + "attn.c_attn.bias", [3 * C]),
          (h + "attn.c_proj.weight", [C, C]), (h + "attn.c_proj.bias", [C]),
          (h + "ln_2.weight", [C]), (h + "ln_2.bias", [C]),
          (h + "mlp.c_fc.weight", [C, 4 * C]), (h + "mlp.c_fc.bias", [4 * C]),
          (h + "mlp.c_proj.weight", [4 * C, C]), (h + "mlp.c_proj.bias", [C]),
          ("transformer.ln_f.weight", [C]), ("transformer.ln_f.bias", [C])]
    return t


def model_file(value=lambda i: ((i * 37) % 17 - 8) / 64.0):
    tensors, data, i = [], b"", 0
    for name, shape in gpt2_tensors():
        n = 1
        for d in shape:
            n *= d
        vals = [value(i + k) for k in range(n)]
        i += n
        tensors.append((name, "F32", shape, 4 * n))
        data += f32(vals)
    return safetensors(tensors, data, {"format": "pt"})


CONFIG = {"model_type": "gpt2", "vocab_size": V, "n_positions": P, "n_embd": C, "n_layer": 1,
          "n_head": 1, "n_inner": None, "activation_function": "gelu_new",
          "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
          "assay": {"format_version": 1, "step": 3, "parent": "", "extra": {}}}
BYTE_TOK = json.dumps({"assay_tokenizer": "byte", "add_bos_token": True})
SEP = b"\n#assay-fuzz-file\n"


def checkpoint(config=None, model=None, tok_config=BYTE_TOK, vocab=b"", merges=b"", tok_json=b""):
    cfg = json.dumps(CONFIG if config is None else config)
    parts = [cfg, model_file() if model is None else model, tok_config, vocab, merges, tok_json]
    return SEP.join(p if isinstance(p, bytes) else p.encode() for p in parts)


def checkpoint_seeds():
    nan = float("nan")
    return {
        "byte-tokenizer": checkpoint(),
        "hf-tokenizer-json": checkpoint(tok_config=b"", tok_json=json.dumps(tokenizer_json())),
        # issue 11 #13: NaN weights load "successfully"; 2^40 reads as 0.
        "issue11-nan-weights": checkpoint(model=model_file(lambda i: nan)),
        "issue11-vocab-2pow40": checkpoint(config=with_(CONFIG, vocab_size=2 ** 40)),
        "issue11-config-deep": checkpoint(config=None).replace(
            b'"vocab_size": 257', b'"vocab_size": ' + deep(100000).encode(), 1),
        "config-1e999": checkpoint().replace(b'"layer_norm_epsilon": 1e-05',
                                             b'"layer_norm_epsilon": 1e999', 1),
        "config-huge-model": checkpoint(config=with_(CONFIG, vocab_size=16777216, n_positions=65536,
                                                     n_embd=65536, n_layer=256, n_head=1)),
    }


# ---------------------------------------------------------------- tokenizers

def byte_char(b):
    printable = 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE
    if printable:
        return chr(b)
    k = sum(1 for x in range(b) if not (0x21 <= x <= 0x7E or 0xA1 <= x <= 0xAC or x >= 0xAE))
    return chr(256 + k)


def tokenizer_json():
    vocab = {byte_char(b): b for b in range(256)}
    vocab.update({"th": 256, "the": 257, "<|endoftext|>": 258})
    return {"version": "1.0",
            "added_tokens": [{"id": 258, "content": "<|endoftext|>", "special": True}],
            "pre_tokenizer": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab, "merges": ["t h", "th e"]}}


def tokenizer_seeds():
    text = "The cat's hat: 12 dogs\u00e9\U0001F600 <|endoftext|>  \n\t x\xff".encode("utf-8", "surrogatepass")
    vocab = json.dumps({byte_char(b): b for b in range(256)} | {"th": 256})
    return {
        "byte": b"\0" + text + b"\xff\xfe\x80",
        "bpe": b"\1" + text,
        "bpe-invalid-utf8": b"\1" + b"\xc3\x28 \xe2\x82 \xf0\x9f\x98 the",
        "tokenizer-json": b"\2" + json.dumps(tokenizer_json()).encode(),
        "tokenizer-json-deep": b"\2" + deep(100000).encode(),
        "vocab-merges": b"\3" + vocab.encode() + b"\n#merges\n#version: 0.2\nt h\n",
        "vocab-merges-bad": b"\3" + b'{"a": 1e999, "b": -1}' + b"\n#merges\nq\n",
    }


# ---------------------------------------------------------------- main

def write(target, name, data):
    kind = "corpus-pending" if (target, name) in PENDING else "corpus"
    d = os.path.join(HERE, kind, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    for kind in ("corpus", "corpus-pending"):
        shutil.rmtree(os.path.join(HERE, kind), ignore_errors=True)
    seeds = {
        "fuzz_specs": spec_seeds(),
        "fuzz_metric_line": metric_seeds(),
        "fuzz_http_handler": handler_seeds(),
        "fuzz_http_raw": raw_seeds(),
        "fuzz_safetensors": safetensors_seeds(),
        "fuzz_checkpoint": checkpoint_seeds(),
        "fuzz_tokenizer": tokenizer_seeds(),
    }
    n = 0
    for target, items in seeds.items():
        for name, data in items.items():
            write(target, name, data)
            n += 1
    unknown = PENDING - {(t, s) for t, items in seeds.items() for s in items}
    if unknown:
        sys.exit(f"make_corpus.py: PENDING names no seed: {sorted(unknown)}")
    print(f"make_corpus.py: wrote {n} seeds")


if __name__ == "__main__":
    main()
