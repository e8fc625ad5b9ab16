"""Restricted evaluator for fairseq layer-spec expressions."""

import pytest

from w2vtk.errors import W2vtkError
from w2vtk.models.layer_spec import format_layer_spec, parse_layer_spec


@pytest.mark.parametrize("text, expected", [
    ("[(512, 3, 1)] * 9", [(512, 3, 1)] * 9),
    ("[(512, 10, 5)] + [(512, 4, 2)] * 3", [(512, 10, 5)] + [(512, 4, 2)] * 3),
    ("[(64, 10, 5), (64, 8, 4)] + [(64, 4, 2)] * 3", [(64, 10, 5), (64, 8, 4)] + [(64, 4, 2)] * 3),
    ("[(512, 10, 5)] + [(512, 8, 4)] + [(512, 4, 2)] * 3", [(512, 10, 5), (512, 8, 4)] + [(512, 4, 2)] * 3),
    ("3 * [(1, 2, 1)]", [(1, 2, 1)] * 3),
    ("([(1, 2, 1)] + [(4, 5, 1)]) * 2", [(1, 2, 1), (4, 5, 1)] * 2),
    ("[(512, 2, 1), (512, 3, 1), (512, 4, 1)]", [(512, 2, 1), (512, 3, 1), (512, 4, 1)]),
    ("  [[8, 3, 1]]  ", [(8, 3, 1)]),
])
def test_accepts_real_expressions(text, expected):
    assert parse_layer_spec(text) == expected


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch /tmp/w2vtk_pwned')",
    "[(512.0, 3, 1)]",
    "[(512, 3, 1)] * 'x'",
    "[(512, 3, 1)] * 2.0",
    "[(512, 3, 1)] ** 2",
    "[(512, 3, 1)] - [(512, 3, 1)]",
    "[(n, 3, 1) for n in range(3)]",
    "[(512, 3, 1)] * 10**9",
    "[(512, 3, 1)] * 100000",
    "[(512, 3)]",
    "[(512, 3, 0)]",
    "[(512, 3, -1)]",
    "[(True, 3, 1)]",
    "[]",
    "x",
    "[(512, 3, 1)] + 1",
    "[(512, 3, 1)",
    "open('/etc/passwd')",
    "().__class__",
])
def test_rejects_everything_else(text):
    with pytest.raises(W2vtkError, match="layer spec"):
        parse_layer_spec(text, where="conv_aggregator_layers")


def test_error_names_field_and_format_round_trip():
    with pytest.raises(W2vtkError, match="ckpt.pt: conv_feature_layers"):
        parse_layer_spec("eval('1')", where="ckpt.pt: conv_feature_layers")
    layers = [(512, 10, 5), (512, 8, 4), (512, 1, 1)]
    assert format_layer_spec(layers) == "[(512, 10, 5), (512, 8, 4), (512, 1, 1)]"
    assert parse_layer_spec(format_layer_spec(layers)) == layers
    assert parse_layer_spec([[1, 2, 3]]) == [(1, 2, 3)]
