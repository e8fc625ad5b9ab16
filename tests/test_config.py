from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from w2vtk.config import load_config, parse_overrides, save_config, to_dict
from w2vtk.errors import W2vtkError


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Conf:
    name: str = "x"
    steps: int = 10
    amp: Literal["bf16", "fp16", "none"] = "none"
    layers: list[tuple[int, int, int]] = field(default_factory=lambda: [(512, 10, 5)])
    optim: Optim = field(default_factory=Optim)
    note: Optional[str] = None


def test_defaults_file_and_overrides_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 5.0e-3\nlayers: [[64, 3, 1], [64, 3, 1]]\n")
    cfg = load_config(Conf, path, ["optim.lr=0.1", "amp=bf16", "note=hello"])
    assert cfg.steps == 20
    assert cfg.optim.lr == pytest.approx(0.1)
    assert cfg.optim.betas == (0.9, 0.999)
    assert cfg.layers == [(64, 3, 1), (64, 3, 1)]
    assert cfg.amp == "bf16" and cfg.note == "hello"


def test_round_trip_through_saved_yaml(tmp_path):
    cfg = load_config(Conf, None, ["steps=3", "optim.betas=[0.8, 0.9]"])
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(Conf, tmp_path / "resolved.yaml")
    assert to_dict(again) == to_dict(cfg)


def test_yaml_exponent_written_without_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-5\n")  # PyYAML reads this as a string
    assert load_config(Conf, path).optim.lr == pytest.approx(1e-5)


@pytest.mark.parametrize("override, fragment", [
    (["stepz=3"], "unknown key 'stepz'"),
    (["steps=three"], "steps: expected an integer"),
    (["amp=fp8"], "expected one of"),
    (["optim.lr=[1]"], "optim.lr: expected a number"),
    (["optim.momentum=0.9"], "unknown key 'optim.momentum'"),
    (["steps"], "must look like key=value"),
    (["layers=[[1, 2]]"], "expected 3 items"),
])
def test_bad_values_are_one_line_errors(override, fragment):
    with pytest.raises(W2vtkError) as err:
        load_config(Conf, None, override)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_override_is_blamed_on_the_override_with_the_nearest_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 3\n")
    with pytest.raises(W2vtkError) as err:
        load_config(Conf, path, ["optim.l=0.1"])
    assert str(err.value) == "override 'optim.l=0.1': unknown key 'optim.l'; did you mean 'optim.lr'?"
    with pytest.raises(W2vtkError, match=r"override 'lr=0.1': unknown key 'lr'; did you mean 'optim.lr'\?"):
        load_config(Conf, path, ["lr=0.1"])
    path.write_text("stepss: 3\n")  # a bad key in the file is blamed on the file
    with pytest.raises(W2vtkError, match=r"c.yaml: unknown key 'stepss'; did you mean 'steps'\?"):
        load_config(Conf, path)


def test_error_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: true\n")
    with pytest.raises(W2vtkError, match="bad.yaml"):
        load_config(Conf, path)
    path.write_text("steps: [unclosed\n")
    with pytest.raises(W2vtkError, match="not valid YAML"):
        load_config(Conf, path)
    with pytest.raises(W2vtkError, match="not found"):
        load_config(Conf, tmp_path / "missing.yaml")


def test_parse_overrides_nests_dotted_keys_and_dashes():
    assert parse_overrides(["a.b=1", "a.c=x", "--max-update=5"]) == {"a": {"b": 1, "c": "x"}, "max_update": 5}
