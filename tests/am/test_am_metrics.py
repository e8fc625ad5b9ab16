
from w2vtk.am.data import ctc_min_frames, epoch_order, make_batches
from w2vtk.am.metrics import DevScorer
from w2vtk.tokens import ctc_collapse
from w2vtk.tokens import build_lang


def test_greedy_collapses_repeats_then_drops_blanks():
    assert ctc_collapse([0, 3, 3, 0, 3, 4, 4, 0, 0]) == [3, 3, 4]
    assert ctc_collapse([]) == []


def test_ctc_min_frames_counts_repeats():
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8
    assert ctc_min_frames([]) == 0


def test_letter_scorer_ler_and_wer(tmp_path):
    (tmp_path / "text").write_text("u1 the cat\n")
    tokens = build_lang(tmp_path / "text", tmp_path / "lang", "letters")
    s = DevScorer(tokens)
    s.add(tokens.encode("the cat"), tokens.encode("the bat"))
    t = s.totals()
    assert t["LER"].errors == 1 and t["LER"].ref_len == 7  # t h e | c a t
    assert t["WER"].errors == 1 and t["WER"].ref_len == 2


def test_phone_scorer_folds_to_39(tmp_path):
    (tmp_path / "text").write_text("u1 sil ao cl b\n")
    tokens = build_lang(tmp_path / "text", tmp_path / "lang", "phones", phone_set=48)
    s = DevScorer(tokens)
    assert s.unit_name == "PER"
    # ao == aa and cl == vcl == sil after folding to 39: no error
    s.add(tokens.encode("sil ao cl b"), tokens.encode("sil aa vcl b"))
    t = s.totals()
    assert t == {"PER": t["PER"]} and t["PER"].errors == 0 and t["PER"].ref_len == 4
    s.add(tokens.encode("b"), tokens.encode("d"))
    assert s.totals()["PER"].errors == 1


def test_batches_respect_budget_and_cover_everything():
    frames = {f"u{i}": 10 + 7 * i for i in range(20)}
    batches = make_batches(list(frames), frames, max_frames=200, max_utts=4)
    assert sorted(u for b in batches for u in b) == sorted(frames)
    for b in batches:
        assert len(b) <= 4 and (len(b) == 1 or max(frames[u] for u in b) * len(b) <= 200)
    order = epoch_order(len(batches), seed=1, epoch=2, world_size=2, multiple=3)
    assert len(order) % 6 == 0 and set(order) == set(range(len(batches)))
    assert order == epoch_order(len(batches), seed=1, epoch=2, world_size=2, multiple=3)
    assert order != epoch_order(len(batches), seed=1, epoch=3, world_size=2, multiple=3)


def test_sortagrad_takes_the_first_epochs_shortest_first_then_shuffles():
    frames = {f"u{i:02d}": 500 - 20 * i for i in range(20)}  # ids in the opposite order to lengths
    batches = make_batches(list(frames), frames, max_frames=400, max_utts=2)
    lengths = [max(frames[u] for u in b) for b in batches]
    assert lengths == sorted(lengths)  # make_batches' order is shortest first
    for epoch in (1, 2):
        order = epoch_order(len(batches), seed=1, epoch=epoch, world_size=2, multiple=1, sortagrad=2)
        assert order == list(range(len(batches)))  # already a multiple of 2: no wrap-around
    shuffled = epoch_order(len(batches), seed=1, epoch=3, world_size=2, multiple=1, sortagrad=2)
    assert shuffled == epoch_order(len(batches), seed=1, epoch=3, world_size=2, multiple=1)
    assert shuffled != list(range(len(batches)))
    assert epoch_order(len(batches), seed=1, epoch=50, world_size=1, multiple=1, sortagrad=-1) == list(range(len(batches)))
    # a world size that does not divide the batches wraps around in sorted order too
    assert epoch_order(5, seed=1, epoch=1, world_size=2, multiple=1, sortagrad=1) == [0, 1, 2, 3, 4, 0]


def test_sortagrad_below_minus_one_is_refused():
    import pytest

    from w2vtk.am.config import TrainAMConfig
    from w2vtk.config import load_config
    from w2vtk.errors import W2vtkError

    with pytest.raises(W2vtkError, match="sortagrad"):
        load_config(TrainAMConfig, None, ["sortagrad=-2"])
