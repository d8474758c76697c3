"""A tiny OpenAI-compatible /v1/completions server for the HTTP backend tests.

Deterministic canned model, chosen by the request's "model" field:
  echo-model   tokens = re.findall(r"\\s*\\S+", prompt); token i > 0 gets
               log-prob -(0.1 * len(token) + 0.01 * i); token 0 gets None.
               Tokens starting with "x" are not the top choice. Scoring
               requests must carry echo=true, logprobs=1, max_tokens=1,
               temperature=0 (HTTP 400 otherwise).
  tokens-model same, but logprobs carry "tokens" instead of "text_offset".
  noecho-model ignores echo and returns only the generated token.
  flaky-model  like echo-model, but every prompt first fails twice with 503.
  bos-model    a server whose tokenizer adds BOS itself (as vLLM on Llama, or
               `assay serve` on a checkpoint declaring add_bos_token): the
               text's first token is scored too (it follows the hidden BOS),
               and a prompt that brings "<|endoftext|>" along is refused
               with 400 (BOS twice).
  sampling-model  generation answers with the JSON of the sampling fields
               it received (temperature, top_p, top_k, seed; absent ones left
               out).
"<|endoftext|>" is one token. POST /tokenize (vLLM's route) gives one id per
token, with BOS first for bos-model; other models than echo-model,
tokens-model and bos-model answer 404 there, as a server without the route.
Generation requests (no echo) of other models must be greedy (temperature 0)
and return a canned answer that runs past the stop strings, so the client has
to cut it. GET /stats reports request counts (tokenize probes apart) and the
largest number of requests in flight at once.
Prints "PORT <port> PID <pid>" on the first line, then serves until killed
(or for at most 120 s).
"""
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"requests": 0, "inflight": 0, "max_inflight": 0, "tokenize": 0, "failures": {}}
BOS = "<|endoftext|>"


def tokenize(text):
    return re.findall(r"<\|endoftext\|>|\s*(?:(?!<\|endoftext\|>)\S)+", text)


def logprob(tok, i):
    return -(0.1 * len(tok) + 0.01 * i)


def echo_choice(prompt, with_offsets, server_bos=False):
    toks = tokenize(prompt) + [" gen"]
    # Behind a hidden BOS the first token is predicted too, one position on.
    shift = 1 if server_bos else 0
    offsets, pos = [], 0
    for t in toks[:-1]:
        offsets.append(pos)
        pos += len(t)
    offsets.append(len(prompt))
    lps, tops = [], []
    for i, t in enumerate(toks):
        if i == 0 and not server_bos:
            lps.append(None)
            tops.append(None)
            continue
        lp = logprob(t, i + shift)
        lps.append(lp)
        if t.strip().startswith("x"):
            tops.append({"other": lp + 0.5, t: lp})
        else:
            tops.append({t: lp})
    lp = {"token_logprobs": lps, "top_logprobs": tops}
    if with_offsets:
        lp["text_offset"] = offsets
    else:
        lp["tokens"] = toks
    return {"index": 0, "text": prompt + " gen", "logprobs": lp, "finish_reason": "length"}


def generate_text(prompt):
    if "eggs" in prompt:
        return " She sells 9 eggs for $2 each: $18.\n#### 18\n\nQuestion: Another one?"
    return " I think the answer is 7.</s>trailing"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def done_inflight(self):
        # A request stops counting as in flight before its reply is written:
        # once the client has the reply it may send its next request at once.
        if getattr(self, "counted", False):
            self.counted = False
            with LOCK:
                STATS["inflight"] -= 1

    def reply(self, code, obj):
        self.done_inflight()
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                self.reply(200, {k: v for k, v in STATS.items() if k != "failures"})
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        if self.path == "/tokenize":
            return self.handle_tokenize()
        with LOCK:
            STATS["requests"] += 1
            STATS["inflight"] += 1
            STATS["max_inflight"] = max(STATS["max_inflight"], STATS["inflight"])
        self.counted = True
        try:
            time.sleep(0.02)
            self.handle_completion()
        finally:
            self.done_inflight()

    def handle_tokenize(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with LOCK:
            STATS["tokenize"] += 1
        model = req.get("model")
        if model not in ("echo-model", "tokens-model", "bos-model"):
            return self.reply(404, {"detail": "Not Found"})
        ids = list(range(1, len(tokenize(req.get("prompt", ""))) + 1))
        if model == "bos-model" and req.get("add_special_tokens", True):
            ids = [0] + ids
        return self.reply(200, {"count": len(ids), "max_model_len": 1024, "tokens": ids})

    def handle_completion(self):
        if self.path != "/v1/completions":
            return self.reply(404, {"error": {"message": "unknown path " + self.path}})
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model, prompt = req.get("model"), req.get("prompt")
        if model == "flaky-model":
            with LOCK:
                n = STATS["failures"].get(prompt, 0)
                STATS["failures"][prompt] = n + 1
            if n < 2:
                return self.reply(503, {"error": {"message": "warming up"}})
        if req.get("echo"):
            want = {"logprobs": 1, "max_tokens": 1, "temperature": 0}
            bad = {k: req.get(k) for k in want if req.get(k) != want[k]}
            if bad:
                return self.reply(400, {"error": {"message": "unexpected scoring fields %r" % bad}})
            if model == "bos-model" and prompt.startswith(BOS):
                return self.reply(400, {"error": {"message": "BOS twice: the server adds it"}})
            if model == "noecho-model":
                choice = {"index": 0, "text": " gen",
                          "logprobs": {"token_logprobs": [-0.3], "top_logprobs": [{" gen": -0.3}],
                                       "text_offset": [len(prompt)]}}
            else:
                choice = echo_choice(prompt, with_offsets=(model != "tokens-model"),
                                     server_bos=(model == "bos-model"))
            return self.reply(200, {"object": "text_completion", "model": model, "choices": [choice]})
        if model == "sampling-model":
            fields = {k: req[k] for k in ("temperature", "top_p", "top_k", "seed") if k in req}
            return self.reply(200, {"object": "text_completion", "model": model,
                                    "choices": [{"index": 0, "text": json.dumps(fields),
                                                 "finish_reason": "stop"}]})
        if req.get("temperature") != 0:
            return self.reply(400, {"error": {"message": "generation must be greedy"}})
        text = generate_text(prompt)
        return self.reply(200, {"object": "text_completion", "model": model,
                                "choices": [{"index": 0, "text": text, "finish_reason": "length"}]})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d PID %d" % (server.server_address[1], os.getpid()), flush=True)
    threading.Timer(120, lambda: os._exit(0)).start()
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
