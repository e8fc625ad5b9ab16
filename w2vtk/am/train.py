"""``w2vtk train-am``: CTC training of a conv acoustic model on a feature data dir.

Exp dir contents: ``checkpoint_last.pt`` (everything needed to resume exactly, in pre-training's
layout: model, ``optimizer``, ``scaler``, ``rng`` (one state per rank) and ``train_state``: sampler
position, best so far, non-finite guard, world size), ``checkpoint_best.pt``
(model of the epoch with the lowest dev error), ``checkpoint_epoch<N>.pt`` (model only, the last
``average_last`` epochs), ``checkpoint_avg.pt`` (their mean), ``tokens.txt`` (+ ``spm.model``),
``feats.yaml`` (the training features' provenance), ``config.yaml`` (resolved), ``global_cmvn.npz``
(global normalisation only) and ``metrics.jsonl`` (one record per epoch).

Loss: torch's CTC loss summed over utterances and divided by the number of target tokens of the
whole update (all micro-batches, all ranks), i.e. a per-token loss, which keeps the gradient scale
independent of batch size, accumulation and world size.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from w2vtk import __version__, dist, faults
from w2vtk.am.config import TrainAMConfig
from w2vtk.am.criterion import make_criterion
from w2vtk.am.data import (FeatureDir, Normaliser, check_provenance, epoch_order,
                           global_stats, load_feature_dir, make_batches, pad_batch, prefetch, stats_to_mean_std)
from w2vtk.am.metrics import DevScorer
from w2vtk.am.validate import evaluate, print_epoch_table
from w2vtk.checkpoint import AM_CHECKPOINT_KIND, load_checkpoint, require_entries, save_checkpoint, with_train_state
from w2vtk.config import apply_renames, from_dict, load_config, save_config, to_dict
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open, atomic_write_bytes, remove_stale_temporaries
from w2vtk.models.am import AMConfig, build_am, num_parameters, output_length
from w2vtk.progress import console, progress
from w2vtk.tokens import TokenSet
from w2vtk.training import (CheckpointManager, LRSchedule, MetricsLog, NonFiniteGuard, autocast, gather_rng_states,
                            make_grad_scaler, resolve_amp, restore_training_state, resume_config, seed_everything,
                            setup_cpu, write_epoch_average)

CKPT_KIND = AM_CHECKPOINT_KIND  # (the name older code imported)
LANG_FILES = ("tokens.txt", "spm.model", "lang.yaml")


@dataclass
class TrainAMResult:
    exp_dir: Path
    epochs_done: int
    updates: int
    best_error: float | None
    best_epoch: int | None
    skipped_short: int
    num_train: int
    num_valid: int
    stopped_early: bool  # optim.max_update reached before max_epochs


def _log(msg: str, info) -> None:
    if info.is_main:
        console.print(msg, highlight=False)


def _encode_labels(fd: FeatureDir, tokens) -> dict[str, list[int]]:
    out = {}
    for utt in fd.ids:
        try:
            out[utt] = [int(i) for i in tokens.encode(fd.texts[utt], utt=utt)]
        except W2vtkError as err:
            raise W2vtkError(f"{fd.path}/text: {err}") from None
    return out


def _copy_lang(lang_dir: Path, exp_dir: Path) -> None:
    for name in LANG_FILES:
        src = lang_dir / name
        if src.is_file():
            atomic_write_bytes(exp_dir / name, src.read_bytes())


def _ids_digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def model_payload(model, cfg: TrainAMConfig, *, input_dim: int, tokens: list[str], norm: Normaliser,
                  feats: dict | None, epoch: int, updates: int, source: str) -> dict:
    """The part of a checkpoint that decoding needs (what best / avg / epoch files hold)."""
    return {
        "kind": CKPT_KIND, "w2vtk_version": __version__,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_config": to_dict(cfg.model), "config": to_dict(cfg),
        "input_dim": int(input_dim), "num_tokens": len(tokens), "tokens": list(tokens),
        "normaliser": norm.state(), "feats": feats, "epoch": int(epoch), "updates": int(updates),
        "source": source,
    }


def train_am(cfg: TrainAMConfig, *, lang_dir: str | Path, train_dir: str | Path, valid_dir: str | Path,
             exp_dir: str | Path, allow_feature_mismatch: bool = False,
             allow_changes: bool = False) -> TrainAMResult:
    """Train (or resume training) an acoustic model; see the module docstring for the exp dir.

    Resuming keeps ``config.yaml`` as it is; a ``cfg`` that differs from it is refused (one line
    listing each change) unless ``allow_changes``, which keeps the old file as ``config.<N>.yaml``.

    Runs in one process or under torchrun (DDP; NCCL on GPU, gloo on CPU): rank r takes every
    W-th length-bucketed batch of a seeded per-epoch shuffle; only rank 0 writes.
    """
    with dist.owned_group():
        return _train_am(cfg, lang_dir=lang_dir, train_dir=train_dir, valid_dir=valid_dir, exp_dir=exp_dir,
                         allow_feature_mismatch=allow_feature_mismatch, allow_changes=allow_changes)


# Settings that say how to run, not what: a resumed run may change them without allow_changes.
RUN_SETTINGS = ("device",)


def saved_am_config(exp_dir: Path, ckpt: dict) -> dict | None:
    """The experiment's resolved config as a plain dict (config.yaml, else the checkpoint's copy),
    renamed keys translated; None when neither exists."""
    path = exp_dir / "config.yaml"
    if path.is_file():
        return to_dict(load_config(TrainAMConfig, path, notes=[]))
    saved = ckpt.get("config")
    if not isinstance(saved, dict):
        return None
    return to_dict(from_dict(TrainAMConfig, apply_renames(saved, TrainAMConfig.RENAMED, str(exp_dir)),
                             where=f"{exp_dir}/checkpoint_last.pt: config"))


def _train_am(cfg: TrainAMConfig, *, lang_dir: str | Path, train_dir: str | Path, valid_dir: str | Path,
              exp_dir: str | Path, allow_feature_mismatch: bool = False,
              allow_changes: bool = False) -> TrainAMResult:
    run = _AMTrainer(cfg, Path(lang_dir), Path(train_dir), Path(valid_dir), Path(exp_dir),
                     allow_feature_mismatch, allow_changes)
    while run.epoch <= cfg.max_epochs:
        if not run.train_one_epoch():
            break  # optim.max_update reached inside the epoch
        run.end_of_epoch()
    return run.finish()


class _AMTrainer:
    """One process's ``train-am`` run, icefall-style: ``__init__`` sets up (or resumes) data, model,
    normaliser, optimiser and exp dir; then ``train_one_epoch`` and ``end_of_epoch`` (validate,
    metrics, checkpoints) alternate until ``max_epochs``; ``finish`` writes the final average.

    The state that a checkpoint carries lives on the instance: ``epoch``, ``pos`` (batches of this
    rank's epoch order done), ``updates``, ``best_error`` / ``best_epoch`` and the epoch's running
    loss sums."""

    def __init__(self, cfg: TrainAMConfig, lang_dir: Path, train_dir: Path, valid_dir: Path, exp_dir: Path,
                 allow_feature_mismatch: bool, allow_changes: bool):
        self.cfg, self.lang_dir, self.train_dir, self.valid_dir, self.exp_dir = cfg, lang_dir, train_dir, valid_dir, exp_dir
        self.allow_feature_mismatch = allow_feature_mismatch
        self.info, self.device = dist.init(cfg.device)
        if self.device.type == "cpu":
            setup_cpu()
        self.amp = resolve_amp(cfg.amp, self.device)
        if not lang_dir.is_dir() or not (lang_dir / "tokens.txt").is_file():
            raise W2vtkError(f"{lang_dir}: no tokens.txt (make it with `w2vtk prep lang`)")
        self.tokens = TokenSet.load(lang_dir)
        # last and best as the pre-training trainer names them; no numbered files (epoch files and
        # their average are written by write_epoch_average's rules instead)
        self.manager = CheckpointManager(exp_dir, keep_last=-1)
        self.last_path = self.manager.last_path
        self._load_data()
        ckpt = self._check_resume(allow_changes)
        seed_everything(cfg.seed + 1000 * self.info.rank)
        self.model = build_am(cfg.model, self.train_fd.dim, len(self.tokens.tokens)).to(self.device)
        self.criterion = make_criterion(self.model, self.tokens, cfg.asg_scaling, cfg.asg_surround)
        self._drop_short()
        self.norm = self._normaliser(ckpt)
        self._prepare_exp_dir(fresh=ckpt is None)
        self._plan_batches()
        self._make_optimiser()
        self.epoch, self.pos, self.updates = 1, 0, 0
        self.dev_unit = DevScorer(self.tokens).unit_name  # the error key of an unvalidated epoch's record
        self.best_error: float | None = None
        self.best_epoch: int | None = None
        if ckpt is not None:
            self._restore(ckpt)
        self.net = self.model
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.metrics = MetricsLog(exp_dir / "metrics.jsonl", enabled=self.info.is_main, key="epoch")
        if ckpt is not None:
            ts = ckpt["train_state"]
            epoch_done = ts.get("epoch_done", int(ts["position"]) >= self.per_rank)
            self.metrics.truncate_after(int(ckpt["epoch"]) - (0 if epoch_done else 1))
        else:
            self.metrics.truncate_after(0)
        self._log_summary()
        self.rows_printed = 0
        self.stopped_early = False
        # the epoch sums of an interrupted epoch (rank 0 keeps them)
        self.carried = torch.zeros(3, dtype=torch.float64)
        if ckpt is not None and self.info.is_main and self.pos > 0:
            self.carried = ckpt["train_state"].get("epoch_sums", self.carried).double()

    def log(self, msg: str) -> None:
        _log(msg, self.info)

    # ------------------------------------------------------------------------------------ setup

    def _load_data(self) -> None:
        self.train_fd = load_feature_dir(self.train_dir)
        self.valid_fd = load_feature_dir(self.valid_dir)
        for fd in (self.train_fd, self.valid_fd):
            if fd.dropped_no_text or fd.dropped_no_feats:
                self.log(f"[yellow]{fd.path}: {len(fd.ids)} utterances have features and a transcript; "
                         f"{len(fd.dropped_no_text)} with features but no text and {len(fd.dropped_no_feats)} "
                         f"with text but no features are left out[/yellow]")
        if self.valid_fd.dim != self.train_fd.dim:
            raise W2vtkError(f"{self.valid_dir}: features have dimension {self.valid_fd.dim}, the training "
                             f"features ({self.train_dir}) {self.train_fd.dim}")
        diffs = check_provenance(self.train_fd.provenance, self.valid_fd.provenance, where=str(self.valid_dir),
                                 allow_mismatch=self.allow_feature_mismatch)
        for d in diffs:
            self.log(f"[yellow]warning: {self.valid_dir}: {d} (allowed by --allow-feature-mismatch)[/yellow]")
        if self.train_fd.provenance is None:
            self.log(f"[yellow]warning: {self.train_dir} has no feats.yaml: feature provenance cannot be "
                     f"checked later[/yellow]")
        self.train_labels = _encode_labels(self.train_fd, self.tokens)
        self.valid_labels = _encode_labels(self.valid_fd, self.tokens)

    def _check_resume(self, allow_changes: bool) -> dict | None:
        """checkpoint_last.pt checked against this run's config, tokens and features (None: a fresh
        start); sets ``write_config``."""
        cfg, last_path, exp_dir = self.cfg, self.last_path, self.exp_dir
        if not last_path.is_file():
            self.write_config = True
            stale = sorted(p.name for p in exp_dir.glob("checkpoint_*.pt")) if exp_dir.is_dir() else []
            if stale:
                raise W2vtkError(f"{exp_dir}: holds {', '.join(stale[:3])} but no checkpoint_last.pt to resume "
                                 f"from; use a new --exp dir or remove them")
            return None
        ckpt = load_checkpoint(last_path)
        if not isinstance(ckpt, dict) or ckpt.get("kind") != CKPT_KIND or "optimizer" not in ckpt:
            raise W2vtkError(f"{last_path}: not a w2vtk acoustic-model training checkpoint")
        ckpt = with_train_state(ckpt)
        require_entries(ckpt, last_path, "acoustic-model training",
                        {"model_config": dict, "model": dict, "optimizer": dict, "input_dim": int,
                         "tokens": list, "normaliser": dict, "epoch": int, "updates": int})
        if not isinstance(ckpt["train_state"].get("position"), int):
            raise W2vtkError(f"{last_path}: not a usable acoustic-model training checkpoint (no 'position')")
        if not isinstance(ckpt["normaliser"].get("mode"), str):
            raise W2vtkError(f"{last_path}: not a usable acoustic-model training checkpoint (bad 'normaliser')")
        old_model = from_dict(AMConfig, ckpt["model_config"], where=f"{last_path}:model")
        if to_dict(old_model) != to_dict(cfg.model):
            raise W2vtkError(f"{last_path}: the model section of the config differs from the one this "
                             f"experiment was started with; use a new --exp dir")
        if ckpt["input_dim"] != self.train_fd.dim:
            raise W2vtkError(f"{self.train_dir}: features have dimension {self.train_fd.dim} but the model in "
                             f"{last_path} takes {ckpt['input_dim']}-dim features")
        if list(ckpt["tokens"]) != list(self.tokens.tokens):
            raise W2vtkError(f"{self.lang_dir}/tokens.txt differs from the token set of {last_path}")
        check_provenance(ckpt.get("feats"), self.train_fd.provenance, where=f"{self.train_dir} (resuming {exp_dir})",
                         allow_mismatch=self.allow_feature_mismatch)
        if ckpt["normaliser"]["mode"] != cfg.normalisation:
            raise W2vtkError(f"{last_path}: trained with normalisation={ckpt['normaliser']['mode']}, the config "
                             f"asks for {cfg.normalisation}; use a new --exp dir")
        self.write_config = resume_config(exp_dir, saved_am_config(exp_dir, ckpt), to_dict(cfg), allow_changes,
                                          run_settings=RUN_SETTINGS, archive=self.info.is_main,
                                          log=lambda m: self.log(f"[yellow]{m}[/yellow]"))
        return ckpt

    def _drop_short(self) -> None:
        """Feasibility under the criterion: drop (and count) utterances too short for their labels."""
        crit = self.criterion

        def feasible(fd: FeatureDir, labels: dict[str, list[int]]) -> tuple[list[str], list[str]]:
            ok, short = [], []
            for utt in fd.ids:
                t_out = output_length(fd.frames[utt], self.cfg.model.layers)
                (ok if t_out >= crit.min_frames(crit.targets(labels[utt])) and t_out > 0 else short).append(utt)
            return ok, short

        self.train_ids, self.train_short = feasible(self.train_fd, self.train_labels)
        _, self.valid_short = feasible(self.valid_fd, self.valid_labels)
        if self.train_short:
            self.log(f"[yellow]{self.train_dir}: {len(self.train_short)} utterances are too short for their "
                     f"transcript under {crit.name.upper()} at stride {self.model.stride} and are skipped "
                     f"(e.g. {', '.join(self.train_short[:3])})[/yellow]")
        if self.valid_short:
            self.log(f"[yellow]{self.valid_dir}: {len(self.valid_short)} utterances are too short for their "
                     f"transcript under {crit.name.upper()}: left out of the dev loss, kept in the dev error rates[/yellow]")
        if not self.train_ids:
            raise W2vtkError(f"{self.train_dir}: no training utterance left after filtering "
                             f"({len(self.train_short)} too short for their transcripts)")

    def _normaliser(self, ckpt: dict | None) -> Normaliser:
        if ckpt is not None:
            try:
                return Normaliser.from_state(ckpt["normaliser"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise W2vtkError(f"{self.last_path}: not a usable acoustic-model training checkpoint "
                                 f"(bad 'normaliser')") from None
        if self.cfg.normalisation != "global":
            return Normaliser(self.cfg.normalisation)
        info, dim = self.info, self.train_fd.dim
        idx = dist.shard_indices(len(self.train_ids), info.world_size, info.rank)
        s, ss, n = global_stats(self.train_fd, [self.train_ids[i] for i in idx])
        packed = torch.from_numpy(np.concatenate([s, ss, [n]])).double()
        packed = dist.reduce_to_cpu(packed, self.device).numpy()
        mean, std = stats_to_mean_std(packed[:dim], packed[dim: 2 * dim], float(packed[-1]))
        return Normaliser("global", mean, std)

    def _prepare_exp_dir(self, fresh: bool) -> None:
        exp_dir = self.exp_dir
        if self.info.is_main:
            exp_dir.mkdir(parents=True, exist_ok=True)
            # a killed run's temporaries (a whole checkpoint each) are garbage once we restart
            remove_stale_temporaries(exp_dir, ("checkpoint_*.pt", "config.yaml", "metrics.jsonl", "feats.yaml",
                                               "global_cmvn.npz", *LANG_FILES))
            _copy_lang(self.lang_dir, exp_dir)
            if fresh:
                if (self.train_dir / "feats.yaml").is_file():
                    atomic_write_bytes(exp_dir / "feats.yaml", (self.train_dir / "feats.yaml").read_bytes())
                if self.norm.mode == "global":
                    with atomic_open(exp_dir / "global_cmvn.npz", "wb", encoding=None) as fh:
                        np.savez(fh, mean=self.norm.mean, std=self.norm.std)
            if self.write_config:
                save_config(self.cfg, exp_dir / "config.yaml")
        dist.barrier()

    def _plan_batches(self) -> None:
        cfg, info = self.cfg, self.info
        self.batches = make_batches(self.train_ids, self.train_fd.frames, cfg.batch.max_frames, cfg.batch.max_utts)
        self.accum = cfg.batch.accum
        self.per_rank = len(epoch_order(len(self.batches), cfg.seed, 1, info.world_size, self.accum)) // info.world_size
        self.updates_per_epoch = self.per_rank // self.accum
        self.valid_batches = make_batches(self.valid_fd.ids, self.valid_fd.frames, cfg.batch.valid_max_frames, 10 ** 9)

    def _make_optimiser(self) -> None:
        cfg, model = self.cfg, self.model
        params: list = list(model.parameters())
        if model.transitions is not None and cfg.optim.transitions_lr > 0:
            # ASG's transitions on their own lr (wav2letter's --lrcrit), as a fixed share of the schedule's
            rest = [p for p in params if p is not model.transitions]
            params = [{"params": rest},
                      {"params": [model.transitions], "lr_scale": cfg.optim.transitions_lr / cfg.optim.lr}]
        if cfg.optim.name == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                             nesterov=cfg.optim.nesterov, weight_decay=cfg.optim.weight_decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                              eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
        self.sched = LRSchedule(peak_lr=cfg.optim.lr, max_update=max(1, cfg.max_epochs * self.updates_per_epoch),
                                warmup_updates=cfg.schedule.warmup_updates,
                                warmup_init_lr=cfg.schedule.warmup_init_lr, min_lr=cfg.schedule.final_lr,
                                kind=cfg.schedule.decay)
        self.scaler = make_grad_scaler(self.amp)
        self.guard = NonFiniteGuard(10)

    def _restore(self, ckpt: dict) -> None:
        """Model, optimiser, scaler, guard, position, best so far and RNG from checkpoint_last.pt."""
        info, last_path, ts = self.info, self.last_path, ckpt["train_state"]
        rng = ckpt.get("rng") or []
        same_ranks = restore_training_state(ckpt, last_path, model=self.model, optimizer=self.optimizer,
                                            scaler=self.scaler, guard=self.guard, guard_state=ts.get("nonfinite", {}),
                                            rng_states=rng, rank=info.rank, world_size=info.world_size)
        self.epoch, self.pos, self.updates = int(ckpt["epoch"]), int(ts["position"]), int(ckpt["updates"])
        self.best_error, self.best_epoch = ts.get("best_error"), ts.get("best_epoch")
        if not same_ranks:
            self.log(f"[yellow]warning: resuming with {info.world_size} processes instead of {len(rng)}: "
                     f"dropout randomness is reseeded, so this run will not match an uninterrupted one[/yellow]")
            seed_everything(self.cfg.seed + 1000 * info.rank + 7919 * self.updates)
        if ts.get("epoch_done", self.pos >= self.per_rank):
            self.epoch, self.pos = self.epoch + 1, 0
        elif int(ts.get("world_size", 1)) != info.world_size:
            # same place in the epoch's global batch order, rounded down to a whole update
            self.pos = (self.pos * int(ts.get("world_size", 1)) // info.world_size) // self.accum * self.accum
        if ts.get("train_ids_sha256") not in (None, _ids_digest(self.train_ids)):
            self.log(f"[yellow]warning: the training utterances differ from the ones {last_path} was trained "
                     f"on: the epoch's batches change, so this run will not match an uninterrupted one[/yellow]")
        self.log(f"resuming {self.exp_dir} at epoch {self.epoch}, update {self.updates}")

    def _log_summary(self) -> None:
        if not self.info.is_main:
            return
        fd, train_ids = self.train_fd, self.train_ids
        self.log(f"train-am: {len(train_ids)} training utterances ({sum(fd.frames[u] for u in train_ids) / 360000:.2f} h), "
                 f"{len(self.valid_fd.ids)} dev, {fd.dim}-dim features, {len(self.tokens.tokens)} tokens "
                 f"({self.tokens.type}), {num_parameters(self.model) / 1e6:.2f}M parameters, stride "
                 f"{self.model.stride}, device {self.device}, {self.info.world_size} process(es), "
                 f"{self.updates_per_epoch} updates/epoch")

    # --------------------------------------------------------------------------------- training

    def rank_batches(self, epoch: int) -> list[list[str]]:
        """This rank's batches of ``epoch``, in order (every W-th of the seeded epoch order)."""
        order = epoch_order(len(self.batches), self.cfg.seed, epoch, self.info.world_size, self.accum,
                            self.cfg.sortagrad)
        return [self.batches[i] for i in order[self.info.rank::self.info.world_size]]

    def compute_loss(self, batch: list[str], feats, lengths, update_size: float):
        """The criterion's loss (CTC or ASG) of one micro-batch, summed over utterances, and it
        backpropagated scaled by the world size over the update's size (target tokens, a per-token
        loss; utterances for a scaled ASG loss) over all ranks."""
        targets = [self.criterion.targets(self.train_labels[u]) for u in batch]
        with autocast(self.device, self.amp):
            logits, out_lengths = self.net(feats, lengths)
        loss = self.criterion.loss(self.model, logits, out_lengths, targets, batch,
                                   linseg=self.epoch <= self.cfg.asg_linseg)
        scaled = loss * (self.info.world_size / max(update_size, 1.0))
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        return loss.detach(), self.criterion.norm_size([self.train_labels[u] for u in batch])

    def _step(self) -> None:
        """Clip, then step the optimiser unless the gradient is not finite."""
        cfg, model = self.cfg, self.model
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.optim.clip_norm > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_norm)
        else:
            gnorm = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None))
        finite = bool(torch.isfinite(gnorm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips by itself on inf/nan gradients
            self.scaler.update()
        elif self.guard.ok(finite, f"epoch {self.epoch} update {self.updates + 1}"):
            self.optimizer.step()

    def train_one_epoch(self) -> bool:
        """Train the rest of ``epoch`` from ``pos``; False when optim.max_update stopped it early
        (checkpoint_last.pt then holds the position)."""
        cfg, info = self.cfg, self.info
        mine = self.rank_batches(self.epoch)
        self.net.train()
        t0 = time.perf_counter()
        self.loss_sum = self.carried.clone()  # CTC loss, target tokens, input frames (this rank)
        self.carried.zero_()
        self.seen = torch.zeros(1, dtype=torch.float64)  # frames trained on in this process's run of the epoch
        frames = self.train_fd.frames
        with progress(f"epoch {self.epoch}", total=sum(frames[u] for b in mine[self.pos:] for u in b) / 100.0,
                      unit="audio-s") as bar:
            loader = prefetch(mine[self.pos:], lambda b: pad_batch(self.train_fd, b, self.norm))
            loss_dev = torch.zeros((), dtype=torch.float64, device=self.device)
            while self.pos < len(mine):
                if cfg.optim.max_update and self.updates >= cfg.optim.max_update:
                    self.loss_sum[0] += float(loss_dev)
                    self.save_last(self.pos, self.loss_sum)
                    self.stopped_early = True
                    loader.close()
                    return False
                group = mine[self.pos: self.pos + self.accum]
                size = self.criterion.norm_size([self.train_labels[u] for b in group for u in b])
                tok = torch.tensor([size], dtype=torch.float64)
                tok = float(dist.reduce_to_cpu(tok, self.device)[0]) if info.distributed else float(tok[0])
                lr = self.sched.apply(self.optimizer, self.updates)
                self.optimizer.zero_grad(set_to_none=True)
                for j, utts in enumerate(group):
                    loaded, (feats, lengths) = next(loader)
                    faults.hit("data_load")
                    assert loaded is utts
                    feats, lengths = feats.to(self.device, non_blocking=True), lengths.to(self.device)
                    sync = (j == len(group) - 1) or not info.distributed
                    with (self.net.no_sync() if not sync else contextlib.nullcontext()):
                        loss, n_tokens = self.compute_loss(utts, feats, lengths, tok)
                    loss_dev += loss.double()
                    n_frames = float(lengths.sum())
                    self.loss_sum[1] += n_tokens
                    self.loss_sum[2] += n_frames
                    self.seen += n_frames
                    bar.advance(n_frames / 100.0)
                self._step()
                self.updates += 1
                self.pos += len(group)
                faults.hit("train_step")
                if self.updates % 25 == 0:  # reading the loss waits for the GPU: not every update
                    self.loss_sum[0] += float(loss_dev)
                    loss_dev.zero_()
                    bar.update(info=f"loss {float(self.loss_sum[0]) / max(1.0, float(self.loss_sum[1])):.3f} lr {lr:.3g}")
                if cfg.save_interval_updates and self.updates % cfg.save_interval_updates == 0 and self.pos < len(mine):
                    self.loss_sum[0] += float(loss_dev)
                    loss_dev.zero_()
                    self.save_last(self.pos, self.loss_sum)
            loader.close()
            self.loss_sum[0] += float(loss_dev)
        self.train_time = time.perf_counter() - t0
        return True

    # ----------------------------------------------------------------------- checkpoints, epochs

    def payload(self, source: str) -> dict:
        return model_payload(self.model, self.cfg, input_dim=self.train_fd.dim, tokens=self.tokens.tokens,
                             norm=self.norm, feats=self.train_fd.provenance, epoch=self.epoch,
                             updates=self.updates, source=source)

    def save_last(self, position: int, sums) -> None:
        """checkpoint_last.pt: everything to resume exactly at ``position`` of the current epoch
        (every rank's RNG state gathered to rank 0, the epoch's loss sums reduced)."""
        info = self.info
        sums = sums.clone()
        if info.distributed:
            sums = dist.reduce_to_cpu(sums, self.device)
        rng_all = gather_rng_states(info.distributed, info.world_size)
        if info.is_main:
            state = self.payload("last")
            # the layout of pre-training's checkpoint_last.pt: optimizer, scaler, rng (one state per
            # rank) and train_state (position, best so far, non-finite guard, world size)
            state.update({
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else {},
                "rng": rng_all,
                "train_state": {
                    "position": int(position), "epoch_done": bool(position >= self.per_rank),
                    "best_error": self.best_error, "best_epoch": self.best_epoch, "world_size": info.world_size,
                    "nonfinite": self.guard.state_dict(), "epoch_sums": sums,
                    "train_ids_sha256": _ids_digest(self.train_ids)},
            })
            self.manager.save(state, self.updates)
        dist.barrier()

    def validates_now(self) -> bool:
        """Validation costs about as much as an epoch on a small labeled set: ``valid_every`` > 1
        skips it (the last epoch is always validated; decoding reads checkpoint_avg.pt either way)."""
        return self.epoch % self.cfg.valid_every == 0 or self.epoch >= self.cfg.max_epochs

    def validate(self) -> dict:
        """Dev loss and greedy error rates of this epoch, or an empty record when it skips validation."""
        if self.validates_now():
            dev = evaluate(self.model, self.criterion, self.valid_fd, self.valid_labels, self.valid_batches, self.norm,
                           self.tokens, self.device, self.amp, self.info)
            self.dev_unit = dev["unit"]
            return dev
        return {"loss": None, "unit": self.dev_unit, "error": None, "wer": None, "time_s": 0.0}

    def end_of_epoch(self) -> None:
        """Validate, write the epoch's metrics and checkpoints, move to the next epoch."""
        cfg, info = self.cfg, self.info
        totals = dist.reduce_to_cpu(self.loss_sum, self.device) if info.distributed else self.loss_sum
        seen = dist.reduce_to_cpu(self.seen, self.device) if info.distributed else self.seen
        validated = self.validates_now()
        dev = self.validate()
        metric_value = dev["error"] if cfg.best_metric == "error" else dev["loss"]
        is_best = validated and (self.best_error is None or (metric_value is not None and metric_value < self.best_error))
        if is_best:
            self.best_error, self.best_epoch = metric_value, self.epoch
        record = {
            "epoch": self.epoch, "updates": self.updates, "lr": self.sched.lr_at(self.updates),
            "train_loss": float(totals[0]) / max(1.0, float(totals[1])),
            "dev_loss": dev["loss"], dev["unit"].lower(): dev["error"], "wer": dev.get("wer"),
            "time_s": round(self.train_time, 3), "eval_time_s": round(dev["time_s"], 3),
            "audio_s_per_s": float(seen[0]) / 100.0 / max(self.train_time, 1e-9),
            "train_utts": len(self.train_ids), "skipped_short_train": len(self.train_short),
            "skipped_short_dev_loss": len(self.valid_short), "nonfinite_skipped": self.guard.skipped,
            "best_epoch": self.best_epoch,
        }
        if self.epoch <= cfg.asg_linseg:
            record["train_loss_kind"] = "linseg"  # the warm-start loss, not comparable with ASG's
        if not math.isfinite(record["train_loss"]):
            raise W2vtkError(f"epoch {self.epoch}: the training loss is not finite; lower optim.lr")
        self.pos = self.per_rank
        # best / epoch / average files first, checkpoint_last last: a kill in between redoes the
        # epoch on resume (deterministically) instead of leaving a finished epoch without them
        if info.is_main:
            payload = self.payload(f"epoch {self.epoch}")
            if is_best:
                payload["source"] = f"best: epoch {self.epoch} ({cfg.best_metric} {metric_value})"
                save_checkpoint(payload, self.manager.best_path)
            if cfg.average_last > 0:
                payload["source"] = f"epoch {self.epoch}"
                save_checkpoint(payload, self.exp_dir / f"checkpoint_epoch{self.epoch}.pt")
                write_epoch_average(self.exp_dir, cfg.average_last, payload)
            self.metrics.write(record)
            print_epoch_table(record, dev["unit"], cfg.max_epochs, header=not self.rows_printed)
            self.rows_printed += 1
        self.save_last(self.pos, torch.zeros(3, dtype=torch.float64))
        self.epoch, self.pos = self.epoch + 1, 0

    def finish(self) -> TrainAMResult:
        cfg = self.cfg
        if self.info.is_main and cfg.average_last > 0 and not self.stopped_early:
            write_epoch_average(self.exp_dir, cfg.average_last, None)
        dist.barrier()
        return TrainAMResult(exp_dir=self.exp_dir, epochs_done=min(self.epoch - 1, cfg.max_epochs),
                             updates=self.updates, best_error=self.best_error, best_epoch=self.best_epoch,
                             skipped_short=len(self.train_short), num_train=len(self.train_ids),
                             num_valid=len(self.valid_fd.ids), stopped_early=self.stopped_early)

