"""fairseq wav2vec 1.0 checkpoints <-> w2vtk: key mapping, both config eras, safe loading, export.

Loading (:func:`load_wav2vec`) accepts

* fairseq 2019 checkpoints (``args``: an ``argparse.Namespace``; the released wav2vec_large.pt),
  missing fields taking fairseq 2019's ``base_wav2vec_architecture`` defaults (5-layer encoder,
  9 x k3 context, 12 steps, 1 negative, no skips, no log compression, offset auto);
* fairseq >= 0.10 checkpoints (``args`` None, ``cfg`` a plain dict with ``cfg["model"]``), missing
  fields taking fairseq 0.12's ``Wav2VecConfig`` dataclass defaults (which are the large shape
  with THREE 1x1 encoder convs, skips and log compression: see :data:`FAIRSEQ_CFG_DEFAULTS`);
* w2vtk checkpoints (layout below);

in the zip and the legacy (pre-1.6) serialisation, always through
:func:`w2vtk.checkpoint.load_checkpoint` (``torch.load(weights_only=True)``; the only extra class
allowed is ``argparse.Namespace``).  Layer specs are parsed by
:func:`w2vtk.models.layer_spec.parse_layer_spec`, never ``eval``.  A config using a feature w2vtk
does not implement is refused with one line naming the field (see :data:`UNSUPPORTED`).

w2vtk checkpoint layout (written by ``w2vtk pretrain`` with w2vtk.checkpoint.save_checkpoint)::

    {
      "w2vtk_version": "0.1.0",          # w2vtk.__version__ that wrote it
      "kind": "wav2vec",                 # what load_wav2vec checks first
      "config": {...},                   # w2vtk.config.to_dict(Wav2VecConfig): the model config
      "model": {name: tensor},           # Wav2VecModel.state_dict() (w2vtk parameter names)
      # optional, ignored here: "train_config", "optimizer", "scheduler", "scaler", "rng",
      # "sampler", "num_updates", "metrics", ...
    }

:func:`export_fairseq` writes the 2019 layout (``args`` Namespace with every model field,
``model`` with fairseq's key names) so fairseq can load what w2vtk trains; exporting and loading
back is bit-exact.  Key names (``i`` = layer index)::

    w2vtk                              fairseq
    encoder.layers.i.conv.weight       feature_extractor.conv_layers.i.0.weight
    encoder.layers.i.norm.{weight,bias}  feature_extractor.conv_layers.i.2.{weight,bias}
    context.layers.i.conv.{weight,bias}  feature_aggregator.conv_layers.i.1.{weight,bias}
    context.layers.i.norm.{weight,bias}  feature_aggregator.conv_layers.i.3.{weight,bias}
    context.residual_proj.i.weight     feature_aggregator.residual_proj.i.weight
    step_proj.{weight,bias}            wav2vec_predictions.project_to_steps.{weight,bias}
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from w2vtk.checkpoint import load_checkpoint, save_checkpoint
from w2vtk.config import from_dict, to_dict
from w2vtk.errors import W2vtkError
from w2vtk.models.layer_spec import format_layer_spec, parse_layer_spec
from w2vtk.models.wav2vec import Wav2VecConfig, Wav2VecModel
import w2vtk

ALLOWED_GLOBALS = [argparse.Namespace]

# fairseq 2019 base_wav2vec_architecture(args): what a field missing from an `args` checkpoint means.
FAIRSEQ_2019_DEFAULTS: dict[str, Any] = {
    "conv_feature_layers": "[(512, 10, 5)] + [(512, 8, 4)] + [(512, 4, 2)] * 3",
    "conv_aggregator_layers": "[(512, 3, 1)] * 9",
    "prediction_steps": 12,
    "num_negatives": 1,
    "sample_distance": None,
    "cross_sample_negatives": 0,
    "dropout": 0.0,
    "dropout_features": 0.0,
    "dropout_agg": 0.0,
    "encoder": "cnn",
    "aggregator": "cnn",
    "skip_connections_feat": False,
    "skip_connections_agg": False,
    "residual_scale": 0.5,
    "gru_dim": 512,
    "no_conv_bias": False,
    "agg_zero_pad": False,
    "log_compression": False,
    "balanced_classes": False,
    "project_features": "none",
    "non_affine_group_norm": False,
    "offset": "auto",
    "activation": "relu",
    "vq_type": "none",
    "infonce": False,
}

# fairseq 0.12 Wav2VecConfig dataclass defaults: what a field missing from `cfg["model"]` means.
FAIRSEQ_CFG_DEFAULTS: dict[str, Any] = {
    **FAIRSEQ_2019_DEFAULTS,
    "conv_feature_layers": "[(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2), "
                           "(512, 1, 1), (512, 1, 1), (512, 1, 1)]",
    "conv_aggregator_layers": "[(512, 2, 1), (512, 3, 1), (512, 4, 1), (512, 5, 1), (512, 6, 1), "
                              "(512, 7, 1), (512, 8, 1), (512, 9, 1), (512, 10, 1), (512, 11, 1), "
                              "(512, 12, 1), (512, 13, 1)]",
    "num_negatives": 10,
    "skip_connections_agg": True,
    "log_compression": True,
}

# field -> (value w2vtk implements, why it is refused otherwise)
UNSUPPORTED: dict[str, tuple[Any, str]] = {
    "vq_type": ("none", "vector quantisation (vq-wav2vec) is not implemented"),
    "aggregator": ("cnn", "only the convolutional context network is implemented"),
    "encoder": ("cnn", "only the convolutional encoder is implemented"),
    "agg_zero_pad": (False, "zero padding in the context network is not implemented"),
    "non_affine_group_norm": (False, "non-affine GroupNorm is not implemented"),
    "no_conv_bias": (False, "context convs without bias are not implemented"),
    "activation": ("relu", "only ReLU is implemented"),
    "skip_connections_feat": (False, "encoder skip connections are not implemented"),
    "project_features": ("none", "projected targets are not implemented"),
}

# Loss-only options: they do not change z or c, so such a checkpoint still loads (for extraction or
# further training with w2vtk's objective); CheckpointInfo.extra["ignored"] lists them.
LOSS_ONLY_DEFAULTS: dict[str, Any] = {"balanced_classes": False, "sample_distance": None,
                                      "cross_sample_negatives": 0}

# Model fields that map one to one onto Wav2VecConfig.
_DIRECT = ("prediction_steps", "num_negatives", "dropout", "dropout_features", "dropout_agg",
           "skip_connections_agg", "residual_scale", "log_compression", "infonce")


@dataclass
class CheckpointInfo:
    """What :func:`load_wav2vec` found: ``source`` is "w2vtk", "fairseq-args" or "fairseq-cfg"."""

    path: str
    source: str
    config: Wav2VecConfig
    w2vtk_version: str | None = None
    num_updates: int | None = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# key mapping

# One table, read both ways: {i} is a layer index, {p} weight or bias, in the same order on both sides.
_KEY_PAIRS = [
    ("encoder.layers.{i}.conv.weight", "feature_extractor.conv_layers.{i}.0.weight"),
    ("encoder.layers.{i}.norm.{p}", "feature_extractor.conv_layers.{i}.2.{p}"),
    ("context.layers.{i}.conv.{p}", "feature_aggregator.conv_layers.{i}.1.{p}"),
    ("context.layers.{i}.norm.{p}", "feature_aggregator.conv_layers.{i}.3.{p}"),
    ("context.residual_proj.{i}.weight", "feature_aggregator.residual_proj.{i}.weight"),
    ("step_proj.{p}", "wav2vec_predictions.project_to_steps.{p}"),
]
_SLOTS = {"{i}": r"(\d+)", "{p}": r"(weight|bias)"}


def _key_rule(src: str, dst: str) -> tuple[str, str]:
    """(regex matching ``src``, replacement building ``dst`` from its groups)."""
    pattern, repl, group = re.escape(src), dst, 0
    for slot, regex in _SLOTS.items():
        if slot in src:
            group += 1
            pattern = pattern.replace(re.escape(slot), regex)
            repl = repl.replace(slot, f"\\{group}")
    return pattern, repl


_TO_FAIRSEQ = [_key_rule(ours, theirs) for ours, theirs in _KEY_PAIRS]
_FROM_FAIRSEQ = [_key_rule(theirs, ours) for ours, theirs in _KEY_PAIRS]


def _map_key(key: str, table: list[tuple[str, str]]) -> str | None:
    for pattern, repl in table:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def to_fairseq_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """w2vtk parameter names -> fairseq's (see the table in the module docstring)."""
    out = {}
    for key, value in state.items():
        new = _map_key(key, _TO_FAIRSEQ)
        if new is None:
            raise W2vtkError(f"no fairseq name for w2vtk parameter {key!r}")
        out[new] = value
    return out


def from_fairseq_state_dict(state: Mapping[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """fairseq wav2vec 1.0 parameter names -> w2vtk's; unknown keys are refused, naming the key."""
    out = {}
    for key, value in state.items():
        new = _map_key(key, _FROM_FAIRSEQ)
        if new is None:
            raise W2vtkError(f"{where}: parameter {key!r} is not part of a wav2vec 1.0 model "
                             f"w2vtk implements")
        out[new] = value
    return out


# ----------------------------------------------------------------------------------------------
# configs

def resolve_interpolations(fields: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """Replace omegaconf references left in a saved cfg (``infonce: '${criterion.infonce}'``) by the
    value they point to in ``root`` (the whole cfg dict); an unresolvable one is dropped, so the
    era's default applies."""
    out = {}
    for key, value in fields.items():
        if isinstance(value, str) and re.fullmatch(r"\$\{[A-Za-z0-9_.]+\}", value.strip()):
            node: Any = root
            for part in value.strip()[2:-1].split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if node is None or (isinstance(node, str) and node.startswith("${")):
                continue
            value = node
        out[key] = value
    return out


def ignored_loss_options(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Loss-only fairseq options set to something w2vtk's objective does not do."""
    return {k: fields[k] for k, default in LOSS_ONLY_DEFAULTS.items()
            if k in fields and fields[k] not in (default, False if default == 0 else default)}


def config_from_fairseq(fields: Mapping[str, Any], era: str, where: str = "checkpoint") -> Wav2VecConfig:
    """fairseq model fields (``args`` or ``cfg["model"]``) -> Wav2VecConfig.

    ``era`` "args" fills missing fields with fairseq 2019's defaults, "cfg" with fairseq 0.12's.
    """
    defaults = FAIRSEQ_2019_DEFAULTS if era == "args" else FAIRSEQ_CFG_DEFAULTS
    merged = dict(defaults)
    merged.update({k: v for k, v in fields.items() if k in defaults})
    for name, (ok, why) in UNSUPPORTED.items():
        value = merged.get(name)
        if value != ok:
            raise W2vtkError(f"{where}: unsupported fairseq option {name}={value!r}: {why}")
    offset = merged["offset"]
    if isinstance(offset, str) and offset != "auto":
        if not offset.strip().isdigit():
            raise W2vtkError(f"{where}: offset {offset!r} is neither 'auto' nor an integer")
        offset = int(offset)
    kwargs: dict[str, Any] = {name: merged[name] for name in _DIRECT}
    kwargs["infonce"] = bool(kwargs["infonce"] or False)
    kwargs["prediction_steps"] = int(kwargs["prediction_steps"])
    kwargs["num_negatives"] = int(kwargs["num_negatives"])
    for name in ("dropout", "dropout_features", "dropout_agg", "residual_scale"):
        kwargs[name] = float(kwargs[name])
    cfg = Wav2VecConfig(
        conv_feature_layers=parse_layer_spec(merged["conv_feature_layers"], f"{where}: conv_feature_layers"),
        conv_aggregator_layers=parse_layer_spec(merged["conv_aggregator_layers"],
                                                f"{where}: conv_aggregator_layers"),
        offset=offset, norm="group", **kwargs)
    try:
        cfg.validate()
    except W2vtkError as err:
        raise W2vtkError(f"{where}: {err}") from None
    return cfg


def fairseq_args_from_config(cfg: Wav2VecConfig, num_updates: int = 0) -> argparse.Namespace:
    """The 2019 ``args`` Namespace for ``cfg``: every model field of base_wav2vec_architecture plus
    the task / criterion names fairseq needs to rebuild the model."""
    if cfg.norm != "group":
        raise W2vtkError("norm 'channel' has no fairseq equivalent: such a model cannot be exported")
    return argparse.Namespace(
        # fairseq's checkpoint upgrade reads args.lr; 0.005 is the paper's peak learning rate.
        arch="wav2vec", task="audio_pretraining", criterion="wav2vec", data=".", lr=[0.005],
        sample_rate=16000, normalize=False, max_sample_size=150000, min_sample_size=None,
        conv_feature_layers=format_layer_spec(cfg.conv_feature_layers),
        conv_aggregator_layers=format_layer_spec(cfg.conv_aggregator_layers),
        prediction_steps=cfg.prediction_steps, num_negatives=cfg.num_negatives,
        sample_distance=None, cross_sample_negatives=0,
        dropout=cfg.dropout, dropout_features=cfg.dropout_features, dropout_agg=cfg.dropout_agg,
        encoder="cnn", aggregator="cnn", gru_dim=512,
        skip_connections_feat=False, skip_connections_agg=cfg.skip_connections_agg,
        residual_scale=cfg.residual_scale, no_conv_bias=False, agg_zero_pad=False,
        log_compression=cfg.log_compression, balanced_classes=False, project_features="none",
        non_affine_group_norm=False, offset=str(cfg.offset), activation="relu", vq_type="none",
        infonce=cfg.infonce, num_updates=num_updates,
    )


# ----------------------------------------------------------------------------------------------
# loading and export

def _build(cfg: Wav2VecConfig, state: Mapping[str, Any], where: str) -> Wav2VecModel:
    import torch

    model = Wav2VecModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = (f"missing parameter {missing[0]!r}" if missing else f"unexpected parameter {unexpected[0]!r}")
        raise W2vtkError(f"{where}: weights do not match the model its config describes ({what})")
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(ref.shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise W2vtkError(f"{where}: parameter {key!r} has shape {shape}, the config says "
                             f"{tuple(ref.shape)}")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    model.eval()
    return model


def load_wav2vec(path: str | Path) -> tuple[Wav2VecModel, CheckpointInfo]:
    """Any wav2vec 1.0 checkpoint (w2vtk, fairseq 2019 ``args``, fairseq ``cfg``) -> (model in eval
    mode on CPU, info).  Refuses other checkpoints and unsafe pickles with a W2vtkError."""
    where = str(path)
    try:
        ckpt = load_checkpoint(path, allow=ALLOWED_GLOBALS)
    except W2vtkError:
        raise
    except Exception as err:  # garbage bytes can trip the unpickler in ways load_checkpoint misses
        raise W2vtkError(f"{where}: not a readable checkpoint ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:100]})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt["model"], dict):
        raise W2vtkError(f"{where}: not a wav2vec checkpoint (no model state dict)")
    state = ckpt["model"]

    if ckpt.get("kind") == "wav2vec" and isinstance(ckpt.get("config"), dict):
        cfg = from_dict(Wav2VecConfig, ckpt["config"], where=f"{where}: config")
        info = CheckpointInfo(path=where, source="w2vtk", config=cfg,
                              w2vtk_version=ckpt.get("w2vtk_version"),
                              num_updates=ckpt.get("num_updates"))
        return _build(cfg, state, where), info

    args, cfg_dict = ckpt.get("args"), ckpt.get("cfg")
    if isinstance(args, argparse.Namespace):
        fields, era = vars(args), "args"
    elif isinstance(cfg_dict, dict) and isinstance(cfg_dict.get("model"), dict):
        fields, era = resolve_interpolations(cfg_dict["model"], cfg_dict), "cfg"
    elif ckpt.get("kind") is not None or "config" in ckpt:
        raise W2vtkError(f"{where}: a w2vtk checkpoint of kind {ckpt.get('kind')!r}, not a wav2vec "
                         f"model")
    else:
        raise W2vtkError(f"{where}: not a wav2vec checkpoint (neither w2vtk's config nor fairseq's "
                         f"args / cfg)")
    arch = fields.get("arch", fields.get("_name"))
    if arch is not None and arch != "wav2vec":
        raise W2vtkError(f"{where}: a fairseq {arch!r} checkpoint, not wav2vec 1.0")
    if not any(k.startswith("feature_aggregator.") for k in state):
        raise W2vtkError(f"{where}: not a wav2vec 1.0 checkpoint (no feature_aggregator weights)")
    cfg = config_from_fairseq(fields, era, where)
    num_updates = None
    history = ckpt.get("optimizer_history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        num_updates = history[-1].get("num_updates")
    info = CheckpointInfo(path=where, source=f"fairseq-{era}", config=cfg, num_updates=num_updates,
                          extra={"ignored": ignored_loss_options(fields)})
    return _build(cfg, from_fairseq_state_dict(state, where), where), info


def export_fairseq(model: Wav2VecModel, path: str | Path, num_updates: int = 0) -> None:
    """Write ``model`` as a fairseq 2019-format checkpoint (``args`` Namespace + fairseq-named state
    dict, the layout of the released wav2vec_large.pt), atomically."""
    args = fairseq_args_from_config(model.cfg, num_updates)
    state = {k: v.detach().clone().cpu() for k, v in to_fairseq_state_dict(model.state_dict()).items()}
    save_checkpoint({
        "args": args,
        "model": state,
        # fairseq's _upgrade_state_dict indexes optimizer_history[-1] and reads extra_state.
        "optimizer_history": [{"criterion_name": "Wav2vecCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {}, "num_updates": num_updates}],
        "extra_state": {"epoch": 1, "train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "last_optimizer_state": None,
    }, path)


def export_checkpoint(src: str | Path, out: str | Path) -> CheckpointInfo:
    """``w2vtk export-fairseq``: load the wav2vec checkpoint ``src`` (any format :func:`load_wav2vec`
    reads), write it to ``out`` with :func:`export_fairseq`, read the result back and check that every
    weight is bit-identical. A model fairseq cannot express (``norm: channel``) is refused before
    anything is written; so is ``out`` naming ``src`` itself."""
    import torch

    src, out = Path(src), Path(out)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise W2vtkError(f"{out}: the output would replace the checkpoint being exported; name another file")
    model, info = load_wav2vec(src)
    fairseq_args_from_config(model.cfg, 0)  # refuses what fairseq cannot express, before any write
    out.parent.mkdir(parents=True, exist_ok=True)
    export_fairseq(model, out, num_updates=info.num_updates or 0)
    again, _ = load_wav2vec(out)
    a, b = model.state_dict(), again.state_dict()
    if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
        out.unlink(missing_ok=True)
        raise W2vtkError(f"{out}: the exported weights did not read back identically; nothing was kept")
    return info


def w2vtk_checkpoint(model: Wav2VecModel, **extra: Any) -> dict[str, Any]:
    """The w2vtk checkpoint dict for ``model`` (layout in the module docstring); ``extra`` adds the
    training state (optimizer, scheduler, ...)."""
    return {"w2vtk_version": w2vtk.__version__, "kind": "wav2vec", "config": to_dict(model.cfg),
            "model": model.state_dict(), **extra}
