"""The built-in mini corpus: deterministic multi-speaker English synthesized with espeak-ng.

``synthesize_mini(out_dir)`` writes a small corpus in the LibriSpeech layout and prepares it with the
LibriSpeech preparer, so every later stage runs without downloading anything::

    <corpus_dir>/LibriSpeech/{train,dev,test}/<reader>/<chapter>/<reader>-<chapter>-<NNNN>.flac
    <corpus_dir>/LibriSpeech/{train,dev,test}/<reader>/<chapter>/<reader>-<chapter>.trans.txt
    <corpus_dir>/LibriSpeech/SPEAKERS.TXT
    <corpus_dir>/librispeech-lm-norm.txt    extra grammar sentences (the corpus's "LM text")
    <corpus_dir>/mini.json                  what was synthesized (seed, minutes, versions)
    <out_dir>/{train,dev,test}/             Kaldi data dirs (speaker = reader-chapter)
    <out_dir>/local/lm_text.txt             train transcripts + the extra sentences

``corpus_dir`` defaults to ``<out_dir>/corpus``, so deleting ``out_dir`` removes everything.

Speakers are espeak-ng voices (eight English accents x the ``+m1``..``+m8`` / ``+f1``..``+f5``
variants) with their own speaking rate, pitch, intonation range, level and background-noise floor;
about 0.8 speakers per minute of audio (24 for 30 minutes, at least 6).  Dev and test each get
about an eighth of the speakers, or ``held_speakers`` speakers and ``held_minutes`` minutes each; the
three sets never share a speaker, and no espeak-ng voice of dev or test is ever a train voice.  Sentences come from
:mod:`w2vtk.corpora.mini_grammar` and are distinct across the whole corpus; the extra LM sentences
never repeat a corpus sentence.

Determinism: the same seed gives byte-identical FLAC files on the same machine and library versions.
espeak-ng keeps hidden state between utterances (its pitch-flutter phase and random generators
survive ``espeak_Terminate``), so every chapter is synthesized from espeak-ng's initial state: the
work runs in fresh ``python -m w2vtk.corpora.mini`` worker processes that never synthesize
themselves but fork one child per chapter; the caller's process never loads espeak-ng.
espeak-ng's 22,050 Hz output is resampled to 16 kHz with soxr.
"""

from __future__ import annotations

import ctypes
import io
import json
import math
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from w2vtk.corpora.librispeech import prepare_librispeech
from w2vtk.corpora.mini_grammar import sentences
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_bytes, atomic_write_text
from w2vtk.progress import progress

# Bump when a change alters the synthesized audio or text for a given seed.
MINI_FORMAT = 2
SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
SPEAKERS_PER_MINUTE = 0.8
MIN_SPEAKERS = 6
DEFAULT_LM_SENTENCES = 20000

ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
SUBSETS = ("train", "dev", "test")

# espeak-ng's speaking rate is in words per minute; at its default (175) the grammar's sentences
# come out at about 18.7 characters per second including the short pauses around them.
_CHARS_PER_SECOND_AT_175 = 18.7


@dataclass(frozen=True)
class MiniSpeaker:
    """One pseudo-speaker: an espeak-ng voice plus prosody and recording-condition settings."""

    reader: int
    chapter: int
    subset: str           # "train" | "dev" | "test"
    voice: str            # espeak-ng voice name, e.g. "en-gb-scotland+f3"
    gender: str           # "m" | "f"
    rate: int             # espeak-ng words per minute
    pitch: int            # espeak-ng base pitch 0..99
    pitch_range: int      # espeak-ng intonation range 0..99
    peak: float           # utterance peak level, fraction of full scale
    noise_dbfs: float     # background noise floor (white), dB relative to full scale

    @property
    def speaker_id(self) -> str:
        return f"{self.reader}-{self.chapter}"


@dataclass(frozen=True)
class MiniPlan:
    """Everything synthesize_mini will write, derived from (minutes, seed, speakers) alone."""

    speakers: list[MiniSpeaker]
    utterances: dict[str, list[tuple[str, str]]]   # speaker_id -> [(utt_id, transcript)]
    lm_sentences: list[str]


def _num_speakers(minutes: float) -> int:
    return max(MIN_SPEAKERS, round(minutes * SPEAKERS_PER_MINUTE))


def estimate_seconds(text: str, rate: int) -> float:
    """Rough spoken duration of ``text`` at espeak-ng ``rate`` (used only to plan the corpus size)."""
    return len(text) / _CHARS_PER_SECOND_AT_175 * 175.0 / rate + 0.45


def plan_mini(minutes: float = 20.0, seed: int = 0, *, speakers: int | None = None,
              lm_sentences: int = DEFAULT_LM_SENTENCES, held_speakers: int | None = None,
              held_minutes: float | None = None) -> MiniPlan:
    """Choose speakers, their sets and their sentences; a pure function of the arguments.

    ``minutes`` is the whole corpus and ``speakers`` all its speakers (default max(6, 0.8 per
    minute)).  Dev and test get ``held_speakers`` speakers each (default about an eighth of all) and,
    with ``held_minutes``, that many minutes each (the rest goes to train); without it every speaker
    gets the same share.  Voices are split before speakers are made: a voice heard in dev or test is
    never a train voice, so a train set larger than its voice pool reuses train voices (with other
    prosody) and never a held-out one.
    """
    n_spk, n_held = _check_plan(minutes, seed, speakers, lm_sentences, held_speakers, held_minutes)
    spk_list = _plan_speakers(seed, n_spk, n_held)
    if held_minutes is None:
        share = {s: minutes * 60.0 / n_spk for s in SUBSETS}
    else:
        share = {"dev": held_minutes * 60.0 / n_held, "test": held_minutes * 60.0 / n_held,
                 "train": (minutes - 2 * held_minutes) * 60.0 / (n_spk - 2 * n_held)}
    utterances, seen = _plan_sentences(seed, spk_list, share)
    lm_rng = random.Random(f"w2vtk-mini/{MINI_FORMAT}/{seed}/lm")
    extra = sentences(lm_rng, lm_sentences, exclude=seen)
    return MiniPlan(speakers=spk_list, utterances=utterances, lm_sentences=extra)


def _voice_pools() -> dict[str, list[str]]:
    """espeak-ng voices (accent + variant) by gender, in a fixed order."""
    return {"m": [f"{a}+{v}" for a in ACCENTS for v in MALE_VARIANTS],
            "f": [f"{a}+{v}" for a in ACCENTS for v in FEMALE_VARIANTS]}


def _check_plan(minutes: float, seed: int, speakers: int | None, lm_sentences: int, held_speakers: int | None,
                held_minutes: float | None) -> tuple[int, int]:
    """plan_mini's arguments checked (one W2vtkError per mistake); returns (speakers, held-out speakers per set)."""
    if not (minutes > 0) or math.isinf(minutes):
        raise W2vtkError(f"mini corpus: --minutes must be a positive number, got {minutes}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise W2vtkError(f"mini corpus: --seed must be an integer >= 0, got {seed}")
    n_spk = speakers if speakers is not None else _num_speakers(minutes)
    if n_spk < 3:
        raise W2vtkError(f"mini corpus: need at least 3 speakers (train, dev, test), got {n_spk}")
    if lm_sentences < 0:
        raise W2vtkError(f"mini corpus: lm_sentences must be >= 0, got {lm_sentences}")
    n_held = held_speakers if held_speakers is not None else max(1, round(n_spk / 8))
    if n_held < 1 or n_spk - 2 * n_held < 1:
        raise W2vtkError(f"mini corpus: {n_spk} speakers cannot hold {n_held} dev + {n_held} test "
                         "speakers and at least one train speaker (raise --speakers)")
    pools = _voice_pools()
    held_per_gender = n_held - n_held // 2        # the first gender's share of one held-out set
    if 2 * held_per_gender + 1 > min(len(p) for p in pools.values()):
        raise W2vtkError(f"mini corpus: {n_held} held-out speakers per set need more distinct "
                         f"espeak-ng voices than there are ({len(pools['f'])} female)")
    if held_minutes is not None:
        if not (held_minutes > 0) or math.isinf(held_minutes):
            raise W2vtkError(f"mini corpus: --held-minutes must be a positive number, got {held_minutes}")
        if minutes - 2 * held_minutes <= 0:
            raise W2vtkError(f"mini corpus: --minutes {minutes:g} leaves no train audio after "
                             f"2 x {held_minutes:g} held-out minutes")
    return n_spk, n_held


def _plan_speakers(seed: int, n_spk: int, n_held: int) -> list[MiniSpeaker]:
    """The speakers in set order (dev, test, train), voices split so dev / test voices are never train's."""
    pools = _voice_pools()
    rng = random.Random(f"w2vtk-mini/{MINI_FORMAT}/{seed}/speakers")
    for pool in pools.values():
        rng.shuffle(pool)
    readers = rng.sample(range(100, 10000), n_spk)
    chapters = rng.sample(range(1000, 300000), n_spk)
    first_gender = rng.choice("mf")
    other_gender = "f" if first_gender == "m" else "m"
    # Dev and test take their voices off the top of each shuffled pool; train cycles through the rest.
    next_voice = {"m": 0, "f": 0}
    train_pools: dict[str, list[str]] = {}
    sets = ["dev"] * n_held + ["test"] * n_held + ["train"] * (n_spk - 2 * n_held)
    spk_list: list[MiniSpeaker] = []
    for i, subset in enumerate(sets):
        index_in_set = i if subset == "dev" else i - n_held if subset == "test" else i - 2 * n_held
        # Alternating genders keep every set mixed even with two speakers.
        gender = first_gender if index_in_set % 2 == 0 else other_gender
        if subset != "train":
            voice = pools[gender][next_voice[gender]]
            next_voice[gender] += 1
        else:
            pool = train_pools.setdefault(gender, pools[gender][next_voice[gender]:])
            voice = pool[(index_in_set // 2) % len(pool)]
        spk_list.append(MiniSpeaker(
            reader=readers[i], chapter=chapters[i], subset=subset, voice=voice, gender=gender,
            rate=rng.randint(150, 205), pitch=rng.randint(30, 70), pitch_range=rng.randint(35, 85),
            peak=round(rng.uniform(0.35, 0.85), 3), noise_dbfs=round(rng.uniform(-66.0, -50.0), 1)))

    return spk_list


def _plan_sentences(seed: int, spk_list: list[MiniSpeaker], share: dict[str, float]
                    ) -> tuple[dict[str, list[tuple[str, str]]], set[str]]:
    """Each speaker's (utterance id, sentence) list, about ``share[set]`` seconds each, every sentence
    distinct; returns them and the set of sentences used."""
    text_rng = random.Random(f"w2vtk-mini/{MINI_FORMAT}/{seed}/sentences")
    seen: set[str] = set()
    utterances: dict[str, list[tuple[str, str]]] = {}
    for spk in spk_list:
        utts: list[tuple[str, str]] = []
        total = 0.0
        while total < share[spk.subset] or not utts:
            (text,) = sentences(text_rng, 1, exclude=seen)
            seen.add(text)
            utts.append((f"{spk.speaker_id}-{len(utts):04d}", text))
            total += estimate_seconds(text, spk.rate)
        utterances[spk.speaker_id] = utts
    return utterances, seen


# ----------------------------------------------------------------------------------------------
# espeak-ng through ctypes (only ever used inside worker processes)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


class _Espeak:
    """The espeak-ng shared library bundled by the ``espeakng-loader`` wheel, synchronous mode."""

    def __init__(self) -> None:
        import espeakng_loader

        import numpy as np

        self._np = np
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as err:
            raise W2vtkError(f"cannot load espeak-ng from espeakng-loader ({err}); "
                             "reinstall it: pip install --force-reinstall espeakng-loader") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if rate != ESPEAK_RATE:
            raise W2vtkError(f"espeak-ng initialisation failed (returned {rate}, data {data})")
        self._chunks: list = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept alive: the library holds a pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(self._np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def version(self) -> str:
        return self.lib.espeak_Info(None).decode()

    def seed(self, value: int) -> None:
        # espeak-ng draws noise from its own generator and from libc rand(); fix both.
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_ng_SetRandSeed(value)
        ctypes.CDLL(None).srand(ctypes.c_uint(value))

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int):
        """(N,) int16 samples at 22,050 Hz for ``text`` (lower case: espeak spells out short
        all-caps words such as US)."""
        lib = self.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise W2vtkError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range),
                             (_PARAM_VOLUME, 60)):  # volume 60 leaves headroom: 100 clips
            lib.espeak_SetParameter(param, value, 0)
        self._chunks = []
        data = text.lower().encode()
        status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8,
                                  None, None)
        lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise W2vtkError(f"espeak-ng failed on {text!r} with voice {voice} (status {status})")
        return self._np.concatenate(self._chunks)


def _render(engine: _Espeak, spk: MiniSpeaker, text: str, noise_seed: list[int]):
    """(N,) int16 samples at 16 kHz: speech at the speaker's level between short noisy pauses."""
    import numpy as np
    import soxr

    raw = engine.synth(text, spk.voice, spk.rate, spk.pitch, spk.pitch_range)
    speech = soxr.resample(raw.astype(np.float32) / 32768.0, ESPEAK_RATE, SAMPLE_RATE, quality="HQ")
    peak = float(np.abs(speech).max())
    if peak <= 0.0:
        raise W2vtkError(f"espeak-ng produced silence for {text!r} ({spk.voice})")
    rng = np.random.default_rng(noise_seed)
    lead = int(rng.uniform(0.05, 0.35) * SAMPLE_RATE)
    trail = int(rng.uniform(0.10, 0.40) * SAMPLE_RATE)
    audio = np.zeros(lead + len(speech) + trail, dtype=np.float32)
    audio[lead:lead + len(speech)] = speech * np.float32(spk.peak / peak)
    audio += rng.standard_normal(len(audio)).astype(np.float32) * np.float32(10 ** (spk.noise_dbfs / 20))
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def _synthesize_chapter(job: dict) -> tuple[str, list[tuple[str, int]], str]:
    """Worker: synthesize one chapter (one speaker) into its FLAC files and ``trans.txt``.

    Runs in a fresh process so espeak-ng starts from its initial state; returns
    (speaker_id, [(utt_id, num_samples)], espeak version).  The transcript file is written last,
    so its presence means the chapter is complete.
    """
    import soundfile as sf

    spk = MiniSpeaker(**job["speaker"])
    chapter_dir = Path(job["chapter_dir"])
    chapter_dir.mkdir(parents=True, exist_ok=True)
    engine = _Espeak()
    engine.seed(job["seed"] * 1_000_003 + spk.reader)
    lengths: list[tuple[str, int]] = []
    for index, (utt_id, text) in enumerate(job["utterances"]):
        samples = _render(engine, spk, text, [job["seed"], spk.reader, index])
        buf = io.BytesIO()
        sf.write(buf, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        atomic_write_bytes(chapter_dir / f"{utt_id}.flac", buf.getvalue())
        lengths.append((utt_id, len(samples)))
    trans = "".join(f"{utt_id} {text}\n" for utt_id, text in job["utterances"])
    atomic_write_text(chapter_dir / f"{spk.speaker_id}.trans.txt", trans)
    return spk.speaker_id, lengths, engine.version()


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _run_job(job: dict) -> dict:
    """A job's result as a JSON-able dict; a failure becomes {"error": one line}."""
    try:
        spk_id, lengths, version = _synthesize_chapter(job)
        return {"speaker_id": spk_id, "lengths": lengths, "espeak_ng": version}
    except W2vtkError as err:
        return {"error": str(err)}
    except Exception as err:  # a bug or a broken installation: report it with its type
        return {"error": f"{job['speaker_id']}: {type(err).__name__}: {err}".replace("\n", " ")}


def _run_job_in_child(job: dict) -> dict:
    """Run one job in a forked child of this (never-synthesizing) worker: espeak-ng's hidden state
    is then the initial one for every chapter, whatever ran before in this worker."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        status = 0
        try:
            payload = json.dumps(_run_job(job)).encode()
            with os.fdopen(write_fd, "wb") as fh:
                fh.write(payload)
        except BaseException:
            status = 1
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        payload = fh.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        return {"error": f"{job['speaker_id']}: synthesis process died (status {status})"}
    return json.loads(payload)


def _worker_main() -> None:
    """``python -m w2vtk.corpora.mini``: read a JSON list of jobs on stdin, print one JSON result
    line per job.  Several jobs run each in a forked child; a single job runs here (this process is
    fresh, so espeak-ng starts clean either way)."""
    jobs = json.load(sys.stdin)
    if len(jobs) > 1 and not hasattr(os, "fork"):
        raise SystemExit("several jobs per worker need os.fork")
    # Warm the imports once so each forked child starts synthesizing at once.
    import numpy  # noqa: F401
    import soundfile  # noqa: F401
    import soxr  # noqa: F401
    for job in jobs:
        result = _run_job(job) if len(jobs) == 1 else _run_job_in_child(job)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def _balanced_groups(jobs: list[dict], n: int, cost) -> list[list[dict]]:
    """Split jobs into n groups of similar total cost (longest first onto the lightest group)."""
    groups: list[list[dict]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for job in sorted(jobs, key=cost, reverse=True):
        i = loads.index(min(loads))
        groups[i].append(job)
        loads[i] += cost(job)
    return [g for g in groups if g]


def _run_workers(jobs: list[dict], n_workers: int, cost, on_result) -> None:
    """Synthesize ``jobs`` in ``n_workers`` fresh ``python -m w2vtk.corpora.mini`` processes.

    Subprocesses rather than multiprocessing: nothing of the caller's process is inherited (no
    espeak-ng state, no threads, no re-import of the caller's ``__main__``).  Without os.fork each
    job gets its own process, at most ``n_workers`` at a time.
    """
    import queue
    import subprocess
    import tempfile
    import threading

    if hasattr(os, "fork"):
        pending = _balanced_groups(jobs, n_workers, cost)
    else:  # pragma: no cover - Windows
        pending = [[job] for job in jobs]
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH"))
                                          if p))
    results: queue.Queue = queue.Queue()
    running: list[tuple[subprocess.Popen, object]] = []

    def reader(proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            results.put(("result", json.loads(line)))
        results.put(("exit", proc))

    def launch(group: list[dict]) -> None:
        errlog = tempfile.TemporaryFile()
        proc = subprocess.Popen([sys.executable, "-m", "w2vtk.corpora.mini"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=errlog, env=env, text=True)
        running.append((proc, errlog))
        threading.Thread(target=reader, args=(proc,), daemon=True).start()
        proc.stdin.write(json.dumps(group))
        proc.stdin.close()

    error: str | None = None
    try:
        while pending and len(running) < n_workers:
            launch(pending.pop(0))
        alive = len(running)
        while alive:
            kind, item = results.get()
            if kind == "result":
                if "error" in item:
                    error = error or item["error"]
                else:
                    on_result(item)
                continue
            alive -= 1
            proc = item
            errlog = next(e for p, e in running if p is proc)
            if proc.wait() != 0 and error is None:
                errlog.seek(0)
                tail = errlog.read().decode(errors="replace").strip().splitlines()
                error = f"mini synthesis worker failed (exit {proc.returncode}): " + \
                    (tail[-1] if tail else "no message")
            if error is None and pending:
                launch(pending.pop(0))
                alive += 1
            if error is not None:
                break
    finally:
        for proc, errlog in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            errlog.close()
    if error is not None:
        raise W2vtkError(error)


def _manifest(minutes: float, seed: int, speakers: int, lm_sentences: int, held_speakers: int,
              held_minutes: float | None) -> dict:
    return {"format": MINI_FORMAT, "minutes": minutes, "seed": seed, "speakers": speakers,
            "held_speakers": held_speakers, "held_minutes": held_minutes,
            "lm_sentences": lm_sentences, "sample_rate": SAMPLE_RATE}


def synthesize_corpus(corpus_dir: str | Path, minutes: float = 20.0, seed: int = 0, *,
                      speakers: int | None = None, lm_sentences: int = DEFAULT_LM_SENTENCES,
                      held_speakers: int | None = None, held_minutes: float | None = None,
                      workers: int | None = None) -> Path:
    """Write the mini corpus in the LibriSpeech layout under ``corpus_dir``; returns ``corpus_dir``.

    A finished corpus (``.done`` written last) with the same settings is reused; finished chapters
    of an interrupted run are kept; a corpus made with other settings is refused.
    """
    corpus_dir = Path(corpus_dir)
    plan = plan_mini(minutes, seed, speakers=speakers, lm_sentences=lm_sentences,
                     held_speakers=held_speakers, held_minutes=held_minutes)
    n_held = sum(1 for spk in plan.speakers if spk.subset == "dev")
    wanted = _manifest(minutes, seed, len(plan.speakers), lm_sentences, n_held, held_minutes)
    manifest_path = corpus_dir / "mini.json"
    done_path = corpus_dir / ".done"
    if manifest_path.exists():
        try:
            found = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # unreadable, not JSON, nested too deeply
            found = None
        if not isinstance(found, dict) or {k: found.get(k) for k in wanted} != wanted:
            keys = ("minutes", "seed", "speakers", "held_speakers", "held_minutes", "lm_sentences")
            have = ", ".join(f"{k} {found.get(k)}" for k in keys) if isinstance(found, dict) \
                else "unreadable"
            raise W2vtkError(f"{corpus_dir} holds a mini corpus made with other settings ({have}; "
                             f"{manifest_path}); use another --corpus-dir or delete it")
        if done_path.exists():
            return corpus_dir
    corpus_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest_path, json.dumps(wanted, indent=1) + "\n")
    root = corpus_dir / "LibriSpeech"
    jobs = []
    for spk in plan.speakers:
        chapter_dir = root / spk.subset / str(spk.reader) / str(spk.chapter)
        if (chapter_dir / f"{spk.speaker_id}.trans.txt").exists():
            continue
        jobs.append({"speaker": asdict(spk), "speaker_id": spk.speaker_id,
                     "chapter_dir": str(chapter_dir), "seed": seed,
                     "utterances": plan.utterances[spk.speaker_id]})
    if jobs:
        n_workers = max(1, min(workers or _default_workers(), len(jobs)))
        planned = {spk.speaker_id: sum(estimate_seconds(t, spk.rate)
                                       for _, t in plan.utterances[spk.speaker_id])
                   for spk in plan.speakers}
        total = sum(planned[job["speaker_id"]] for job in jobs)
        versions = set()
        with progress("synthesize mini", total=total, unit="audio-s") as bar:
            def on_result(result: dict) -> None:
                versions.add(result["espeak_ng"])
                bar.advance(planned[result["speaker_id"]])

            _run_workers(jobs, n_workers, lambda job: planned[job["speaker_id"]], on_result)
        wanted["espeak_ng"] = sorted(versions)[0]
    import soundfile as sf

    minutes_of: dict[str, float] = {}
    for spk in plan.speakers:
        chapter_dir = root / spk.subset / str(spk.reader) / str(spk.chapter)
        minutes_of[spk.speaker_id] = sum(sf.info(str(chapter_dir / f"{utt}.flac")).duration
                                         for utt, _ in plan.utterances[spk.speaker_id]) / 60.0
    speakers_txt = ["; w2vtk mini corpus: synthesized speakers (espeak-ng voice in NAME)",
                    ";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for spk in sorted(plan.speakers, key=lambda s: s.reader):
        speakers_txt.append(f"{spk.reader:<5}| {spk.gender.upper()} | {spk.subset:<17}| "
                            f"{minutes_of[spk.speaker_id]:5.2f} | {spk.voice} "
                            f"rate {spk.rate} pitch {spk.pitch}")
    atomic_write_text(root / "SPEAKERS.TXT", "\n".join(speakers_txt) + "\n")
    atomic_write_text(corpus_dir / "librispeech-lm-norm.txt",
                      "".join(f"{s}\n" for s in plan.lm_sentences))
    atomic_write_text(done_path, json.dumps(wanted, indent=1) + "\n")
    return corpus_dir


def synthesize_mini(out_dir: str | Path, minutes: float = 20.0, seed: int = 0,
                    corpus_dir: str | Path | None = None, *, speakers: int | None = None,
                    lm_sentences: int = DEFAULT_LM_SENTENCES, held_speakers: int | None = None,
                    held_minutes: float | None = None, workers: int | None = None,
                    quiet: bool = False) -> Path:
    """Synthesize (or reuse) the mini corpus and prepare ``train``, ``dev``, ``test`` in ``out_dir``.

    Args:
        out_dir: data root to write: ``out_dir/{train,dev,test}`` Kaldi data dirs (16 kHz FLAC in
            wav.scp, speaker = reader-chapter) and ``out_dir/local/lm_text.txt``.
        minutes: total audio, about (planned from an estimate of espeak-ng's speaking rate).
        seed: fixes speakers, sentences and audio (byte-identical FLAC for the same seed).
        corpus_dir: where the LibriSpeech-layout corpus goes; default ``out_dir/corpus``.
        speakers: number of pseudo-speakers; default max(6, round(0.8 * minutes)).
        held_speakers: speakers in each of dev and test (default about an eighth of all); their
            espeak-ng voices are never train voices.
        held_minutes: minutes in each of dev and test (default: every speaker the same share).
        lm_sentences: extra grammar sentences for the LM text (none equals a corpus sentence).
        workers: synthesis processes; default the usable CPU cores.
    Returns:
        ``out_dir`` (the prepared data root).
    """
    out_dir = Path(out_dir)
    corpus_dir = Path(corpus_dir) if corpus_dir is not None else out_dir / "corpus"
    synthesize_corpus(corpus_dir, minutes, seed, speakers=speakers, lm_sentences=lm_sentences,
                      held_speakers=held_speakers, held_minutes=held_minutes, workers=workers)
    prepare_librispeech(corpus_dir, out_dir, subsets=list(SUBSETS), speaker="reader-chapter",
                        quiet=quiet, corpus_name="mini")
    return out_dir


if __name__ == "__main__":
    _worker_main()
