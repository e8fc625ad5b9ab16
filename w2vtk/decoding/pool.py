"""Decoder worker processes: a flashlight decode holds the GIL, so ``nj`` spawned processes each load
the emissions, LM and trie once and then decode utterance shards (one decode) or whole trials (tuning)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable

from w2vtk.decoding.config import BeamConfig
from w2vtk.decoding.emissions import read_emissions, read_emissions_info
from w2vtk.decoding.search import Decoder, Hypothesis
from w2vtk.dist import balanced_shards
from w2vtk.errors import W2vtkError
from w2vtk.lm.reading import LMResources
from w2vtk.tokens import TokenSet


@dataclass
class DecodeJob:
    """What a worker needs to rebuild the decoding state (picklable: paths and plain values)."""

    kind: str
    am_tokens_dir: str
    lm_dir: str | None
    emissions_dir: str


@dataclass
class DecodeState:
    """What one process decodes with: the decoder kind, the AM's tokens, the emissions and the LM."""

    kind: str
    tokens: Any
    mats: dict
    res: LMResources | None
    transitions: list | None = None  # an ASG model's (V, V) transitions, [prev, next]; None for CTC

    @classmethod
    def load(cls, job: DecodeJob) -> "DecodeState":
        tokens = TokenSet.load(job.am_tokens_dir)
        res = LMResources(job.lm_dir, tokens, job.kind, check_overlap=False) if job.kind != "greedy" else None
        return cls(job.kind, tokens, read_emissions(job.emissions_dir), res,
                   read_emissions_info(job.emissions_dir).get("asg_transitions"))

    def decode(self, utts: list[str], beam: BeamConfig, on_done: Callable[[str], None] | None = None
               ) -> tuple[dict[str, list[Hypothesis]], float]:
        """Hypotheses of ``utts`` and the seconds spent searching (``on_done(utt)`` after each)."""
        dec = Decoder(self.kind, self.tokens, beam, self.res, transitions=self.transitions)
        out, secs = {}, 0.0
        for u in utts:
            t0 = time.perf_counter()
            out[u] = dec.decode(self.mats[u])
            secs += time.perf_counter() - t0
            if on_done:
                on_done(u)
        return out, secs


# A worker process's state. ProcessPoolExecutor's tasks reach what its initializer built only
# through the worker's module namespace, so this one slot exists in worker processes alone; the
# parent process (DecodePool with nj == 1 included) never reads or writes it.
_worker: DecodeState | W2vtkError | None = None


def _exit_with_parent(parent: int) -> None:
    """Exit this worker once ``parent`` is gone: a SIGKILLed decode (OOM killer, scheduler
    pre-emption) cannot shut its pool down, and its workers would otherwise wait for work for ever,
    holding an LM in memory and the parent's stdout open."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="w2vtk-parent-watch", daemon=True).start()


def _worker_init(job: DecodeJob, parent: int) -> None:
    global _worker
    _exit_with_parent(parent)
    try:
        _worker = DecodeState.load(job)
    except W2vtkError as err:
        # an initializer's exception would only be printed (with a traceback) by the pool, which
        # then breaks; keep it and raise it from the first task so the user sees its one line
        _worker = err


def _state() -> DecodeState:
    if isinstance(_worker, W2vtkError):
        raise _worker
    assert _worker is not None, "decoder worker used before its initializer ran"
    return _worker


def _decode_utts(utts: list[str], beam: BeamConfig) -> tuple[dict[str, list[Hypothesis]], float]:
    return _state().decode(utts, beam)


def _run_trial(index: int, beam: BeamConfig, utts: list[str]) -> tuple[int, dict[str, list[str]], float]:
    hyps, seconds = _state().decode(utts, beam)
    return index, {u: h[0].words for u, h in hyps.items()}, seconds


def _ping() -> bool:
    _state()
    time.sleep(0.05)  # long enough that the pool starts a new worker for the next task
    return True


def _result(future):
    """``future.result()`` with a worker that died (SIGKILL, the OOM killer) as a one-line error."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise W2vtkError("a decoder worker process died unexpectedly (killed, or out of memory: each "
                         "holds the LM; lower --nj)") from None


class DecodePool:
    """``nj`` worker processes (spawned: no inherited torch / OpenMP state), each holding one copy of
    the emissions, LM and trie; with ``nj == 1`` everything runs in this process."""

    def __init__(self, job: DecodeJob, nj: int, *, tokens=None, mats: dict | None = None,
                 resources: LMResources | None = None, transitions: list | None = None):
        """With ``nj == 1``, ``tokens`` / ``mats`` / ``resources`` / ``transitions`` (ASG) already in
        memory are used as they are (a big LM is not loaded twice)."""
        import multiprocessing as mp

        self.job, self.nj = job, max(1, nj)
        self._pool = None
        self._local: DecodeState | None = None
        if self.nj == 1:
            if tokens is not None and mats is not None and (resources is not None or job.kind == "greedy"):
                self._local = DecodeState(job.kind, tokens, mats, resources, transitions)
            else:
                self._local = DecodeState.load(job)
            return
        self._pool = ProcessPoolExecutor(self.nj, mp_context=mp.get_context("spawn"),
                                         initializer=_worker_init, initargs=(job, os.getpid()))
        # start every worker (LM and trie loading) now, so that timings measure the search only
        try:
            for f in [self._pool.submit(_ping) for _ in range(self.nj)]:
                _result(f)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def decode(self, utts: list[str], beam: BeamConfig, frames: dict[str, int],
               on_done: Callable[[int], None] | None = None) -> tuple[dict[str, list[Hypothesis]], float]:
        """Decode ``utts`` (split into balanced shards by frames); returns hypotheses and summed
        worker search seconds."""
        if self._local is not None:
            return self._local.decode(utts, beam, (lambda u: on_done(frames[u])) if on_done else None)
        shards = balanced_shards(utts, frames, self.nj * 4)
        futures = {self._pool.submit(_decode_utts, shard, beam): shard for shard in shards}
        out, secs = {}, 0.0
        for f in as_completed(futures):
            h, s = _result(f)
            out.update(h)
            secs += s
            if on_done:
                on_done(sum(frames[u] for u in futures[f]))
        return out, secs

    def trials(self, beams: list[BeamConfig], utts: list[str], on_done: Callable[[int, dict, float], None]) -> None:
        """Decode the whole set once per beam config (one trial per task), calling ``on_done``."""
        if self._local is not None:
            for i, b in enumerate(beams):
                hyps, seconds = self._local.decode(utts, b)
                on_done(i, {u: h[0].words for u, h in hyps.items()}, seconds)
            return
        futures = [self._pool.submit(_run_trial, i, b, utts) for i, b in enumerate(beams)]
        for f in as_completed(futures):
            on_done(*_result(f))
