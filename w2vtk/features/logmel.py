"""The paper's baseline features: 80 log-mel filterbank coefficients, 25 ms window, 10 ms shift.

Computed with kaldi-native-fbank (a maintained re-implementation of Kaldi's ``compute-fbank-feats``)
with every option that matters set explicitly, because several of its defaults differ from what the
paper's baseline needs (23 bins, dither 3e-5 which makes the output random).

The waveform is scaled to the 16-bit integer range first (float in [-1, 1] * 32768), as Kaldi reads
WAV samples, so the numbers match ``compute-fbank-feats --num-mel-bins=80 --dither=0`` on the same
16-bit file.

Frame count for L samples (snip_edges): 1 + (L - 400) // 160 when L >= 400, else 0.  This is one frame
more than wav2vec's c for most lengths (150000 samples: 936 log-mel frames, 935 c frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from w2vtk.errors import W2vtkError

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # samples (25 ms at 16 kHz)
FRAME_SHIFT = 160  # samples (10 ms)
INT16_SCALE = 32768.0


@dataclass(frozen=True)
class LogMelConfig:
    """Filterbank options; the names are Kaldi's ``compute-fbank-feats`` options."""

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0  # 0 = deterministic; > 0 adds seeded Gaussian noise (see logmel())
    preemphasis_coefficient: float = 0.97
    window_type: str = "povey"
    snip_edges: bool = True
    remove_dc_offset: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0  # 0 = Nyquist
    use_energy: bool = False
    sample_frequency: float = SAMPLE_RATE


def logmel_num_frames(num_samples: int) -> int:
    """Frames produced for ``num_samples`` samples at 16 kHz (25 ms window, 10 ms shift, snip_edges)."""
    if num_samples < FRAME_LENGTH:
        return 0
    return 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def _fbank_options(cfg: LogMelConfig):
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    fo = opts.frame_opts
    fo.samp_freq = float(cfg.sample_frequency)
    fo.frame_length_ms = float(cfg.frame_length_ms)
    fo.frame_shift_ms = float(cfg.frame_shift_ms)
    # Dither is applied by logmel() itself with a seeded generator; knf's own is unseeded.
    fo.dither = 0.0
    fo.preemph_coeff = float(cfg.preemphasis_coefficient)
    fo.remove_dc_offset = bool(cfg.remove_dc_offset)
    fo.window_type = cfg.window_type
    fo.round_to_power_of_two = True
    fo.snip_edges = bool(cfg.snip_edges)
    mo = opts.mel_opts
    mo.num_bins = int(cfg.num_mel_bins)
    mo.low_freq = float(cfg.low_freq)
    mo.high_freq = float(cfg.high_freq)
    # Kaldi's mel scale and triangles, not librosa/HTK variants.
    mo.htk_mode = False
    mo.is_librosa = False
    opts.use_energy = bool(cfg.use_energy)
    opts.use_log_fbank = True
    opts.use_power = True
    return opts


def logmel(wave: np.ndarray, cfg: LogMelConfig = LogMelConfig(), *, seed: int = 0, name: str = "") -> np.ndarray:
    """Log-mel filterbank of one utterance.

    wave: (T,) float samples at 16 kHz in [-1, 1].  Returns (T', num_mel_bins) float32 frames at 100 Hz,
    T' = logmel_num_frames(T) (0 rows when T < 400).

    With ``cfg.dither > 0``, Gaussian noise of standard deviation ``dither`` (in 16-bit units, as Kaldi)
    drawn from ``numpy.random.default_rng(seed)`` is added to the waveform before framing, so the output
    is reproducible.  (Kaldi adds fresh noise per frame; here overlapping frames share the noise.)
    Samples so large that the energies overflow (finite but absurd, e.g. a float header over other
    data) are a W2vtkError naming ``name``, never NaN / Inf features.
    """
    import kaldi_native_fbank as knf

    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    n_frames = logmel_num_frames(wave.shape[0])
    if n_frames == 0:
        return np.zeros((0, cfg.num_mel_bins), dtype=np.float32)
    x = wave * np.float32(INT16_SCALE)
    if cfg.dither > 0:
        rng = np.random.default_rng(seed)
        x = x + rng.standard_normal(x.shape[0]).astype(np.float32) * np.float32(cfg.dither)
    fb = knf.OnlineFbank(_fbank_options(cfg))
    try:
        fb.accept_waveform(float(cfg.sample_frequency), x)
        fb.input_finished()
        ready = fb.num_frames_ready
        out = np.empty((ready, cfg.num_mel_bins), dtype=np.float32)
        for i in range(ready):
            out[i] = fb.get_frame(i)
    except RuntimeError as err:  # kaldi-native-fbank: "mel energy is nan" when energies overflow
        who = f"utterance {name}" if name else "log-mel"
        raise W2vtkError(f"{who}: log-mel energies are NaN or Inf ({err}); the samples reach "
                         f"{float(np.max(np.abs(wave))):.3g}, audio is expected in [-1, 1]") from None
    return out


class LogMelExtractor:
    """The driver's view of log-mel (see :class:`w2vtk.features.extract.FeatureExtractor`).

    With dither, each utterance's noise is seeded by ``seed`` and a CRC of its id, so the output does
    not depend on batching, sharding or the number of processes.
    """

    feature_type = "logmel"

    def __init__(self, cfg: LogMelConfig = LogMelConfig(), seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        self.dim = cfg.num_mel_bins
        self.min_samples = int(round(cfg.sample_frequency * cfg.frame_length_ms / 1000))

    def num_frames(self, num_samples: int) -> int:
        return logmel_num_frames(num_samples)

    def extract(self, batch: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        import zlib

        return [logmel(w, self.cfg, seed=(self.seed * 1_000_003 + zlib.crc32(u.encode("utf-8"))) % (2**63),
                       name=u)
                for u, w in batch]

    def provenance(self) -> dict:
        import dataclasses

        from importlib.metadata import version

        return {"implementation": f"kaldi-native-fbank {version('kaldi-native-fbank')}",
                "waveform_scale": INT16_SCALE, "dither_seed": self.seed,
                "logmel": dataclasses.asdict(self.cfg)}
