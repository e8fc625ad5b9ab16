import math

import pytest
import torch

from w2vtk.am.config import TrainAMConfig
from w2vtk.config import load_config
from w2vtk.errors import W2vtkError
from w2vtk.models.am import AMConfig, build_am, output_length


@pytest.mark.parametrize("name,stride,n_convs", [("timit", 1, 8), ("wsj", 2, 17), ("tiny", 1, 4), ("timit_asg", 1, 8),
                                                 ("wsj_asg", 2, 17)])
def test_paper_configs_shapes_and_stride(name, stride, n_convs):
    cfg = load_config(TrainAMConfig, f"conf/am/{name}.yaml")
    for dim in (512, 80):
        model = build_am(cfg.model, dim, 30).eval()
        assert model.stride == stride
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
        assert len(convs) == n_convs  # blocks + the projection
        x = torch.randn(2, 37, dim)
        with torch.no_grad():
            y, lengths = model(x, torch.tensor([37, 20]))
        assert y.shape == (2, math.ceil(37 / stride), 30)
        assert lengths.tolist() == [math.ceil(37 / stride), math.ceil(20 / stride)]
        assert lengths.tolist() == [output_length(37, cfg.model.layers), output_length(20, cfg.model.layers)]


def test_wsj_is_the_lexicon_free_gated_convnet():
    cfg = load_config(TrainAMConfig, "conf/am/wsj.yaml")
    assert [k for _, k, _ in cfg.model.layers] == [13, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7, 7, 9, 9, 9, 1]
    assert [s for _, _, s in cfg.model.layers].count(2) == 1 and cfg.model.layers[7][2] == 2
    model = build_am(cfg.model, 512, 29)
    first, last = model.blocks[0].conv, model.blocks[-1].conv
    assert first.out_channels == 200 and last.out_channels == 1000  # conv widths 200 -> 1000 before GLU
    assert isinstance(model.blocks[0].act, torch.nn.GLU)
    assert hasattr(first, "parametrizations")  # weight norm
    assert model.proj.in_channels == 500 and model.proj.out_channels == 29
    assert cfg.model.dropout == 0.25 and cfg.paper["lr"] == 5.6


def test_timit_blocks():
    cfg = load_config(TrainAMConfig, "conf/am/timit.yaml")
    model = build_am(cfg.model, 512, 40)
    assert len(model.blocks) == 7
    for blk in model.blocks:
        assert blk.conv.kernel_size == (5,) and blk.conv.out_channels == 1000
        assert isinstance(blk.act, torch.nn.PReLU) and blk.drop.p == 0.7
    assert cfg.paper["lr"] == 0.12 and cfg.paper["momentum"] == 0.9 and cfg.paper["batch_size"] == 16


@pytest.mark.parametrize("block,norm", [("conv", "none"), ("glu", "none"), ("conv", "layer"), ("glu", "layer")])
def test_batched_equals_single(block, norm):
    torch.manual_seed(0)
    cfg = AMConfig(block=block, layers=[(24, 5, 1), (24, 7, 2), (24, 3, 1)], dropout=0.0,
                   weight_norm=block == "glu", norm=norm)
    model = build_am(cfg, 10, 7).eval()
    a, b = torch.randn(1, 23, 10), torch.randn(1, 9, 10)
    batch = torch.zeros(2, 23, 10)
    batch[0], batch[1, :9] = a[0], b[0]
    batch[1, 9:] = 100.0  # garbage in the padding must not leak
    with torch.no_grad():
        yb, lb = model(batch, torch.tensor([23, 9]))
        ya, _ = model(a)
        y1, _ = model(b)
    assert lb.tolist() == [12, 5]
    assert torch.allclose(yb[0, :12], ya[0], atol=1e-5)
    assert torch.allclose(yb[1, :5], y1[0], atol=1e-5)


def test_bad_model_configs():
    with pytest.raises(W2vtkError, match="odd"):
        load_config(TrainAMConfig, None, ["model.layers=[[8,4,1]]"])
    with pytest.raises(W2vtkError, match="dropout"):
        load_config(TrainAMConfig, None, ["model.dropout=1.5"])
    with pytest.raises(W2vtkError, match="unknown key"):
        load_config(TrainAMConfig, None, ["model.kernel=3"])
    with pytest.raises(W2vtkError, match="model.norm"):
        load_config(TrainAMConfig, None, ["model.norm=batch"])
    model = build_am(AMConfig(), 10, 5)
    with pytest.raises(W2vtkError, match="expects features"):
        model(torch.randn(1, 5, 11))


def test_layer_norm_normalises_every_frame_and_is_off_by_default():
    """``norm: layer``: each block's conv output is normalised over its channels per frame (so a
    feature scaled by 100 gives the same first-block activations); the default adds no parameters,
    so models trained before the option existed load unchanged."""
    assert AMConfig().norm == "none"
    plain = build_am(AMConfig(layers=[(16, 3, 1)] * 2), 6, 5)
    assert not any("norm" in k for k in plain.state_dict())
    torch.manual_seed(0)
    model = build_am(AMConfig(layers=[(16, 3, 1)] * 2, dropout=0.0, norm="layer"), 6, 5).eval()
    assert sum("norm" in k for k in model.state_dict()) == 4  # weight and bias of 2 LayerNorms
    x = torch.randn(1, 12, 6)
    blk = model.blocks[0]
    conv = blk.conv(x.transpose(1, 2))
    normed = blk.norm(conv.transpose(1, 2))
    assert torch.allclose(normed.mean(-1), torch.zeros(1, 12), atol=1e-5)
    assert torch.allclose(normed.var(-1, unbiased=False), torch.ones(1, 12), atol=1e-3)
    # Bias-free first conv: scaling the input only scales its output, which the LayerNorm removes.
    with torch.no_grad():
        blk.conv.bias.zero_()
        a = blk(x.transpose(1, 2))
        b = blk((100 * x).transpose(1, 2))
    assert torch.allclose(a, b, atol=2e-3)  # up to LayerNorm's eps


@pytest.mark.parametrize("weight_norm", [False, True])
def test_blank_bias_sets_the_blank_output_bias_only(weight_norm):
    """``blank_bias``: the blank's output bias starts at the value (p(blank) ~ e^b / (e^b + V - 1)
    for small weights); the other biases and the weights keep PyTorch's initialisation."""
    torch.manual_seed(0)
    plain = build_am(AMConfig(layers=[(16, 3, 1)], weight_norm=weight_norm), 6, 29)
    torch.manual_seed(0)
    biased = build_am(AMConfig(layers=[(16, 3, 1)], weight_norm=weight_norm, blank_bias=3.0), 6, 29)
    a, b = plain.state_dict(), biased.state_dict()
    assert b["proj.bias"][0] == 3.0 and torch.equal(a["proj.bias"][1:], b["proj.bias"][1:])
    assert all(torch.equal(a[k], b[k]) for k in a if k != "proj.bias")
    x = torch.randn(1, 40, 6)
    with torch.no_grad():
        p_plain = plain.eval()(x)[0].softmax(-1)[0, :, 0].mean()
        p_biased = biased.eval()(x)[0].softmax(-1)[0, :, 0].mean()
    assert p_plain < 0.1 < 0.3 < p_biased
    with pytest.raises(W2vtkError, match="model.blank_bias"):
        load_config(TrainAMConfig, None, ["model.blank_bias=.nan"])


def test_asg_paper_configs_follow_wav2letter():
    wsj = load_config(TrainAMConfig, "conf/am/wsj_asg.yaml")
    assert (wsj.model.criterion, wsj.model.transdiag, wsj.asg_scaling, wsj.asg_surround) == ("asg", 5.0, "target-sqrt", True)
    assert (wsj.optim.name, wsj.optim.lr, wsj.optim.momentum, wsj.optim.clip_norm, wsj.optim.transitions_lr) == \
        ("sgd", 5.6, 0.0, 0.05, 0.008)
    assert wsj.model.layers == load_config(TrainAMConfig, "conf/am/wsj.yaml").model.layers
    timit = load_config(TrainAMConfig, "conf/am/timit_asg.yaml")
    assert (timit.optim.lr, timit.optim.momentum, timit.optim.clip_norm, timit.asg_scaling) == (0.12, 0.9, 1.0, "target-sqrt")
    model = build_am(wsj.model, 512, 32)
    assert model.transitions.shape == (32, 32) and torch.equal(model.transitions.diag(), torch.full((32,), 5.0))
