#!/usr/bin/env python3
"""integrations/python/assay_log.py under a real `assay record`.

  assay_log_test.py --assay PATH --src DIR [--hf-python PATH]

Checks: log() and checkpoint() land in the database (points, NaN left out,
checkpoint artifact); outside Assay every call is a no-op; the Hugging Face
callback reports on_log through a real transformers TrainerCallback when a
Python with transformers is given (else that part says it skipped).
"""
import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile

SCRIPT = r'''
import math, os, sys
sys.path.insert(0, sys.argv[1])
import assay_log
assert assay_log.enabled()
for s in range(10):
    assay_log.log(s, loss=1.0 / (s + 1), acc=float("nan") if s == 5 else s / 10.0, note="text")
ck = os.path.join(os.environ["ASSAY_OUTPUT_DIR"], "ckpt-9")
os.makedirs(ck, exist_ok=True)
open(os.path.join(ck, "model.safetensors"), "wb").write(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
open(os.path.join(ck, "config.json"), "w").write("{}")
assay_log.checkpoint(ck, step=9)
'''

HF = r'''
import sys
sys.path.insert(0, sys.argv[1])
import assay_log
from transformers import TrainerState, TrainerControl, TrainingArguments
cb = assay_log.hf_callback()
state = TrainerState()
for step in (1, 2, 3):
    state.global_step = step
    cb.on_log(None, state, TrainerControl(), logs={"loss": 0.5 / step, "learning_rate": 1e-3, "epoch": 0.1 * step})
'''


def record(assay, db, name, python, code, src):
    path = os.path.join(os.path.dirname(db), name + ".py")
    open(path, "w").write(code)
    r = subprocess.run([assay, "record", "--db", db, "--name", name, "--", python, path, src],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("assay record %s failed: %s%s" % (name, r.stdout, r.stderr))


def points(db, name, key):
    con = sqlite3.connect(db)
    rows = con.execute("SELECT m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
                       "JOIN metric_keys k ON k.id = m.key_id WHERE r.name = ? AND k.name = ? "
                       "ORDER BY m.step", (name, key)).fetchall()
    con.close()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--assay", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--hf-python", default="")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="assay-log-test-")
    db = os.path.join(tmp, "t.db")
    record(a.assay, db, "plain", sys.executable, SCRIPT, a.src)
    loss = points(db, "plain", "loss")
    assert [s for s, _ in loss] == list(range(10)) and abs(loss[3][1] - 0.25) < 1e-12, loss
    acc = points(db, "plain", "acc")
    assert [s for s, _ in acc] == [0, 1, 2, 3, 4, 6, 7, 8, 9], acc  # NaN left out
    assert points(db, "plain", "note") == []
    con = sqlite3.connect(db)
    arts = con.execute("SELECT kind, step FROM artifacts").fetchall()
    con.close()
    assert arts == [("checkpoint", 9)], arts
    print("ok: log() and checkpoint() under assay record")

    env = {k: v for k, v in os.environ.items() if k != "ASSAY_METRICS_FD"}
    r = subprocess.run([sys.executable, "-c",
                        "import sys; sys.path.insert(0, sys.argv[1]); import assay_log; "
                        "assert not assay_log.enabled(); assay_log.log(1, loss=1.0); "
                        "assay_log.checkpoint('x', 1); print('noop')", a.src],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "noop", r.stderr
    print("ok: a no-op outside Assay")

    hf = a.hf_python or os.environ.get("ASSAY_HF_PYTHON", "")
    if hf and os.path.exists(hf) and subprocess.run([hf, "-c", "import transformers"],
                                                   capture_output=True).returncode == 0:
        record(a.assay, db, "hf", hf, HF, a.src)
        got = points(db, "hf", "loss")
        assert [s for s, _ in got] == [1, 2, 3], got
        assert len(points(db, "hf", "learning_rate")) == 3
        print("ok: Hugging Face TrainerCallback reports on_log")
    else:
        print("skipped part: Hugging Face callback (no Python with transformers at '%s'; "
              "scripts/py-peers builds one)" % hf)


if __name__ == "__main__":
    main()
