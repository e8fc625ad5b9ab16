"""Shared pieces of the hostile-file and resource-limit tests (a uniquely named module).

- :func:`cli`: the real ``w2vtk`` entry point (:func:`w2vtk.cli.main`) run in-process, so a
  stage meets a hostile file exactly as on the command line (``error: ...`` and exit 1 for a
  W2vtkError) while torch is imported once per session; an exception that is not a W2vtkError
  escapes and fails the test with its traceback, which is the crash these tests exist to catch.
- :func:`peak_rss`: a ``python -m w2vtk`` subprocess and the peak resident set size of its process
  tree's largest process, as ``RUSAGE_CHILDREN`` of a fresh wrapper process (not of the test
  process: that keeps the maximum of every child ever reaped, and a child forked from a big
  process inherits its peak).
- small wav2vec checkpoints (the 16-channel layer shapes of tests/pretrain/pretrain_helpers.py
  SMALL), audio writers, and checkpoints whose pickle would run a command if it were unpickled.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
for _sub in ("pretrain", "am"):
    _p = str(REPO / "tests" / _sub)
    if _p not in sys.path:
        sys.path.append(_p)

from am_synth import TINY, W2V_PROV, make_texts, write_feature_dir  # noqa: E402,F401
from pretrain_helpers import SMALL  # noqa: E402,F401

RATE = 16000
# pretrain_helpers.SMALL's model: 5 encoder convs (stride 160, receptive field 465 samples) and 2
# context convs, 16 channels each.
SMALL_ENCODER = [(16, 10, 5), (16, 8, 4), (16, 4, 2), (16, 4, 2), (16, 4, 2)]
SMALL_CONTEXT = [(16, 3, 1), (16, 3, 1)]


# ------------------------------------------------------------------------------------ running


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` intra-op torch threads (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _subnormals_work() -> bool:
    tiny = float.fromhex("0x0.0000000000001p-1022")  # the smallest subnormal double
    return tiny * 1.0 != 0.0


def cli(*args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``w2vtk ARGS`` run through :func:`w2vtk.cli.main`.

    train-am and pretrain call ``torch.set_flush_denormal(True)`` and may set the intra-op thread
    count (w2vtk.training.setup_cpu), both process-wide; they are put back afterwards so later tests
    in this pytest process see a normal CPU (hypothesis' float strategies refuse to run with
    subnormals flushed).
    """
    import torch

    from w2vtk.cli import main

    subnormals = _subnormals_work()
    threads = torch.get_num_threads()  # pretrain's threads=1 (SMALL) sets it process-wide too
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            if subnormals and not _subnormals_work():
                torch.set_flush_denormal(False)
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


def assert_error(result: tuple[int, str, str], *needles: str) -> str:
    """Exit status 1, no traceback, and stderr ending in exactly one ``error: ...`` line that contains
    every needle (progress and log lines, which w2vtk prints to stderr, may come before it);
    returns the line."""
    code, out, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in err and "Traceback" not in out, err
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("error: "), err
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def assert_ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    return out


# A small Python process that runs the command and reports RUSAGE_CHILDREN: the command must not be
# forked from the test process itself, since Linux carries the forking process's peak RSS over an
# exec into the child's ru_maxrss (a pytest process that once held 1 GB made every child "peak" at
# 1 GB).  Forked from this wrapper, the command starts from the wrapper's ~10 MB.
_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(args: list, env: dict | None = None, timeout: float = 300) -> tuple[int, int, str]:
    """(exit status, peak RSS in bytes, stderr) of ``python -m w2vtk ARGS`` in a fresh process.

    The peak is ``ru_maxrss`` of the command as reaped by a fresh wrapper process: the largest peak
    of the command's process and of the children it reaped (its audio-decoding workers).
    """
    e = dict(os.environ)
    # One intra-op thread: on a shared 2-core machine OpenMP's spinning threads made the same run
    # 4x slower (18 s vs 84 s for 60 minutes); the memory measured does not depend on it.
    e.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    e.update(env or {})
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m", "w2vtk", *map(str, args)],
                          capture_output=True, text=True, env=e, cwd=REPO, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    code, kb = (int(v) for v in proc.stdout.split())
    return code, kb * 1024, proc.stderr


# ------------------------------------------------------------------------------------ models


def small_model(seed: int = 0, context: list | None = None):
    """A randomly initialised 16-channel wav2vec (``context``: other context layer shapes)."""
    import torch

    from w2vtk.models.wav2vec import Wav2VecConfig, Wav2VecModel

    torch.manual_seed(seed)
    cfg = Wav2VecConfig(conv_feature_layers=list(SMALL_ENCODER),
                        conv_aggregator_layers=list(context or SMALL_CONTEXT), norm="channel")
    subnormals = _subnormals_work()
    model = Wav2VecModel(cfg).eval()
    if subnormals and not _subnormals_work():
        torch.set_flush_denormal(False)  # the constructor flushes denormals process-wide; see cli()
    return model


def save_w2vtk_checkpoint(path: Path, seed: int = 0, context: list | None = None, **extra) -> Path:
    """A w2vtk wav2vec checkpoint of :func:`small_model` (``extra``: more top-level entries)."""
    from w2vtk.checkpoint import save_checkpoint
    from w2vtk.models.fairseq import w2vtk_checkpoint

    save_checkpoint(w2vtk_checkpoint(small_model(seed, context), **extra), path)
    return path


class RunsCommand:
    """Pickles as a call of ``os.system(command)``: what a malicious checkpoint hides."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def evil(marker: Path) -> RunsCommand:
    return RunsCommand(f"touch {marker}")


# ------------------------------------------------------------------------------------ audio


def noise(seconds: float, seed: int = 0, rate: int = RATE, amp: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(int(round(seconds * rate)))).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, subtype=subtype)
    return path


def write_long_wav(path: Path, seconds: float, seed: int = 0) -> Path:
    """16-bit noise of ``seconds`` at 16 kHz, written ten minutes at a time (bounded test memory)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(round(seconds * RATE))
    step = 600 * RATE
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as fh:
        for start in range(0, total, step):
            fh.write((0.1 * rng.standard_normal(min(step, total - start))).astype(np.float32))
    return path


def riff_wav(*, fmt_tag: int = 1, channels: int = 1, rate: int = RATE, bits: int = 16, data: bytes = b"",
             data_len: int | None = None) -> bytes:
    """A RIFF/WAVE file built by hand, so its header can say anything (``data_len``: the data
    chunk's declared size, default the true one)."""
    import struct

    block = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    size = len(data) if data_len is None else data_len
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_data_dir(path: Path, wav_scp: dict[str, str]) -> Path:
    """A Kaldi data dir (one speaker per utterance, no text) for ``wav_scp``."""
    path.mkdir(parents=True, exist_ok=True)
    ids = sorted(wav_scp, key=lambda u: u.encode("utf-8"))
    (path / "wav.scp").write_text("".join(f"{u} {wav_scp[u]}\n" for u in ids))
    (path / "utt2spk").write_text("".join(f"{u} {u}\n" for u in ids))
    (path / "spk2utt").write_text("".join(f"{u} {u}\n" for u in ids))
    return path


def read_ark(scp: Path) -> dict[str, np.ndarray]:
    import kaldiio

    return {k: np.asarray(v) for k, v in kaldiio.load_scp(str(scp)).items()}
