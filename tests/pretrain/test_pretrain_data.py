"""Pre-training data: sources, too-short filtering, the global batch plan, seeded crops, bad audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from w2vtk.sources import read_manifest
from w2vtk.errors import W2vtkError
from w2vtk.models.wav2vec import BASE_FEATURE_LAYERS, num_frames, preset
from w2vtk.pretrain import load_pretrain_config
from w2vtk.pretrain.data import (CropDataset, MicroBatch, TrainSampler, crop_offset, minimum_samples,
                                 plan_batches, read_utterances)
from w2vtk.pretrain.trainer import prepare_data


def test_minimum_samples_is_the_shortest_length_with_a_positive_for_every_step():
    n = minimum_samples(BASE_FEATURE_LAYERS, 3, 12)
    assert n == 2705  # 465 + 14 * 160
    assert num_frames(n) == 15 and num_frames(n - 1) == 14


def test_sources_data_dir_wav_scp_audio_dir_and_manifest_agree(audio_set, tmp_path):
    from_dir = read_utterances(audio_set)
    assert [u.utt_id for u in from_dir][:2] == ["utt00", "utt01"]
    assert from_dir[0].num_samples == 16000
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"{u.utt_id} {u.spec}\n" for u in from_dir))
    assert [(u.utt_id, u.num_samples) for u in read_utterances(data)] == \
        [(u.utt_id, u.num_samples) for u in from_dir]
    assert [u.utt_id for u in read_utterances(data / "wav.scp")] == [u.utt_id for u in from_dir]
    manifest = tmp_path / "train.tsv"
    manifest.write_text(f"{audio_set}\n" + "".join(f"{Path(u.spec).name}\t{u.num_samples}\n" for u in from_dir))
    got = read_manifest(manifest)
    assert [(u.utt_id, u.num_samples) for u in got] == [(u.utt_id, u.num_samples) for u in from_dir]
    np.testing.assert_array_equal(got[3].load(), from_dir[3].load())


@pytest.mark.parametrize("text, fragment", [
    ("", "empty manifest"),
    ("/root\nfoo.wav\n", "train.tsv:2: expected"),
    ("/root\nfoo.wav\tmany\n", "train.tsv:2: number of samples 'many'"),
    ("/root\na.wav\t10\na.wav\t10\n", "train.tsv:3: duplicate"),
])
def test_bad_manifest_lines_are_named(tmp_path, text, fragment):
    path = tmp_path / "train.tsv"
    path.write_text(text)
    with pytest.raises(W2vtkError, match=fragment):
        read_manifest(path)


def test_too_short_utterances_are_skipped_and_counted(audio_set):
    cfg = load_pretrain_config(None, ["model.preset=base", "data.max_tokens=100000", "data.max_sample_size=16000"])
    summary = prepare_data(audio_set, cfg, num_slots=1, what="training")
    assert summary.found == 9 and summary.used == 8 and summary.skipped_short == 1
    assert all(u.num_samples >= 2705 for u in summary.utterances)
    cfg = load_pretrain_config(None, ["data.min_sample_size=40000", "data.max_tokens=100000"])
    with pytest.raises(W2vtkError, match="all 9 training utterances are shorter than 40000 samples"):
        prepare_data(audio_set, cfg, num_slots=1, what="training")


def test_empty_data_dir_is_an_error(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "wav.scp").write_text("")
    with pytest.raises(W2vtkError):
        read_utterances(tmp_path / "d")
    (tmp_path / "e").mkdir()
    with pytest.raises(W2vtkError, match="no audio files"):
        read_utterances(tmp_path / "e")


def test_plan_respects_budget_and_crops_to_shortest():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(3000, 200000, size=300)]
    for slots in (1, 2, 4):
        plan = plan_batches(lengths, max_tokens=400000, max_sample_size=150000, num_slots=slots)
        seen = sorted(i for gb in plan for i in gb.utts)
        assert seen == list(range(len(lengths)))  # every utterance exactly once per epoch
        for gb in plan:
            assert gb.crop == min(150000, min(lengths[i] for i in gb.utts))
            for s in range(slots):
                assert len(gb.slot(s, slots)) * gb.crop <= 400000  # per-GPU budget in samples
    with pytest.raises(W2vtkError, match="max_tokens=1000 samples per GPU is smaller than one crop"):
        plan_batches(lengths, max_tokens=1000, max_sample_size=150000, num_slots=1)


def test_global_batches_do_not_depend_on_how_slots_are_split_over_processes():
    lengths = list(range(20000, 20000 + 37 * 997, 997))
    plan = plan_batches(lengths, max_tokens=70000, max_sample_size=32000, num_slots=4)

    def per_step(world, freq):
        out = {}
        for rank in range(world):
            it = iter(TrainSampler(plan, seed=3, rank=rank, world_size=world, update_freq=freq))
            for _ in range(3 * len(plan) * freq):
                mb = next(it)
                if not mb.dummy:
                    out.setdefault(mb.step, set()).update(mb.utts)
                    assert mb.crop == plan_crop(mb.step)
        return out

    def plan_crop(step):
        return TrainSampler(plan, seed=3, rank=0, world_size=1, update_freq=4).global_batch(step).crop

    reference = per_step(1, 4)
    assert per_step(2, 2) == reference == per_step(4, 1)
    # epochs reshuffle the order of global batches
    first = [min(reference[s]) for s in range(len(plan))]
    second = [min(reference[s]) for s in range(len(plan), 2 * len(plan))]
    assert sorted(first) == sorted(second) and first != second


def test_crops_and_negatives_are_seeded_by_step_and_utterance(audio_set):
    utts = read_utterances(audio_set)[:8]
    cfg = preset("base")
    ds = CropDataset(utts, seed=5, num_negatives=10, conv_feature_layers=cfg.conv_feature_layers)
    a = ds[MicroBatch(step=7, slot=0, crop=8000, utts=(2, 5))]
    b = ds[MicroBatch(step=7, slot=3, crop=8000, utts=(5,))]
    assert a["wave"].shape == (2, 8000) and a["neg_idx"].shape == (2, 10, num_frames(8000))
    np.testing.assert_array_equal(a["wave"][1].numpy(), b["wave"][0].numpy())   # same utt, same step
    np.testing.assert_array_equal(a["neg_idx"][1].numpy(), b["neg_idx"][0].numpy())
    c = ds[MicroBatch(step=8, slot=0, crop=8000, utts=(5,))]
    assert not np.array_equal(a["wave"][1].numpy(), c["wave"][0].numpy())         # new step, new crop
    # the crop is a contiguous piece of the utterance at the seeded offset
    full = utts[5].load()
    off = crop_offset(utts[5].num_samples, 8000, 5, "train", 7, 5)
    np.testing.assert_array_equal(a["wave"][1].numpy(), full[off:off + 8000])
    # negatives never point at the target frame
    T = num_frames(8000)
    assert not (a["neg_idx"] == np.arange(T)).any()


def test_corrupt_audio_is_one_clean_error(tmp_path, audio_set):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    (bad / "wav.scp").write_text(f"x {bad / 'x.wav'}\n")
    with pytest.raises(W2vtkError, match="x"):
        read_utterances(bad)
    # a file that is fine at planning time but broken when loaded: the dataset reports one line
    utts = read_utterances(audio_set)[:2]
    utts[1].spec = str(bad / "x.wav")
    out = CropDataset(utts, seed=0)[MicroBatch(0, 0, 8000, (0, 1))]
    assert set(out) == {"error"} and "utt01" in out["error"] and "\n" not in out["error"]
