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
from w2vtk.checkpoint import load_checkpoint, load_state, require_entries
from w2vtk.config import read_yaml, save_config, to_dict
from w2vtk.errors import W2vtkError
from w2vtk.io import remove_stale_temporaries
from w2vtk.models.fairseq import w2vtk_checkpoint
from w2vtk.models.wav2vec import Wav2VecModel, count_parameters
from w2vtk.pretrain.config import PretrainConfig, config_from_dict
from w2vtk.pretrain.data import (CropDataset, TrainSampler, Utterance, make_loader,
                                 minimum_samples, plan_batches, read_utterances, valid_microbatches)
from w2vtk.progress import console, progress
from w2vtk.training import (CheckpointManager, LRSchedule, MetricsLog, NonFiniteGuard, Throughput, autocast,
                            capture_rng_state, make_grad_scaler, resolve_amp, restore_rng_state, resume_config,
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
    utterances: list[Utterance] = field(repr=False, default_factory=list)
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
    import torch.distributed as tdist

    cfg.validate()
    exp_dir = Path(exp_dir)
    with dist.owned_group():
        info, device = dist.init(cfg.device)
        is_main = info.is_main
        W = info.world_size
        amp = resolve_amp(cfg.amp, device)
        if device.type == "cpu":
            setup_cpu(cfg.threads)
        num_slots = W * cfg.optim.update_freq

        # ---- everything a user can get wrong is checked before exp_dir is touched
        train = prepare_data(data, cfg, num_slots, "training")
        vdata = prepare_data(valid, cfg, W, "validation") if valid is not None else None
        last_path = exp_dir / "checkpoint_last.pt"
        if resume is None:
            resume = last_path.is_file()
        ckpt = None
        if resume:
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
            write_config = resume_config(exp_dir, _saved_config(exp_dir, ckpt), to_dict(cfg), allow_changes,
                                         run_settings=RUN_SETTINGS, archive=is_main,
                                         log=lambda m: _log(f"[yellow]{m}[/yellow]", is_main))
        else:
            write_config = True

        # ---- model, optimiser, schedule
        seed_everything(cfg.seed)
        model = Wav2VecModel(cfg.model).to(device)
        objective = Objective(model)
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # (wav2vec has no buffers, so DDP's buffer broadcasting has nothing to do.)
            wrapped = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None,
                          gradient_as_bucket_view=True)
        else:
            wrapped = objective
        params = [p for p in model.parameters() if p.requires_grad]
        # fused: one kernel over all parameters (CPU and CUDA) instead of ~10 ops per tensor; on CPU
        # the per-tensor loop took ~9% of a base training step.
        optimizer = torch.optim.Adam(params, lr=cfg.optim.warmup_init_lr, betas=tuple(cfg.optim.adam_betas),
                                     eps=cfg.optim.adam_eps, weight_decay=cfg.optim.weight_decay, fused=True)
        o = cfg.optim
        schedule = LRSchedule(peak_lr=o.lr, max_update=o.max_update, warmup_updates=o.warmup_updates,
                              warmup_init_lr=o.warmup_init_lr, min_lr=o.min_lr, kind=o.lr_scheduler)
        scaler = make_grad_scaler(amp, cfg.fp16_init_scale)
        guard = NonFiniteGuard(cfg.max_nonfinite)
        step = num_updates = 0
        best = math.inf
        resumed_from = None
        if ckpt is not None:
            ts = ckpt["train_state"]
            load_state(model, ckpt["model"], last_path)
            load_state(optimizer, ckpt["optimizer"], last_path, "optimizer")
            if scaler is not None and ckpt.get("scaler"):
                load_state(scaler, ckpt["scaler"], last_path, "grad scaler")
            load_state(guard, ts.get("nonfinite", {}), last_path, "non-finite guard")
            step, num_updates = int(ts["step"]), int(ts["num_updates"])
            best = float(ts.get("best_loss", math.inf))
            rng = ckpt.get("rng") or []
            if len(rng) == W:
                restore_rng_state(rng[info.rank])
            if int(ts.get("num_slots", num_slots)) != num_slots:
                _log(f"[yellow]note: the checkpoint was trained with world_size x update_freq = "
                     f"{ts.get('num_slots')}, now {num_slots}: the batches differ from an uninterrupted run",
                     is_main)
            resumed_from = num_updates
        # ---- outputs (rank 0)
        manager = CheckpointManager(exp_dir, cfg.checkpoint.keep_last)
        metrics = MetricsLog(exp_dir / "metrics.jsonl", enabled=is_main)
        if is_main:
            exp_dir.mkdir(parents=True, exist_ok=True)
            # a killed run's temporaries (a whole checkpoint each) are garbage once we restart
            remove_stale_temporaries(exp_dir, ("checkpoint_*.pt", "config.yaml", "metrics.jsonl"))
            if write_config:
                save_config(cfg, exp_dir / "config.yaml")
            if ckpt is not None:
                metrics.truncate_after(num_updates)
            elif metrics.path.exists():
                metrics.path.unlink()
        dist.barrier()
        metrics.write({"split": "start", "update": num_updates, "step": step, "world_size": W,
                       "update_freq": cfg.optim.update_freq, "device": str(device), "amp": amp,
                       "parameters": count_parameters(model), "train": train.as_record(),
                       "valid": vdata.as_record() if vdata else None, "resumed": ckpt is not None})
        _log(f"pretrain: {train.used} utterances ({train.seconds / 3600:.2f} h; {train.skipped_short} "
             f"shorter than {train.min_samples} samples skipped) in {train.num_batches} global batches; "
             f"{count_parameters(model) / 1e6:.2f}M parameters; {W} process(es) x update_freq "
             f"{cfg.optim.update_freq}; {device} {amp if amp != 'none' else 'fp32'}"
             + (f"; resuming at update {num_updates}" if ckpt is not None else ""), is_main)

        dataset = CropDataset(train.utterances, cfg.seed, cfg.model.num_negatives, cfg.model.conv_feature_layers)
        valid_ds = (CropDataset(vdata.utterances, cfg.seed, cfg.model.num_negatives,
                                cfg.model.conv_feature_layers) if vdata else None)

        def run_valid() -> dict:
            """Loss and accuracies on the validation set (fixed crops and negatives), all ranks."""
            model.eval()
            vec = torch.zeros(len(STATS), dtype=torch.float64)
            mbs = valid_microbatches(vdata.batches, info.rank, W)
            loader = make_loader(valid_ds, mbs, min(cfg.data.num_workers, max(1, len(mbs))))
            with torch.no_grad():
                for batch in loader:
                    if "error" in batch:
                        raise W2vtkError(batch["error"])
                    if batch["dummy"]:
                        continue
                    with autocast(device, amp):
                        out = objective(batch["wave"].to(device), batch["neg_idx"].to(device))
                    vec += torch.tensor([float(x) for x in out] + [batch["wave"].numel()], dtype=torch.float64)
            del loader
            model.train()
            vec = vec.to(device)
            dist.all_reduce_sum(vec)
            return _summarise(vec.cpu())

        def save(is_best: bool, numbered: bool, valid_stats: dict | None) -> None:
            rng = [capture_rng_state()]
            if info.distributed:
                rng = [None] * W
                tdist.all_gather_object(rng, capture_rng_state())
            if not is_main:
                return
            state = w2vtk_checkpoint(
                model, num_updates=num_updates, train_config=to_dict(cfg),
                optimizer=optimizer.state_dict(),
                scheduler={"kind": schedule.kind, "num_updates": num_updates, "lr": schedule.lr_at(num_updates)},
                scaler=scaler.state_dict() if scaler is not None else None,
                rng=rng,
                train_state={"step": step, "num_updates": num_updates, "num_slots": num_slots,
                             "num_batches": train.num_batches, "epoch": step // train.num_batches,
                             "best_loss": best, "nonfinite": guard.state_dict(),
                             "valid": valid_stats, "world_size": W, "update_freq": cfg.optim.update_freq})
            manager.save(state, num_updates, is_best=is_best, numbered=numbered)

        last_valid = None
        if vdata is not None and ckpt is None and cfg.checkpoint.validate_at_start:
            last_valid = run_valid()
            metrics.write({"split": "valid", "update": 0, **last_valid})
            _log(f"valid @ 0: {_fmt(last_valid)}", is_main)

        sampler = TrainSampler(train.batches, seed=cfg.seed, rank=info.rank, world_size=W,
                               update_freq=cfg.optim.update_freq, start_step=step)
        loader = make_loader(dataset, sampler, cfg.data.num_workers)
        batches = iter(loader)
        model.train()
        window = torch.zeros(len(STATS), dtype=torch.float64)
        window_updates = 0
        meter = Throughput()
        train_loss = None
        with progress("pretrain", total=cfg.optim.max_update, unit="update", enabled=None) as bar:
            bar.update(completed=num_updates)
            end = cfg.optim.max_update if stop_at is None else min(cfg.optim.max_update, stop_at)
            while num_updates < end:
                lr = schedule.apply(optimizer, num_updates)
                vec = torch.zeros(len(STATS), dtype=torch.float64, device=device)
                for m in range(cfg.optim.update_freq):
                    batch = next(batches)
                    faults.hit("data_load")
                    if "error" in batch:
                        raise W2vtkError(batch["error"])
                    if batch["step"] != step:
                        raise RuntimeError(f"sampler out of sync: batch of step {batch['step']} at step {step}")
                    if batch["dummy"] and not info.distributed:
                        continue
                    sync = (not info.distributed or m == cfg.optim.update_freq - 1)
                    ctx = contextlib.nullcontext() if sync else wrapped.no_sync()
                    with ctx:
                        with autocast(device, amp):
                            out = wrapped(batch["wave"].to(device, non_blocking=True),
                                          batch["neg_idx"].to(device, non_blocking=True))
                        loss = out[0] * 0.0 if batch["dummy"] else out[0]
                        (scaler.scale(loss) if scaler is not None else loss).backward()
                    if not batch["dummy"]:
                        vec += torch.stack([x.detach().to(torch.float64) for x in out]
                                           + [torch.tensor(float(batch["wave"].numel()), dtype=torch.float64,
                                                           device=device)])
                dist.all_reduce_sum(vec)
                count = float(vec[1])
                if scaler is not None:
                    scaler.unscale_(optimizer)
                factor = W / max(count, 1.0)
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(factor)
                clip = cfg.optim.clip_norm
                gnorm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
                loss_ok = bool(torch.isfinite(vec[0]))
                grad_ok = bool(torch.isfinite(gnorm))
                step += 1
                if scaler is not None and loss_ok and not grad_ok:
                    scaler.step(optimizer)  # finds the overflow and skips; update() lowers the scale
                    applied = False
                elif guard.ok(loss_ok and grad_ok, f"update {num_updates + 1} (step {step})"):
                    if scaler is not None:
                        scaler.step(optimizer)
                    else:
                        optimizer.step()
                    applied = True
                else:
                    applied = False
                    _log(f"[yellow]update {num_updates + 1}: non-finite loss/gradient, skipped "
                         f"({guard.skipped} so far)", is_main)
                if scaler is not None:
                    scaler.update()
                    if scaler.get_scale() < 1e-4:  # fairseq's --min-loss-scale
                        raise W2vtkError(f"fp16 loss scale fell below 1e-4 at update {num_updates + 1}: the "
                                         "gradients overflow even unscaled; use amp=bf16 or lower the lr")
                optimizer.zero_grad(set_to_none=True)
                if not applied:
                    continue
                num_updates += 1
                faults.hit("train_step")
                stats_cpu = vec.cpu()
                window += stats_cpu
                window_updates += 1
                meter.add(float(stats_cpu[5]) / 16000)
                bar.advance(1)

                if num_updates % cfg.log_every == 0 or num_updates == end:
                    s = _summarise(window)
                    train_loss = s["loss"]
                    rate = meter.rate()
                    rec = {"split": "train", "update": num_updates, "step": step,
                           "epoch": step // train.num_batches, **s, "lr": lr, "gnorm": float(gnorm),
                           "audio_s_per_s": rate, "updates": window_updates,
                           "skipped_nonfinite": guard.skipped, "time": time.time()}
                    metrics.write(rec)
                    line = f"{_fmt(s)} lr {lr:.2e} gnorm {float(gnorm):.2f} {rate:,.1f} audio-s/s"
                    bar.update(info=line)
                    _log(f"update {num_updates}/{cfg.optim.max_update}: {line}", is_main)
                    window.zero_()
                    window_updates = 0

                do_valid = vdata is not None and (num_updates % cfg.checkpoint.valid_every == 0
                                                  or num_updates == cfg.optim.max_update)
                do_save = num_updates % cfg.checkpoint.save_every == 0 or num_updates == end
                is_best = False
                if do_valid:
                    last_valid = run_valid()
                    is_best = last_valid["loss"] < best
                    if is_best:
                        best = last_valid["loss"]
                    metrics.write({"split": "valid", "update": num_updates, **last_valid, "best": is_best})
                    _log(f"valid @ {num_updates}: {_fmt(last_valid)}{' (best)' if is_best else ''}", is_main)
                    meter.rate()  # validation time is not training throughput
                elif vdata is None and do_save and train_loss is not None and train_loss < best:
                    best, is_best = train_loss, True  # no validation set: best by training loss
                if do_save or is_best:
                    save(is_best, numbered=num_updates % cfg.checkpoint.save_every == 0, valid_stats=last_valid)
        del batches, loader
        dist.barrier()
        return PretrainResult(exp_dir=str(exp_dir), num_updates=num_updates, step=step, train_loss=train_loss,
                              valid=last_valid, best_valid_loss=best if math.isfinite(best) else None,
                              skipped_nonfinite=guard.skipped, train_data=train.as_record(),
                              valid_data=vdata.as_record() if vdata else None, resumed_from=resumed_from)
