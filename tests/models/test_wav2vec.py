"""wav2vec model: presets, frame arithmetic, padding-aware (exact) batching, per-layer pieces."""

import pytest
import torch
import torch.nn.functional as F

from w2vtk.config import from_dict, to_dict
from w2vtk.errors import W2vtkError
from w2vtk.models.wav2vec import (Wav2VecConfig, Wav2VecModel, auto_offset, count_parameters,
                                  frame_lengths, moments_from_sums, num_frames, parse_layer_name,
                                  preset, receptive_field)


def small_cfg(**kw) -> Wav2VecConfig:
    base = dict(conv_feature_layers=[(24, 10, 5), (24, 8, 4)] + [(24, 4, 2)] * 3 + [(24, 1, 1)] * 2,
                conv_aggregator_layers=[(24, k, 1) for k in range(2, 7)],
                skip_connections_agg=True, log_compression=True, prediction_steps=4, num_negatives=3)
    base.update(kw)
    return Wav2VecConfig(**base)


def test_large_preset_is_the_released_shape():
    cfg = preset("large")
    assert len(cfg.conv_feature_layers) == 7 and cfg.conv_feature_layers[-2:] == [(512, 1, 1)] * 2
    assert [k for _, k, _ in cfg.conv_aggregator_layers] == list(range(2, 14))
    assert cfg.skip_connections_agg and cfg.log_compression and cfg.residual_scale == 0.5
    assert count_parameters(Wav2VecModel(cfg)) == 32_537_088  # "32.5M" of the paper / release


def test_base_preset():
    cfg = preset("base")
    assert cfg.conv_feature_layers == [(512, 10, 5), (512, 8, 4)] + [(512, 4, 2)] * 3
    assert cfg.conv_aggregator_layers == [(512, 3, 1)] * 9
    assert not cfg.skip_connections_agg and not cfg.log_compression
    assert cfg.resolved_offset == 3 and cfg.num_negatives == 10 and cfg.prediction_steps == 12
    with pytest.raises(W2vtkError, match="unknown wav2vec preset"):
        preset("huge")


def test_frame_formula():
    assert num_frames(16000) == 98
    assert num_frames(150000) == 935
    assert num_frames(464) == 0 and num_frames(465) == 1 and num_frames(0) == 0
    assert receptive_field() == (465, 160)
    assert auto_offset() == 3 and auto_offset(preset("large").conv_feature_layers) == 3
    lengths = torch.tensor([0, 100, 464, 465, 624, 625, 16000, 150000, 150159, 150160])
    got = frame_lengths(lengths, preset("base").conv_feature_layers).tolist()
    assert got == [num_frames(int(n)) for n in lengths]
    # The real network agrees with the formula.
    model = Wav2VecModel(small_cfg()).eval()
    for n in (465, 624, 625, 1234, 5000):
        with torch.no_grad():
            assert model(torch.randn(1, n)).z.shape[-1] == num_frames(n, model.cfg.conv_feature_layers)


def test_too_short_audio_is_a_clear_error():
    model = Wav2VecModel(small_cfg()).eval()
    with pytest.raises(W2vtkError, match="shorter than the model's receptive field"):
        model(torch.zeros(1, 400))


@pytest.mark.parametrize("norm, padded", [("group", "masked"), ("channel", "masked"), ("group", "loop"),
                                          ("group", "auto")])
def test_batched_equals_one_at_a_time(norm, padded):
    torch.manual_seed(0)
    model = Wav2VecModel(small_cfg(norm=norm)).eval()
    lengths = [6000, 4001, 2500, 465]
    wave = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wave[i, :n] = 0.3 * torch.randn(n)
        wave[i, n:] = 5.0  # padding content must not matter
    with torch.no_grad():
        batch = model(wave, torch.tensor(lengths), return_layers=True, padded=padded)
        for i, n in enumerate(lengths):
            one = model(wave[i:i + 1, :n], return_layers=True)
            frames = one.z.shape[-1]
            assert int(batch.lengths[i]) == frames == num_frames(n, model.cfg.conv_feature_layers)
            assert torch.allclose(batch.z[i, :, :frames], one.z[0], atol=1e-4, rtol=0)
            assert torch.allclose(batch.c[i, :, :frames], one.c[0], atol=1e-4, rtol=0)
            for layer_b, layer_1 in zip(batch.layers, one.layers):
                assert torch.allclose(layer_b[i, :, :frames], layer_1[0], atol=1e-4, rtol=0)
            assert (batch.c[i, :, frames:] == 0).all() and (batch.z[i, :, frames:] == 0).all()
    # Training (autograd) on a padded batch takes the masked path and matches too.
    if padded == "auto":
        grad_batch = model(wave, torch.tensor(lengths))
        assert torch.allclose(grad_batch.c.detach(), batch.c, atol=1e-4)
    # Without lengths the padding does change the numbers (the reason for the masked path).
    with torch.no_grad():
        unmasked = model(wave).c[3, :, :1]
    assert not torch.allclose(unmasked, batch.c[3, :, :1], atol=1e-3)


def test_extract_layers():
    model = Wav2VecModel(small_cfg()).eval()
    wave = torch.randn(2, 4000)
    with torch.no_grad():
        out = model(wave, return_layers=True)
        c, n = model.extract(wave, layer="c")
        z, _ = model.extract(wave, layer="z")
        l2, _ = model.extract(wave, layer="context-2")
        last, _ = model.extract(wave, layer="context-5")
    assert c.shape == (2, out.c.shape[-1], 24) and n.tolist() == [out.c.shape[-1]] * 2
    assert torch.equal(c, out.c.transpose(1, 2)) and torch.equal(z, out.z.transpose(1, 2))
    assert torch.equal(l2, out.layers[1].transpose(1, 2)) and torch.equal(last, c)
    for bad in ("context-0", "context-6", "context-x", "h"):
        with pytest.raises(W2vtkError, match="--layer"):
            parse_layer_name(bad, 5)


def test_layer_pieces_match_forward_and_chunked_sums_are_exact():
    """The documented per-layer API: pre_norm -> norm; float64 sums over chunks == whole."""
    torch.manual_seed(1)
    model = Wav2VecModel(small_cfg()).eval()
    wave = torch.randn(1, 9000)
    with torch.no_grad():
        ref = model(wave, return_layers=True)
        x = wave.unsqueeze(1)
        for layer in model.encoder.layers:
            x = layer.norm(layer.pre_norm(x))
        x = torch.log1p(x)
        assert torch.equal(x, ref.z)
        layer = model.context.layers[3]
        h = layer.pre_norm(ref.layers[2])
        T = h.shape[-1]
        parts = [layer.norm.sums(h[..., :20]), layer.norm.sums(h[..., 20:])]
        count, total, total_sq = (parts[0][i] + parts[1][i] for i in range(3))
        assert int(count[0, 0]) == T * h.shape[1]
        mean, var = moments_from_sums(count, total, total_sq)
        y = layer.norm.normalize(h, mean, var)
        assert torch.allclose(y, layer.norm(h), atol=1e-5)
        assert torch.allclose(model.context.residual(3, ref.layers[2], y), ref.layers[3], atol=1e-5)
        # A later chunk with its true left context gives the same pre-norm frames.
        k1 = layer.left_pad
        tail = layer.pre_norm(ref.layers[2][..., 20:], left_context=ref.layers[2][..., 20 - k1:20])
        assert torch.allclose(tail, h[..., 20:], atol=1e-5)


def test_project_steps_is_fairseqs_conv_transpose():
    torch.manual_seed(2)
    model = Wav2VecModel(small_cfg())
    c = torch.randn(2, 24, 17)
    got = model.project_steps(c)                               # (B, T, K, C)
    want = model.step_proj(c.unsqueeze(-1))                     # (B, C, T, K) fairseq's way
    assert got.shape == (2, 17, 4, 24)
    assert torch.allclose(got, want.permute(0, 2, 3, 1), atol=1e-5)


def test_train_mode_backward_and_dropout():
    model = Wav2VecModel(small_cfg(dropout=0.1, dropout_features=0.1, dropout_agg=0.1)).train()
    out = model(torch.randn(2, 5000))
    loss = out.c.square().mean() + model.project_steps(out.c).mean() + out.z.mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_config_round_trip_and_validation():
    cfg = preset("large")
    again = from_dict(Wav2VecConfig, to_dict(cfg))
    assert again == cfg
    assert from_dict(Wav2VecConfig, {"offset": 2}).resolved_offset == 2
    with pytest.raises(W2vtkError, match="stride"):
        Wav2VecModel(Wav2VecConfig(conv_aggregator_layers=[(512, 3, 2)]))
    with pytest.raises(W2vtkError, match="cross_sample_negatives"):
        from_dict(Wav2VecConfig, {"cross_sample_negatives": 1})
    with pytest.raises(W2vtkError, match="unknown key"):
        from_dict(Wav2VecConfig, {"num_negative": 1})
    with pytest.raises(W2vtkError, match="norm"):
        from_dict(Wav2VecConfig, {"norm": "layer"})
    with pytest.raises(W2vtkError, match="conv_feature_layers"):
        Wav2VecConfig(conv_feature_layers=[(512, 10)])


def test_model_construction_flushes_denormals():
    torch.set_flush_denormal(False)
    Wav2VecModel(small_cfg())
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert float(tiny * 1.0) == 0.0
    torch.set_flush_denormal(False)


def test_channel_norm_normalises_each_channel():
    model = Wav2VecModel(small_cfg(norm="channel")).eval()
    norm = model.encoder.layers[2].norm
    assert norm.num_groups == 24
    h = torch.randn(1, 24, 50) * torch.arange(1, 25).float()[None, :, None] + 3.0
    with torch.no_grad():
        y = F.group_norm(h, 24, None, None, 1e-5)
        assert torch.allclose(norm(h), torch.relu(y), atol=1e-5)


@pytest.mark.parametrize("groups", [1, 8])
def test_gpu_statistics_path_equals_group_norm_values_and_gradients(groups, monkeypatch):
    """The split-reduction statistics that CUDA uses for few (utterance, group) rows (few_rows_on_gpu),
    run here on CPU: the same outputs and gradients as native group_norm."""
    import w2vtk.models.wav2vec as wav2vec

    norm = wav2vec.MaskedGroupNorm(groups, 8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    h = (torch.randn(3, 8, 50, generator=torch.Generator().manual_seed(0)) * 3 + 1).requires_grad_()
    results = []
    for split in (False, True):
        monkeypatch.setattr(wav2vec, "few_rows_on_gpu", lambda *_a, split=split: split)
        norm.zero_grad()
        h.grad = None
        y = norm(h)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append((y.detach(), h.grad.clone(), norm.weight.grad.clone(), norm.bias.grad.clone()))
    for native, split in zip(*results):
        torch.testing.assert_close(split, native, atol=1e-5, rtol=1e-5)
    assert (results[0][0] > 0).any() and (results[0][0] == 0).any()  # the ReLU is in both
