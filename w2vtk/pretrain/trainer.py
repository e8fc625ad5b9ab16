"""The wav2vec pre-training loop: Adam + warm-up/cosine, clipping, accumulation, AMP, DDP, exact resume.

One update (``step`` counts consumed global batches, ``num_updates`` applied updates):

1. every process loads its ``update_freq`` micro-batches of the global batch (crops and negatives
   seeded by ``(seed, step, utterance index)``: independent of the number of processes);
2. forward + backward of the SUMMED contrastive loss of each micro-batch (DDP syncs gradients on
   the last one; fp16 scales the loss);
3. the statistics (loss sum, positives, correct counts) are all-reduced; gradients are divided by
   the global number of positives (so the update is that of the loss per positive over the whole
   global batch, whatever the split over processes; DDP's own averaging is undone by the factor
   ``world_size``);
4. the global gradient norm is clipped to ``clip_norm``; a non-finite loss or gradient skips the
   update (counted; ``max_nonfinite`` in a row stops the run; with fp16 a finite loss with an
   overflowing gradient is the scaler's business and only lowers the scale);
5. Adam steps with the lr of :class:`~w2vtk.training.LRSchedule` at ``num_updates``.

Checkpoints (rank 0, atomic; layout of :func:`w2vtk.models.fairseq.w2vtk_checkpoint`, loadable by
``load_wav2vec``) hold the model, the optimizer, the schedule, the scaler, every rank's RNG states,
the sampler position (``step``), the counters and the resolved config: resuming continues exactly.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from w2vtk import dist, faults, objectives
from w2vtk.checkpoint import load_checkpoint, require_entries
from w2vtk.config import read_yaml, save_config, to_dict
from w2vtk.errors import W2vtkError
from w2vtk.io import remove_stale_temporaries
from w2vtk.models.fairseq import w2vtk_checkpoint
from w2vtk.models.wav2vec import Wav2VecModel, count_parameters
from w2vtk.pretrain.config import PretrainConfig, config_from_dict
from w2vtk.pretrain.data import (CropDataset, TrainSampler, make_loader,
                                 minimum_samples, plan_batches, read_utterances, valid_microbatches)
from w2vtk.progress import console, progress
from w2vtk.sources import AudioSource
from w2vtk.training import (CheckpointManager, LRSchedule, MetricsLog, NonFiniteGuard, Throughput, autocast,
                            gather_rng_states, make_grad_scaler, resolve_amp, restore_training_state, resume_config,
                            seed_everything, setup_cpu)

# Order of the per-update statistics vector (all-reduced as one tensor).
STATS = ("loss", "positives", "logits", "binary_correct", "ranking_correct", "samples")


@dataclass
class DataSummary:
    """Utterances found / used / skipped as too short, and the batch plan, for one data source."""

    source: str
    found: int
    used: int
    skipped_short: int
    min_samples: int
    seconds: float
    num_batches: int
    utterances: list[AudioSource] = field(repr=False, default_factory=list)
    batches: list = field(repr=False, default_factory=list)

    def as_record(self) -> dict:
        return {"source": self.source, "found": self.found, "used": self.used,
                "skipped_short": self.skipped_short, "min_samples": self.min_samples,
                "hours": round(self.seconds / 3600, 4), "batches": self.num_batches}


@dataclass
class PretrainResult:
    exp_dir: str
    num_updates: int
    step: int
    train_loss: float | None
    valid: dict | None
    best_valid_loss: float | None
    skipped_nonfinite: int
    train_data: dict
    valid_data: dict | None
    resumed_from: int | None


def prepare_data(source: str | Path, cfg: PretrainConfig, num_slots: int, what: str) -> DataSummary:
    """Read, filter (too short: skipped and counted) and plan ``source``; W2vtkError on empty data
    or a budget smaller than one crop."""
    utts = read_utterances(source)
    model = cfg.model
    need = max(minimum_samples(model.conv_feature_layers, model.resolved_offset, model.prediction_steps),
               cfg.data.min_sample_size)
    used = [u for u in utts if u.num_samples >= need]
    if not used:
        raise W2vtkError(f"{source}: all {len(utts)} {what} utterances are shorter than {need} samples "
                         f"({need / 16000:.3f} s: receptive field + offset + prediction_steps frames"
                         f"{', min_sample_size' if cfg.data.min_sample_size > need else ''})")
    batches = plan_batches([u.num_samples for u in used], max_tokens=cfg.data.max_tokens,
                           max_sample_size=cfg.data.max_sample_size, num_slots=num_slots, where=f"{source}")
    return DataSummary(str(source), len(utts), len(used), len(utts) - len(used), need,
                       sum(u.num_samples for u in used) / 16000, len(batches), used, batches)


class Objective(torch.nn.Module):
    """Model + contrastive loss as one module, so that DDP sees (and syncs) the whole graph.

    forward(wave (B, T) samples, neg_idx (B, N, T') frames) -> (loss sum, positives, logits,
    binary correct, ranking correct), 0-dim tensors.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wave, neg_idx):
        out = self.model(wave)
        pred = self.model.project_steps(out.c)
        res = objectives.contrastive_loss(out.z, pred, neg_idx, self.model.offset,
                                          infonce=self.model.cfg.infonce)
        return res.loss, res.num_positives, res.num_logits, res.binary_correct, res.ranking_correct


def _log(msg: str, is_main: bool) -> None:
    if is_main:
        console.print(msg, highlight=False)


def _fmt(stats: dict) -> str:
    return (f"loss {stats['loss']:.4f} bin-acc {stats['binary_acc']:.3f} "
            f"rank-acc {stats['rank_acc']:.3f}")


def _summarise(vec) -> dict:
    v = {name: float(x) for name, x in zip(STATS, vec.tolist())}
    pos = max(v["positives"], 1.0)
    return {"loss": v["loss"] / pos, "binary_acc": v["binary_correct"] / max(v["logits"], 1.0),
            "rank_acc": v["ranking_correct"] / pos, "positives": int(v["positives"]),
            "audio_s": v["samples"] / 16000}


# Settings that say how to run, not what: a resumed run may change them without --allow-changes.
RUN_SETTINGS = ("threads", "device", "data.num_workers", "log_every")


def _saved_config(exp_dir: Path, ckpt: dict) -> dict | None:
    """The experiment's resolved config as a plain dict (config.yaml, else the checkpoint's copy),
    pre-0.2 flat layouts translated; None when neither exists."""
    path = exp_dir / "config.yaml"
    if path.is_file():
        return to_dict(config_from_dict(read_yaml(path), where=str(path)))
    saved = ckpt.get("train_config")
    return to_dict(config_from_dict(saved, where=f"{exp_dir}/checkpoint_last.pt")) if isinstance(saved, dict) else None


def pretrain(cfg: PretrainConfig, data: str | Path, exp_dir: str | Path, valid: str | Path | None = None,
             resume: bool | None = None, stop_at: int | None = None,
             allow_changes: bool = False) -> PretrainResult:
    """Pre-train wav2vec on ``data`` (Kaldi data dir, wav.scp, fairseq .tsv manifest or audio
    directory), validating on ``valid``, writing ``exp_dir``/{config.yaml, metrics.jsonl,
    checkpoint_last.pt, checkpoint_best.pt, checkpoint_<update>.pt}.

    ``resume`` None: resume when ``checkpoint_last.pt`` exists; True: require it; False: start over.
    A resumed run keeps ``config.yaml`` as it is; settings that differ from it are refused (one line
    listing them) unless ``allow_changes``, which keeps the old file as ``config.<N>.yaml``.
    ``stop_at``: stop (saving checkpoint_last.pt) once this many updates are done, e.g. to fit a
    cluster's time limit; the schedule still runs to ``cfg.optim.max_update`` and a resumed run continues
    exactly.
    Runs under torchrun as one process per device (the process group is set up here).  Every user
    mistake is found before anything in ``exp_dir`` is written.
    """
    cfg.validate()
    with dist.owned_group():
        run = _Pretrainer(cfg, data, Path(exp_dir), valid, resume, allow_changes)
        run.validate_at_start()
        run.start_training()
        end = cfg.optim.max_update if stop_at is None else min(cfg.optim.max_update, stop_at)
        with progress("pretrain", total=cfg.optim.max_update, unit="update", enabled=None) as bar:
            bar.update(completed=run.num_updates)
            while run.num_updates < end:
                if run.train_one_update():
                    bar.advance(1)
                    run.log_train(end, bar)
                    run.validate_and_save(end)
        return run.finish()


class _Pretrainer:
    """One process's pre-training run, icefall-style: ``__init__`` checks everything a user can get
    wrong, then builds (or resumes) model, optimiser, schedule and exp dir; ``train_one_update``,
    ``log_train`` and ``validate_and_save`` repeat until the last update; ``finish`` returns the result.
    Counters (``step``: consumed global batches, ``num_updates``: applied updates, ``best``) live on
    the instance and in every checkpoint's ``train_state``."""

    def __init__(self, cfg: PretrainConfig, data: str | Path, exp_dir: Path, valid: str | Path | None,
                 resume: bool | None, allow_changes: bool):
        self.cfg, self.exp_dir = cfg, exp_dir
        self.info, self.device = dist.init(cfg.device)
        self.is_main, self.W = self.info.is_main, self.info.world_size
        self.amp = resolve_amp(cfg.amp, self.device)
        if self.device.type == "cpu":
            setup_cpu(cfg.threads)
        self.num_slots = self.W * cfg.optim.update_freq
        # everything a user can get wrong is checked before exp_dir is touched
        self.train = prepare_data(data, cfg, self.num_slots, "training")
        self.vdata = prepare_data(valid, cfg, self.W, "validation") if valid is not None else None
        self.last_path = exp_dir / "checkpoint_last.pt"
        ckpt = self._check_resume(self.last_path.is_file() if resume is None else resume, allow_changes)
        self._build()
        self.step = self.num_updates = 0
        self.best = math.inf
        self.resumed_from = None
        if ckpt is not None:
            self._restore(ckpt)
        self._prepare_exp_dir(ckpt)
        self.dataset = CropDataset(self.train.utterances, cfg.seed, cfg.model.num_negatives,
                                   cfg.model.conv_feature_layers)
        self.valid_ds = (CropDataset(self.vdata.utterances, cfg.seed, cfg.model.num_negatives,
                                     cfg.model.conv_feature_layers) if self.vdata else None)
        self.last_valid = None
        self.train_loss = None

    def log(self, msg: str) -> None:
        _log(msg, self.is_main)

    # ------------------------------------------------------------------------------------ setup

    def _check_resume(self, resume: bool, allow_changes: bool) -> dict | None:
        """checkpoint_last.pt checked against this run's config (None: a fresh start); sets ``write_config``."""
        cfg, exp_dir, last_path = self.cfg, self.exp_dir, self.last_path
        self.write_config = True
        if not resume:
            return None
        if not last_path.is_file():
            raise W2vtkError(f"{exp_dir}: --resume given but there is no checkpoint_last.pt")
        ckpt = load_checkpoint(last_path)
        if not isinstance(ckpt, dict) or ckpt.get("kind") != "wav2vec" or "train_state" not in ckpt:
            raise W2vtkError(f"{last_path}: not a w2vtk pre-training checkpoint")
        require_entries(ckpt, last_path, "pre-training", {"model": dict, "optimizer": dict, "train_state": dict})
        ts = ckpt["train_state"]
        if not all(isinstance(ts.get(k), int) and not isinstance(ts.get(k), bool) and ts[k] >= 0
                   for k in ("step", "num_updates")):
            raise W2vtkError(f"{last_path}: not a usable pre-training checkpoint (train_state has no "
                             f"step / num_updates counts)")
        if ckpt.get("config") != to_dict(cfg.model):
            raise W2vtkError(f"{last_path}: the model config differs from the checkpoint's; use the "
                             "exp dir's config.yaml, or --no-resume with a new exp dir")
        self.write_config = resume_config(exp_dir, _saved_config(exp_dir, ckpt), to_dict(cfg), allow_changes,
                                          run_settings=RUN_SETTINGS, archive=self.is_main,
                                          log=lambda m: self.log(f"[yellow]{m}[/yellow]"))
        return ckpt

    def _build(self) -> None:
        """Model (seeded), its DDP wrapper, optimiser, schedule, loss scaler and non-finite guard."""
        cfg, device = self.cfg, self.device
        seed_everything(cfg.seed)
        self.model = Wav2VecModel(cfg.model).to(device)
        self.objective = Objective(self.model)
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # (wav2vec has no buffers, so DDP's buffer broadcasting has nothing to do.)
            self.wrapped = DDP(self.objective, device_ids=[device.index] if device.type == "cuda" else None,
                               gradient_as_bucket_view=True)
        else:
            self.wrapped = self.objective
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optim
        # fused: one kernel over all parameters (CPU and CUDA) instead of ~10 ops per tensor; on CPU
        # the per-tensor loop took ~9% of a base training step.
        self.optimizer = torch.optim.Adam(self.params, lr=o.warmup_init_lr, betas=tuple(o.adam_betas),
                                          eps=o.adam_eps, weight_decay=o.weight_decay, fused=True)
        self.schedule = LRSchedule(peak_lr=o.lr, max_update=o.max_update, warmup_updates=o.warmup_updates,
                                   warmup_init_lr=o.warmup_init_lr, min_lr=o.min_lr, kind=o.lr_scheduler)
        self.scaler = make_grad_scaler(self.amp, cfg.fp16_init_scale)
        self.guard = NonFiniteGuard(cfg.max_nonfinite)

    def _restore(self, ckpt: dict) -> None:
        ts, last_path = ckpt["train_state"], self.last_path
        # with another number of processes the RNG streams are left as seeded (the batches differ
        # anyway: the note below)
        restore_training_state(ckpt, last_path, model=self.model, optimizer=self.optimizer, scaler=self.scaler,
                               guard=self.guard, guard_state=ts.get("nonfinite", {}), rng_states=ckpt.get("rng") or [],
                               rank=self.info.rank, world_size=self.W)
        self.step, self.num_updates = int(ts["step"]), int(ts["num_updates"])
        self.best = float(ts.get("best_loss", math.inf))
        if int(ts.get("num_slots", self.num_slots)) != self.num_slots:
            self.log(f"[yellow]note: the checkpoint was trained with world_size x update_freq = "
                     f"{ts.get('num_slots')}, now {self.num_slots}: the batches differ from an uninterrupted run")
        self.resumed_from = self.num_updates

    def _prepare_exp_dir(self, ckpt: dict | None) -> None:
        """Outputs (rank 0): config.yaml, metrics.jsonl truncated to the resumed update, the start record."""
        cfg, exp_dir, train, vdata = self.cfg, self.exp_dir, self.train, self.vdata
        self.manager = CheckpointManager(exp_dir, cfg.checkpoint.keep_last)
        self.metrics = MetricsLog(exp_dir / "metrics.jsonl", enabled=self.is_main)
        if self.is_main:
            exp_dir.mkdir(parents=True, exist_ok=True)
            # a killed run's temporaries (a whole checkpoint each) are garbage once we restart
            remove_stale_temporaries(exp_dir, ("checkpoint_*.pt", "config.yaml", "metrics.jsonl"))
            if self.write_config:
                save_config(cfg, exp_dir / "config.yaml")
            if ckpt is not None:
                self.metrics.truncate_after(self.num_updates)
            elif self.metrics.path.exists():
                self.metrics.path.unlink()
        dist.barrier()
        params = count_parameters(self.model)
        self.metrics.write({"split": "start", "update": self.num_updates, "step": self.step, "world_size": self.W,
                            "update_freq": cfg.optim.update_freq, "device": str(self.device), "amp": self.amp,
                            "parameters": params, "train": train.as_record(),
                            "valid": vdata.as_record() if vdata else None, "resumed": ckpt is not None})
        self.log(f"pretrain: {train.used} utterances ({train.seconds / 3600:.2f} h; {train.skipped_short} "
                 f"shorter than {train.min_samples} samples skipped) in {train.num_batches} global batches; "
                 f"{params / 1e6:.2f}M parameters; {self.W} process(es) x update_freq "
                 f"{cfg.optim.update_freq}; {self.device} {self.amp if self.amp != 'none' else 'fp32'}"
                 + (f"; resuming at update {self.num_updates}" if ckpt is not None else ""))

    # ------------------------------------------------------------------------ validation, saving

    def validate(self) -> dict:
        """Loss and accuracies on the validation set (fixed crops and negatives), all ranks."""
        device, amp = self.device, self.amp
        self.model.eval()
        vec = torch.zeros(len(STATS), dtype=torch.float64)
        mbs = valid_microbatches(self.vdata.batches, self.info.rank, self.W)
        loader = make_loader(self.valid_ds, mbs, min(self.cfg.data.num_workers, max(1, len(mbs))))
        with torch.no_grad():
            for batch in loader:
                if "error" in batch:
                    raise W2vtkError(batch["error"])
                if batch["dummy"]:
                    continue
                with autocast(device, amp):
                    out = self.objective(batch["wave"].to(device), batch["neg_idx"].to(device))
                vec += torch.tensor([float(x) for x in out] + [batch["wave"].numel()], dtype=torch.float64)
        del loader
        self.model.train()
        vec = vec.to(device)
        dist.all_reduce_sum(vec)
        return _summarise(vec.cpu())

    def validate_at_start(self) -> None:
        if self.vdata is not None and self.resumed_from is None and self.cfg.checkpoint.validate_at_start:
            self.last_valid = self.validate()
            self.metrics.write({"split": "valid", "update": 0, **self.last_valid})
            self.log(f"valid @ 0: {_fmt(self.last_valid)}")

    def save(self, is_best: bool, numbered: bool) -> None:
        """checkpoint_last.pt (+ best / numbered copies): model, optimiser, schedule, scaler, every
        rank's RNG state (gathered to rank 0) and the counters."""
        cfg, n, W = self.cfg, self.num_updates, self.W
        rng = gather_rng_states(self.info.distributed, W)
        if not self.is_main:
            return
        state = w2vtk_checkpoint(
            self.model, num_updates=n, train_config=to_dict(cfg),
            optimizer=self.optimizer.state_dict(),
            scheduler={"kind": self.schedule.kind, "num_updates": n, "lr": self.schedule.lr_at(n)},
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            rng=rng,
            train_state={"step": self.step, "num_updates": n, "num_slots": self.num_slots,
                         "num_batches": self.train.num_batches, "epoch": self.step // self.train.num_batches,
                         "best_loss": self.best, "nonfinite": self.guard.state_dict(),
                         "valid": self.last_valid, "world_size": W, "update_freq": cfg.optim.update_freq})
        self.manager.save(state, n, is_best=is_best, numbered=numbered)

    # --------------------------------------------------------------------------------- training

    def start_training(self) -> None:
        """The training batches from the current ``step`` on (a resumed sampler starts where the
        checkpoint stopped), the model in training mode, the logging window and throughput meter."""
        sampler = TrainSampler(self.train.batches, seed=self.cfg.seed, rank=self.info.rank, world_size=self.W,
                               update_freq=self.cfg.optim.update_freq, start_step=self.step)
        self.loader = make_loader(self.dataset, sampler, self.cfg.data.num_workers)
        self.batches = iter(self.loader)
        self.model.train()
        self.window = torch.zeros(len(STATS), dtype=torch.float64)
        self.window_updates = 0
        self.meter = Throughput()

    def compute_loss(self, batch: dict, sync: bool):
        """Forward and backward of one micro-batch's SUMMED contrastive loss (DDP syncs gradients
        only when ``sync``; fp16 scales the loss); returns the objective's statistics tensors."""
        ctx = contextlib.nullcontext() if sync else self.wrapped.no_sync()
        with ctx:
            with autocast(self.device, self.amp):
                out = self.wrapped(batch["wave"].to(self.device, non_blocking=True),
                                   batch["neg_idx"].to(self.device, non_blocking=True))
            loss = out[0] * 0.0 if batch["dummy"] else out[0]
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return out

    def train_one_update(self) -> bool:
        """Consume one global batch (``step`` += 1) and apply its update unless the loss or gradient is
        not finite; True when the update was applied (``num_updates`` += 1)."""
        cfg, device, info = self.cfg, self.device, self.info
        batches = self.batches
        self.lr = self.schedule.apply(self.optimizer, self.num_updates)
        vec = torch.zeros(len(STATS), dtype=torch.float64, device=device)
        for m in range(cfg.optim.update_freq):
            batch = next(batches)
            faults.hit("data_load")
            if "error" in batch:
                raise W2vtkError(batch["error"])
            if batch["step"] != self.step:
                raise RuntimeError(f"sampler out of sync: batch of step {batch['step']} at step {self.step}")
            if batch["dummy"] and not info.distributed:
                continue
            out = self.compute_loss(batch, sync=not info.distributed or m == cfg.optim.update_freq - 1)
            if not batch["dummy"]:
                vec += torch.stack([x.detach().to(torch.float64) for x in out]
                                   + [torch.tensor(float(batch["wave"].numel()), dtype=torch.float64, device=device)])
        dist.all_reduce_sum(vec)
        self.step += 1
        applied = self._apply_update(vec)
        if applied:
            self.num_updates += 1
            faults.hit("train_step")
            stats_cpu = vec.cpu()
            self.window += stats_cpu
            self.window_updates += 1
            self.meter.add(float(stats_cpu[5]) / 16000)
        return applied

    def _apply_update(self, vec) -> bool:
        """Gradients divided by the global positives (undoing DDP's averaging), clipped, stepped
        unless non-finite (fp16 overflow: the scaler's business); True when the optimiser stepped."""
        scaler, optimizer = self.scaler, self.optimizer
        if scaler is not None:
            scaler.unscale_(optimizer)
        factor = self.W / max(float(vec[1]), 1.0)
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(factor)
        clip = self.cfg.optim.clip_norm
        self.gnorm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip > 0 else math.inf)
        loss_ok = bool(torch.isfinite(vec[0]))
        grad_ok = bool(torch.isfinite(self.gnorm))
        if scaler is not None and loss_ok and not grad_ok:
            scaler.step(optimizer)  # finds the overflow and skips; update() lowers the scale
            applied = False
        elif self.guard.ok(loss_ok and grad_ok, f"update {self.num_updates + 1} (step {self.step})"):
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()
            applied = True
        else:
            applied = False
            self.log(f"[yellow]update {self.num_updates + 1}: non-finite loss/gradient, skipped "
                     f"({self.guard.skipped} so far)")
        if scaler is not None:
            scaler.update()
            if scaler.get_scale() < 1e-4:  # fairseq's --min-loss-scale
                raise W2vtkError(f"fp16 loss scale fell below 1e-4 at update {self.num_updates + 1}: the "
                                 "gradients overflow even unscaled; use amp=bf16 or lower the lr")
        optimizer.zero_grad(set_to_none=True)
        return applied

    def log_train(self, end: int, bar) -> None:
        """Every ``log_every`` updates (and the last): the window's statistics to metrics.jsonl and the log."""
        cfg, n = self.cfg, self.num_updates
        if not (n % cfg.log_every == 0 or n == end):
            return
        s = _summarise(self.window)
        self.train_loss = s["loss"]
        rate = self.meter.rate()
        gnorm = float(self.gnorm)
        self.metrics.write({"split": "train", "update": n, "step": self.step,
                            "epoch": self.step // self.train.num_batches, **s, "lr": self.lr, "gnorm": gnorm,
                            "audio_s_per_s": rate, "updates": self.window_updates,
                            "skipped_nonfinite": self.guard.skipped, "time": time.time()})
        line = f"{_fmt(s)} lr {self.lr:.2e} gnorm {gnorm:.2f} {rate:,.1f} audio-s/s"
        bar.update(info=line)
        self.log(f"update {n}/{cfg.optim.max_update}: {line}")
        self.window.zero_()
        self.window_updates = 0

    def validate_and_save(self, end: int) -> None:
        """Validate every ``valid_every`` updates (and at max_update), save every ``save_every`` (and
        at ``end``) and whenever the validation (else training) loss is the best so far."""
        cfg, n = self.cfg, self.num_updates
        do_valid = self.vdata is not None and (n % cfg.checkpoint.valid_every == 0 or n == cfg.optim.max_update)
        do_save = n % cfg.checkpoint.save_every == 0 or n == end
        is_best = False
        if do_valid:
            self.last_valid = self.validate()
            is_best = self.last_valid["loss"] < self.best
            if is_best:
                self.best = self.last_valid["loss"]
            self.metrics.write({"split": "valid", "update": n, **self.last_valid, "best": is_best})
            self.log(f"valid @ {n}: {_fmt(self.last_valid)}{' (best)' if is_best else ''}")
            self.meter.rate()  # validation time is not training throughput
        elif self.vdata is None and do_save and self.train_loss is not None and self.train_loss < self.best:
            self.best, is_best = self.train_loss, True  # no validation set: best by training loss
        if do_save or is_best:
            self.save(is_best, numbered=n % cfg.checkpoint.save_every == 0)

    def finish(self) -> PretrainResult:
        del self.batches, self.loader  # stops the loader's worker processes before the barrier
        dist.barrier()
        best = self.best
        return PretrainResult(exp_dir=str(self.exp_dir), num_updates=self.num_updates, step=self.step,
                              train_loss=self.train_loss, valid=self.last_valid,
                              best_valid_loss=best if math.isfinite(best) else None,
                              skipped_nonfinite=self.guard.skipped, train_data=self.train.as_record(),
                              valid_data=self.vdata.as_record() if self.vdata else None,
                              resumed_from=self.resumed_from)
