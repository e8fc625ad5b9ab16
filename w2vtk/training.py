"""Reusable pieces of a training loop: LR schedules, checkpoint rotation, RNG state capture, metrics
JSON lines, non-finite-loss guarding, mixed precision, derived seeds.

Nothing here knows about wav2vec: the pre-training loop (:mod:`w2vtk.pretraining`) and the
acoustic-model trainer build on the same pieces, so that "resume exactly", "last / best / every N
with keep-last-k" and "skip a non-finite update, stop after N in a row" mean the same everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from w2vtk.checkpoint import load_checkpoint, load_state, save_checkpoint
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text

# --------------------------------------------------------------------------------------------------
# Learning-rate schedules


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate as a pure function of the number of applied updates (so resuming is exact).

    ``kind``:
      - ``cosine``: linear warm-up from ``warmup_init_lr`` to ``peak_lr`` over ``warmup_updates``,
        then half a cosine from ``peak_lr`` down to ``min_lr`` at ``max_update`` (fairseq
        ``--lr-scheduler cosine`` with ``--warmup-updates``, ``--warmup-init-lr``, ``--min-lr``;
        its period is ``max_update - warmup_updates`` when ``--lr-period-updates`` is unset).
      - ``linear``: same warm-up, then a straight line down to ``min_lr`` at ``max_update``.
      - ``constant``: same warm-up, then ``peak_lr``.
    """

    peak_lr: float
    max_update: int
    warmup_updates: int = 0
    warmup_init_lr: float = 0.0
    min_lr: float = 0.0
    kind: str = "cosine"

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "linear", "constant"):
            raise W2vtkError(f"unknown lr schedule '{self.kind}' (cosine, linear, constant)")
        if self.warmup_updates < 0 or self.max_update < 1:
            raise W2vtkError("lr schedule: warmup_updates must be >= 0 and max_update >= 1")

    def lr_at(self, num_updates: int) -> float:
        """Learning rate for the update that follows ``num_updates`` applied updates."""
        if num_updates < self.warmup_updates:
            frac = num_updates / self.warmup_updates
            return self.warmup_init_lr + frac * (self.peak_lr - self.warmup_init_lr)
        if self.kind == "constant":
            return self.peak_lr
        period = max(1, self.max_update - self.warmup_updates)
        t = min(1.0, (num_updates - self.warmup_updates) / period)
        if self.kind == "linear":
            return self.peak_lr + t * (self.min_lr - self.peak_lr)
        return self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def apply(self, optimizer, num_updates: int) -> float:
        """Set every param group's lr for the next update (times the group's ``lr_scale``, 1 unless
        set: ASG's transitions); returns it."""
        lr = self.lr_at(num_updates)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr


# --------------------------------------------------------------------------------------------------
# Seeds and RNG state


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed that depends on every key, e.g. ``derive_seed(seed, "crop", update, utt_index)``.

    Hash-based, so neighbouring keys give unrelated streams and the result does not depend on the
    process that computes it (unlike drawing from a shared generator).
    """
    h = hashlib.blake2b(digest_size=8)
    for key in keys:
        h.update(str(key).encode())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def seeded_generator(*keys: int | str):
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``keys``."""
    import torch

    gen = torch.Generator()
    gen.manual_seed(derive_seed(*keys))
    return gen


def capture_rng_state() -> dict:
    """Python, numpy, torch CPU and CUDA RNG states as plain containers + tensors (weights_only-safe)."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": str(np_state[0]), "key": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state` (missing parts are left alone)."""
    import numpy as np
    import torch

    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state((s["kind"], s["key"].numpy().astype(np.uint32), s["pos"], s["has_gauss"],
                             s["gauss"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(distributed: bool, world_size: int) -> list[dict]:
    """Every rank's :func:`capture_rng_state`, in rank order (an all-gather: call on every rank).
    What a checkpoint keeps so that each rank resumes with its own dropout / sampling streams."""
    if not distributed:
        return [capture_rng_state()]
    import torch.distributed as tdist

    states: list = [None] * world_size
    tdist.all_gather_object(states, capture_rng_state())
    return states


def restore_training_state(ckpt: dict, path: Path, *, model, optimizer, scaler, guard, guard_state: dict,
                           rng_states: list, rank: int, world_size: int) -> bool:
    """The part of a resume both trainers share: model, optimiser, grad scaler (when the run has
    one and the checkpoint kept it), non-finite guard and this rank's RNG state from ``ckpt`` (read
    from ``path``, which errors name). Returns False when the checkpoint's RNG states are for
    another number of processes (left alone: the caller decides how to reseed)."""
    load_state(model, ckpt["model"], path)
    load_state(optimizer, ckpt["optimizer"], path, "optimizer")
    if scaler is not None and ckpt.get("scaler"):
        load_state(scaler, ckpt["scaler"], path, "grad scaler")
    load_state(guard, guard_state, path, "non-finite guard")
    if len(rng_states) != world_size:
        return False
    restore_rng_state(rng_states[rank])
    return True


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# Checkpoint rotation

_NUMBERED = re.compile(r"^checkpoint_(\d+)\.pt$")


def _atomic_link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` hold ``src``'s bytes atomically: hard link (no copy) or copy, then rename.

    A hard link is safe because every checkpoint write replaces the name with a new file (rename);
    an existing inode is never modified in place.
    """
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class CheckpointManager:
    """``checkpoint_last.pt``, ``checkpoint_best.pt`` and numbered ``checkpoint_<update>.pt`` files.

    - :meth:`save` writes the state once (atomically, :func:`w2vtk.checkpoint.save_checkpoint`) and
      links it under ``checkpoint_<update>.pt`` when ``numbered``, ``checkpoint_best.pt`` when
      ``is_best`` and ``checkpoint_last.pt``, in that order (last is the commit point of a save).
    - Only the ``keep_last`` newest numbered files are kept (fairseq ``--keep-interval-updates``);
      ``keep_last < 0`` keeps all, ``0`` writes none.  last and best are never rotated away.
    """

    def __init__(self, exp_dir: str | Path, keep_last: int = 5):
        self.exp_dir = Path(exp_dir)
        self.keep_last = keep_last

    @property
    def last_path(self) -> Path:
        return self.exp_dir / "checkpoint_last.pt"

    @property
    def best_path(self) -> Path:
        return self.exp_dir / "checkpoint_best.pt"

    def numbered(self) -> list[tuple[int, Path]]:
        """Numbered checkpoints present, oldest first."""
        out = []
        for path in self.exp_dir.glob("checkpoint_*.pt"):
            m = _NUMBERED.match(path.name)
            if m:
                out.append((int(m.group(1)), path))
        return sorted(out)

    def save(self, state: Any, update: int, *, is_best: bool = False, numbered: bool = False) -> Path:
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        # checkpoint_last.pt is renamed into place LAST: a run killed before that point resumes from
        # the previous checkpoint and writes the numbered / best files of this update again; had
        # last come first, a kill before the links would lose them for good.
        targets = []
        if numbered and self.keep_last != 0:
            targets.append(self.exp_dir / f"checkpoint_{update}.pt")
        if is_best:
            targets.append(self.best_path)
        targets.append(self.last_path)
        save_checkpoint(state, targets[0])
        for path in targets[1:]:
            _atomic_link_or_copy(targets[0], path)
        if self.keep_last >= 0:
            existing = self.numbered()
            for _, path in existing[: max(0, len(existing) - self.keep_last)]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return self.last_path


# --------------------------------------------------------------------------------------------------
# Metrics


def average_model_states(paths: list[Path]) -> dict:
    """The element-wise mean (accumulated in float64, returned as float32) of the ``model`` state
    dicts of the checkpoints at ``paths``: checkpoint averaging (fairseq's average_checkpoints)."""
    total = None
    for p in paths:
        state = load_checkpoint(p)["model"]
        if total is None:
            total = {k: v.double().clone() for k, v in state.items()}
        else:
            for k, v in state.items():
                total[k] += v.double()
    return {k: (v / len(paths)).float() for k, v in total.items()}


def _epoch_files(exp_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for p in exp_dir.glob("checkpoint_epoch*.pt"):
        num = p.name[len("checkpoint_epoch"): -len(".pt")]
        if num.isdigit():
            out.append((int(num), p))
    return sorted(out)


def write_epoch_average(exp_dir: Path, n: int, template: dict | None) -> None:
    """Keep the newest ``n`` ``checkpoint_epoch<N>.pt`` files of ``exp_dir`` and write their mean as
    ``checkpoint_avg.pt``: ``template`` (else the newest epoch file) with the averaged ``model``."""
    files = _epoch_files(exp_dir)
    for _, p in files[:-n]:
        p.unlink(missing_ok=True)
    files = files[-n:]
    if not files:
        return
    if template is None:
        template = load_checkpoint(files[-1][1])
    avg = dict(template)
    avg["model"] = average_model_states([p for _, p in files])
    epochs = [e for e, _ in files]
    avg["source"] = f"average of epochs {epochs}"
    avg["averaged_epochs"] = epochs
    save_checkpoint(avg, exp_dir / "checkpoint_avg.pt")


class MetricsLog:
    """Append-only JSON lines (one record per log interval / validation), written by rank 0 only.

    Each line is flushed and fsynced; :meth:`truncate_after` (used on resume) atomically drops the
    records newer than the checkpoint so that a resumed run does not log an update twice.
    """

    def __init__(self, path: str | Path, enabled: bool = True, key: str = "update",
                 tensorboard: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.key = key
        self.tensorboard = tensorboard and enabled and tensorboard_available()
        self._tb = None
        self._purge: int | None = None

    def truncate_after(self, update: int) -> None:
        self._purge = update + 1  # TensorBoard hides an earlier run's events from here on
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_bytes().decode("utf-8", errors="replace").splitlines():
            rec = parse_metrics_line(line)
            if rec is None:
                continue  # a line cut by a kill, or not ours: drop it
            step = rec.get(self.key, 0)
            if isinstance(step, int) and not isinstance(step, bool) and step <= update:
                kept.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.tensorboard:
            self._write_tensorboard(record)

    def _write_tensorboard(self, record: dict) -> None:
        """The record's numbers as TensorBoard scalars in ``<exp>/tensorboard/``: tag = the
        metrics.jsonl name (``<split>/<name>`` when the record has a split), step = its update or
        epoch."""
        step = record.get(self.key)
        if not isinstance(step, int) or isinstance(step, bool):
            return
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.path.parent / "tensorboard"), purge_step=self._purge)
        split = record.get("split")
        for name, value in record.items():
            if name == self.key or name == "time" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self._tb.add_scalar(f"{split}/{name}" if isinstance(split, str) else name, value, step)
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def tensorboard_available() -> bool:
    """True when the optional ``tensorboard`` package is installed (``pip install 'w2vtk[tensorboard]'``);
    the trainers then also write their scalars as TensorBoard event files."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def parse_metrics_line(line: str) -> dict | None:
    """One metrics.jsonl line as a mapping, or None for a cut, garbled or too deeply nested line."""
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None
    return rec if isinstance(rec, dict) else None


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a metrics.jsonl file (for tests, plots and scripts); a line cut by a kill or
    otherwise unreadable is skipped."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file")
    out = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if line.strip():
            rec = parse_metrics_line(line)
            if rec is not None:
                out.append(rec)
    return out


class Throughput:
    """Audio seconds (or any unit) per wall-clock second over the window since the last :meth:`rate`."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._amount = 0.0

    def add(self, amount: float) -> None:
        self._amount += amount

    def rate(self, reset: bool = True) -> float:
        now = time.perf_counter()
        value = self._amount / max(1e-9, now - self._t0)
        if reset:
            self._t0, self._amount = now, 0.0
        return value


# --------------------------------------------------------------------------------------------------
# Non-finite losses


class NonFiniteGuard:
    """Counts skipped updates; raises :class:`W2vtkError` after ``max_consecutive`` in a row.

    Usage: ``if guard.ok(bool(torch.isfinite(loss)), update): optimizer.step()``.
    """

    def __init__(self, max_consecutive: int = 10):
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0

    def ok(self, finite: bool, where: str = "") -> bool:
        if finite:
            self.consecutive = 0
            return True
        self.skipped += 1
        self.consecutive += 1
        if self.max_consecutive > 0 and self.consecutive >= self.max_consecutive:
            raise W2vtkError(
                f"{self.consecutive} consecutive non-finite losses/gradients{(' at ' + where) if where else ''}"
                f" ({self.skipped} skipped in all): training diverged; lower the lr, enable clipping or "
                "use amp=bf16/none; the last good checkpoint is intact")
        return False

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.consecutive = int(state.get("consecutive", 0))


# --------------------------------------------------------------------------------------------------
# Devices and mixed precision


def resolve_amp(amp: str, device) -> str:
    """The precision actually used: amp only on CUDA (bf16 / fp16); fp32 ("none") on CPU."""
    if getattr(device, "type", str(device)) != "cuda":
        return "none"
    if amp not in ("bf16", "fp16", "none"):
        raise W2vtkError(f"amp must be bf16, fp16 or none, got {amp!r}")
    return amp


def autocast(device, amp: str):
    """``torch.autocast`` for bf16 / fp16 on CUDA; a no-op context otherwise."""
    import torch

    if amp == "none" or getattr(device, "type", "cpu") != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def make_grad_scaler(amp: str, init_scale: float = 128.0):
    """A GradScaler for fp16 (fairseq's ``--fp16-init-scale`` 128 because losses are sums); else None."""
    import torch

    if amp != "fp16":
        return None
    return torch.amp.GradScaler("cuda", init_scale=init_scale)


def setup_cpu(threads: int = 0) -> None:
    """Flush denormals (collapsed activations otherwise doubled CPU step time); set intra-op threads."""
    import torch

    torch.set_flush_denormal(True)
    if threads > 0:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    out = [0.0]
    start = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - start


# ----------------------------------------------------------------------------------------------
# resuming: one contract for every training command

def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: data}


def config_changes(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every setting that differs between two resolved
    configs (plain dicts from :func:`w2vtk.config.to_dict`), in key order."""
    a, b = _flatten(old), _flatten(new)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            out.append((key, None if va is missing else va, None if vb is missing else vb))
    return out


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)


def resume_config(exp_dir: Path, saved: dict | None, requested: dict, allow_changes: bool,
                  run_settings: Iterable[str] = (), log=None, archive: bool = True) -> bool:
    """The resume contract of ``pretrain`` and ``train-am``: may a rerun on ``exp_dir`` go on?

    ``saved``: the experiment's resolved config (``config.yaml``; None when there is none),
    ``requested``: the config of this invocation (both plain dicts). Settings in ``run_settings``
    (threads, device: how to run, not what) may change freely, with a note. Any other change is
    refused with one line listing each ``key: old -> new`` unless ``allow_changes``; then the old
    ``config.yaml`` is kept as ``config.<N>.yaml`` (N = 1, 2, ...) before the caller writes the new
    (``archive`` False: checked only, for the ranks that do not write).

    Returns True when the caller should (re)write ``config.yaml``; False leaves it byte-identical.
    """
    if saved is None:
        return True
    changes = config_changes(saved, requested)
    if not changes:
        return False
    runtime = set(run_settings)
    real = [c for c in changes if c[0] not in runtime]
    if real and not allow_changes:
        raise W2vtkError(f"{exp_dir}: this rerun changes the experiment's config.yaml ({describe_changes(real)}); "
                         f"rerun without these options (the saved config is used by default), pass "
                         f"--allow-changes to continue with them (the old config is kept as config.<N>.yaml), "
                         f"or use a new exp dir")
    if log is not None and archive:
        kind = "changed settings" if real else "changed run settings"
        log(f"note: resuming with {kind}: {describe_changes(changes)}")
    if not archive:
        return True
    n = 1
    while (exp_dir / f"config.{n}.yaml").exists():
        n += 1
    src = exp_dir / "config.yaml"
    if src.is_file():
        _atomic_link_or_copy(src, exp_dir / f"config.{n}.yaml")
    return True
