"""Report metrics and checkpoints to Assay from Python (standard library only).

Under Assay (`assay local`, `assay record`, a worker) the environment names
ASSAY_METRICS_FD, a file descriptor taking one JSON line per report (the
metric protocol, schemas/metric-line.schema.json). Elsewhere every call is a
no-op, so a script runs unchanged outside Assay.

    import assay_log
    for step in range(1000):
        loss = train_step()
        assay_log.log(step, loss=loss, lr=sched.get_last_lr()[0])
    assay_log.checkpoint("out/ckpt-1000", step=1000)

Adapters, which import their framework only when used:
    trainer = transformers.Trainer(..., callbacks=[assay_log.hf_callback()])
    trainer = lightning.Trainer(..., logger=assay_log.lightning_logger())
"""
import json
import math
import numbers
import os
import threading
import time

__all__ = ["enabled", "log", "checkpoint", "hf_callback", "lightning_logger"]

_lock = threading.Lock()
_stream = None
_opened = False


def _out():
    """The metrics stream, or None when not under Assay."""
    global _stream, _opened
    if not _opened:
        _opened = True
        fd = os.environ.get("ASSAY_METRICS_FD", "")
        if fd.isdigit():
            try:
                # closefd=False: the fd belongs to the process, which may
                # also write to it from elsewhere.
                _stream = os.fdopen(int(fd), "w", buffering=1, closefd=False)
            except OSError:
                _stream = None
    return _stream


def enabled():
    """True when running under Assay (reports go somewhere)."""
    return _out() is not None


def _write(doc):
    out = _out()
    if out is None:
        return
    line = json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n"
    with _lock:
        out.write(line)


def _number(v):
    """A finite float from a Python/NumPy/PyTorch scalar, else None."""
    if hasattr(v, "item") and callable(v.item):
        try:
            v = v.item()
        except (ValueError, RuntimeError):  # a tensor of more than one element
            return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    v = float(v)
    # The protocol carries JSON numbers only: NaN and inf have no spelling.
    return v if math.isfinite(v) else None


def log(step, **metrics):
    """Reports metric values at an integer step >= 0.

    Values that are not finite numbers (NaN, inf, strings) are left out; a
    call left with no value writes nothing.
    """
    step = int(step)
    if step < 0:
        raise ValueError("assay_log.log: step must be >= 0, got %d" % step)
    vals = {}
    for k, v in metrics.items():
        n = _number(v)
        if n is not None:
            vals[str(k)] = n
    if vals and enabled():
        _write({"step": step, "metrics": vals, "time": time.time()})


def checkpoint(path, step):
    """Reports a checkpoint directory (model.safetensors + config.json) at a step."""
    if enabled():
        _write({"checkpoint": os.path.abspath(str(path)), "step": int(step), "time": time.time()})


def hf_callback():
    """A transformers.TrainerCallback reporting logs and saved checkpoints."""
    from transformers import TrainerCallback  # lazily: only when asked for

    class AssayCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                log(state.global_step, **logs)

        def on_save(self, args, state, control, **kwargs):
            path = os.path.join(args.output_dir, "checkpoint-%d" % state.global_step)
            if os.path.isdir(path):
                checkpoint(path, state.global_step)

    return AssayCallback()


def lightning_logger():
    """A PyTorch Lightning logger reporting logged metrics."""
    try:
        from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment  # noqa: F401
    except ImportError:
        from pytorch_lightning.loggers.logger import Logger  # older package name

    class AssayLogger(Logger):
        @property
        def name(self):
            return "assay"

        @property
        def version(self):
            return os.environ.get("ASSAY_RUN_ID", "local")

        def log_hyperparams(self, params, *args, **kwargs):
            pass  # Assay records a run's params from its sweep

        def log_metrics(self, metrics, step=None):
            log(0 if step is None else step, **metrics)

    return AssayLogger()
