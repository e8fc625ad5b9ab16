"""``w2vtk train-am``: CTC training of a conv acoustic model on a feature data dir.

Exp dir contents: ``checkpoint_last.pt`` (everything needed to resume exactly: model, optimizer,
update count, every rank's RNG states, sampler position, best so far), ``checkpoint_best.pt``
(model of the epoch with the lowest dev error), ``checkpoint_epoch<N>.pt`` (model only, the last
``average_last`` epochs), ``checkpoint_avg.pt`` (their mean), ``tokens.txt`` (+ ``spm.model``),
``feats.yaml`` (the training features' provenance), ``config.yaml`` (resolved), ``global_cmvn.npz``
(global normalisation only) and ``metrics.jsonl`` (one record per epoch).

Loss: torch's CTC loss summed over utterances and divided by the number of target tokens of the
whole update (all micro-batches, all ranks), i.e. a per-token loss, which keeps the gradient scale
independent of batch size, accumulation and world size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2vtk import __version__, dist, faults
from w2vtk.am.config import TrainAMConfig
from w2vtk.am.data import (FeatureDir, Normaliser, check_provenance, ctc_min_frames, epoch_order,
                           global_stats, load_feature_dir, make_batches, stats_to_mean_std)
from w2vtk.am.metrics import DevScorer
from w2vtk.checkpoint import AM_CHECKPOINT_KIND, load_checkpoint, load_state, require_entries, save_checkpoint
from w2vtk.config import apply_renames, from_dict, load_config, save_config, to_dict
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open, atomic_write_bytes, remove_stale_temporaries
from w2vtk.models.am import AMConfig, build_am, num_parameters, output_length
from w2vtk.progress import console, progress
from w2vtk.tokens import TokenSet, ctc_collapse
from w2vtk.training import (LRSchedule, MetricsLog, NonFiniteGuard, autocast, capture_rng_state, make_grad_scaler,
                            resolve_amp, restore_rng_state, resume_config, seed_everything, setup_cpu)

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


def _pad_batch(fd: FeatureDir, utts: list[str], norm: Normaliser):
    """Load, normalise and zero-pad: ((B, T, C) float32 tensor, (B,) frame counts)."""
    import torch

    mats = [norm(fd.load(u)) for u in utts]
    lengths = torch.tensor([m.shape[0] for m in mats], dtype=torch.long)
    out = np.zeros((len(mats), int(lengths.max()), fd.dim), dtype=np.float32)
    for i, m in enumerate(mats):
        out[i, : m.shape[0]] = m
    return torch.from_numpy(out), lengths


def _reduce(t, device):
    """Sum a small CPU tensor over ranks and return it on the CPU (NCCL only reduces CUDA tensors)."""
    if device.type == "cuda":
        return dist.all_reduce_sum(t.to(device)).cpu()
    return dist.all_reduce_sum(t.clone())


def _ids_digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def _prefetch(batches: list[list[str]], load, depth: int = 2):
    """Yield (batch, load(batch)) with the next ``depth`` batches read and normalised in a
    background thread, so archive reading overlaps the model's compute (numpy and file reads
    release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(load, b) for b in batches[:depth]]
        for i, batch in enumerate(batches):
            result = pending.pop(0).result()
            if i + depth < len(batches):
                pending.append(pool.submit(load, batches[i + depth]))
            yield batch, result


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


def _average_states(paths: list[Path]) -> dict:
    total = None
    for p in paths:
        state = load_checkpoint(p)["model"]
        if total is None:
            total = {k: v.double().clone() for k, v in state.items()}
        else:
            for k, v in state.items():
                total[k] += v.double()
    return {k: (v / len(paths)).float() for k, v in total.items()}


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
    import torch
    import torch.nn.functional as F

    lang_dir, train_dir, valid_dir, exp_dir = Path(lang_dir), Path(train_dir), Path(valid_dir), Path(exp_dir)
    info, device = dist.init(cfg.device)
    if device.type == "cpu":
        setup_cpu()
    amp = resolve_amp(cfg.amp, device)
    if not lang_dir.is_dir() or not (lang_dir / "tokens.txt").is_file():
        raise W2vtkError(f"{lang_dir}: no tokens.txt (make it with `w2vtk prep lang`)")
    tokens = TokenSet.load(lang_dir)

    # ---- data
    train_fd = load_feature_dir(train_dir)
    valid_fd = load_feature_dir(valid_dir)
    for fd in (train_fd, valid_fd):
        if fd.dropped_no_text or fd.dropped_no_feats:
            _log(f"[yellow]{fd.path}: {len(fd.ids)} utterances have features and a transcript; "
                 f"{len(fd.dropped_no_text)} with features but no text and {len(fd.dropped_no_feats)} "
                 f"with text but no features are left out[/yellow]", info)
    if valid_fd.dim != train_fd.dim:
        raise W2vtkError(f"{valid_dir}: features have dimension {valid_fd.dim}, the training features "
                         f"({train_dir}) {train_fd.dim}")
    diffs = check_provenance(train_fd.provenance, valid_fd.provenance, where=str(valid_dir),
                             allow_mismatch=allow_feature_mismatch)
    for d in diffs:
        _log(f"[yellow]warning: {valid_dir}: {d} (allowed by --allow-feature-mismatch)[/yellow]", info)
    if train_fd.provenance is None:
        _log(f"[yellow]warning: {train_dir} has no feats.yaml: feature provenance cannot be checked later"
             f"[/yellow]", info)
    train_labels = _encode_labels(train_fd, tokens)
    valid_labels = _encode_labels(valid_fd, tokens)

    # ---- resume or start
    last_path = exp_dir / "checkpoint_last.pt"
    ckpt: dict | None = None
    if last_path.is_file():
        ckpt = load_checkpoint(last_path)
        if not isinstance(ckpt, dict) or ckpt.get("kind") != CKPT_KIND or "optimizer" not in ckpt:
            raise W2vtkError(f"{last_path}: not a w2vtk acoustic-model training checkpoint")
        require_entries(ckpt, last_path, "acoustic-model training",
                        {"model_config": dict, "model": dict, "optimizer": dict, "input_dim": int,
                         "tokens": list, "normaliser": dict, "epoch": int, "position": int, "updates": int})
        if not isinstance(ckpt["normaliser"].get("mode"), str):
            raise W2vtkError(f"{last_path}: not a usable acoustic-model training checkpoint (bad 'normaliser')")
        old_model = from_dict(AMConfig, ckpt["model_config"], where=f"{last_path}:model")
        if to_dict(old_model) != to_dict(cfg.model):
            raise W2vtkError(f"{last_path}: the model section of the config differs from the one this "
                             f"experiment was started with; use a new --exp dir")
        if ckpt["input_dim"] != train_fd.dim:
            raise W2vtkError(f"{train_dir}: features have dimension {train_fd.dim} but the model in "
                             f"{last_path} takes {ckpt['input_dim']}-dim features")
        if list(ckpt["tokens"]) != list(tokens.tokens):
            raise W2vtkError(f"{lang_dir}/tokens.txt differs from the token set of {last_path}")
        check_provenance(ckpt.get("feats"), train_fd.provenance, where=f"{train_dir} (resuming {exp_dir})",
                         allow_mismatch=allow_feature_mismatch)
        if ckpt["normaliser"]["mode"] != cfg.normalisation:
            raise W2vtkError(f"{last_path}: trained with normalisation={ckpt['normaliser']['mode']}, the config "
                             f"asks for {cfg.normalisation}; use a new --exp dir")
        write_config = resume_config(exp_dir, saved_am_config(exp_dir, ckpt), to_dict(cfg), allow_changes,
                                     run_settings=RUN_SETTINGS, archive=info.is_main,
                                     log=lambda m: _log(f"[yellow]{m}[/yellow]", info))
    else:
        write_config = True
        stale = sorted(p.name for p in exp_dir.glob("checkpoint_*.pt")) if exp_dir.is_dir() else []
        if stale:
            raise W2vtkError(f"{exp_dir}: holds {', '.join(stale[:3])} but no checkpoint_last.pt to resume "
                             f"from; use a new --exp dir or remove them")

    seed_everything(cfg.seed + 1000 * info.rank)
    model = build_am(cfg.model, train_fd.dim, len(tokens.tokens)).to(device)

    # ---- CTC feasibility: drop (and count) utterances too short for their labels
    def feasible(fd: FeatureDir, labels: dict[str, list[int]]) -> tuple[list[str], list[str]]:
        ok, short = [], []
        for utt in fd.ids:
            t_out = output_length(fd.frames[utt], cfg.model.layers)
            (ok if t_out >= ctc_min_frames(labels[utt]) and t_out > 0 else short).append(utt)
        return ok, short

    train_ids, train_short = feasible(train_fd, train_labels)
    _, valid_short = feasible(valid_fd, valid_labels)
    if train_short:
        _log(f"[yellow]{train_dir}: {len(train_short)} utterances are too short for their transcript under "
             f"CTC at stride {model.stride} and are skipped (e.g. {', '.join(train_short[:3])})[/yellow]", info)
    if valid_short:
        _log(f"[yellow]{valid_dir}: {len(valid_short)} utterances are too short for their transcript under CTC: "
             f"left out of the dev loss, kept in the dev error rates[/yellow]", info)
    if not train_ids:
        raise W2vtkError(f"{train_dir}: no training utterance left after filtering "
                         f"({len(train_short)} too short for their transcripts)")

    # ---- normalisation
    if ckpt is not None:
        try:
            norm = Normaliser.from_state(ckpt["normaliser"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise W2vtkError(f"{last_path}: not a usable acoustic-model training checkpoint (bad 'normaliser')") from None
    elif cfg.normalisation == "global":
        idx = dist.shard_indices(len(train_ids), info.world_size, info.rank)
        s, ss, n = global_stats(train_fd, [train_ids[i] for i in idx])
        packed = torch.from_numpy(np.concatenate([s, ss, [n]])).double()
        packed = _reduce(packed, device).numpy()
        mean, std = stats_to_mean_std(packed[: train_fd.dim], packed[train_fd.dim: 2 * train_fd.dim],
                                      float(packed[-1]))
        norm = Normaliser("global", mean, std)
    else:
        norm = Normaliser(cfg.normalisation)

    # ---- exp dir
    if info.is_main:
        exp_dir.mkdir(parents=True, exist_ok=True)
        # a killed run's temporaries (a whole checkpoint each) are garbage once we restart
        remove_stale_temporaries(exp_dir, ("checkpoint_*.pt", "config.yaml", "metrics.jsonl", "feats.yaml",
                                           "global_cmvn.npz", *LANG_FILES))
        _copy_lang(lang_dir, exp_dir)
        if ckpt is None:
            if (train_dir / "feats.yaml").is_file():
                atomic_write_bytes(exp_dir / "feats.yaml", (train_dir / "feats.yaml").read_bytes())
            if norm.mode == "global":
                with atomic_open(exp_dir / "global_cmvn.npz", "wb", encoding=None) as fh:
                    np.savez(fh, mean=norm.mean, std=norm.std)
        if write_config:
            save_config(cfg, exp_dir / "config.yaml")
    dist.barrier()

    # ---- batches
    batches = make_batches(train_ids, train_fd.frames, cfg.batch.max_frames, cfg.batch.max_utts)
    accum = cfg.batch.accum
    per_rank = len(epoch_order(len(batches), cfg.seed, 1, info.world_size, accum)) // info.world_size
    updates_per_epoch = per_rank // accum
    valid_batches = make_batches(valid_fd.ids, valid_fd.frames, cfg.batch.valid_max_frames, 10 ** 9)

    # ---- optimiser and schedule
    if cfg.optim.name == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                    nesterov=cfg.optim.nesterov, weight_decay=cfg.optim.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                     eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
    sched = LRSchedule(peak_lr=cfg.optim.lr, max_update=max(1, cfg.max_epochs * updates_per_epoch),
                       warmup_updates=cfg.schedule.warmup_updates,
                       warmup_init_lr=cfg.schedule.warmup_init_lr, min_lr=cfg.schedule.final_lr,
                       kind=cfg.schedule.decay)
    scaler = make_grad_scaler(amp)
    guard = NonFiniteGuard(10)

    epoch, pos, updates = 1, 0, 0
    dev_unit = DevScorer(tokens).unit_name   # the error key of an unvalidated epoch's record
    best_error: float | None = None
    best_epoch: int | None = None
    if ckpt is not None:
        load_state(model, ckpt["model"], last_path)
        load_state(optimizer, ckpt["optimizer"], last_path, "optimizer")
        if scaler is not None and ckpt.get("scaler"):
            load_state(scaler, ckpt["scaler"], last_path, "grad scaler")
        load_state(guard, ckpt.get("guard", {}), last_path, "non-finite guard")
        epoch, pos, updates = int(ckpt["epoch"]), int(ckpt["position"]), int(ckpt["updates"])
        best_error, best_epoch = ckpt.get("best_error"), ckpt.get("best_epoch")
        rng = ckpt.get("rng_per_rank") or []
        if len(rng) == info.world_size:
            restore_rng_state(rng[info.rank])
        else:
            _log(f"[yellow]warning: resuming with {info.world_size} processes instead of {len(rng)}: "
                 f"dropout randomness is reseeded, so this run will not match an uninterrupted one[/yellow]",
                 info)
            seed_everything(cfg.seed + 1000 * info.rank + 7919 * updates)
        if ckpt.get("epoch_done", pos >= per_rank):
            epoch, pos = epoch + 1, 0
        elif int(ckpt.get("world_size", 1)) != info.world_size:
            # same place in the epoch's global batch order, rounded down to a whole update
            pos = (pos * int(ckpt.get("world_size", 1)) // info.world_size) // accum * accum
        if ckpt.get("train_ids_sha256") not in (None, _ids_digest(train_ids)):
            _log(f"[yellow]warning: the training utterances differ from the ones {last_path} was trained on: "
                 f"the epoch's batches change, so this run will not match an uninterrupted one[/yellow]", info)
        _log(f"resuming {exp_dir} at epoch {epoch}, update {updates}", info)

    net = model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    metrics = MetricsLog(exp_dir / "metrics.jsonl", enabled=info.is_main, key="epoch")
    if ckpt is not None:
        metrics.truncate_after(int(ckpt["epoch"]) - (0 if ckpt.get("epoch_done", int(ckpt["position"]) >= per_rank) else 1))
    else:
        metrics.truncate_after(0)

    if info.is_main:
        _log(f"train-am: {len(train_ids)} training utterances ({sum(train_fd.frames[u] for u in train_ids) / 360000:.2f} h), "
             f"{len(valid_fd.ids)} dev, {train_fd.dim}-dim features, {len(tokens.tokens)} tokens ({tokens.type}), "
             f"{num_parameters(model) / 1e6:.2f}M parameters, stride {model.stride}, device {device}, "
             f"{info.world_size} process(es), {updates_per_epoch} updates/epoch", info)

    rows_printed = 0

    def rank_batches(ep: int) -> list[list[str]]:
        order = epoch_order(len(batches), cfg.seed, ep, info.world_size, accum)
        return [batches[i] for i in order[info.rank::info.world_size]]

    carried = torch.zeros(3, dtype=torch.float64)  # epoch sums of an interrupted epoch (rank 0 keeps them)
    if ckpt is not None and info.is_main and pos > 0:
        carried = ckpt.get("epoch_sums", carried).double()

    def save_last(ep: int, position: int, sums) -> None:
        sums = sums.clone()
        if info.distributed:
            sums = _reduce(sums, device)
        rng_all = [capture_rng_state()]
        if info.distributed:
            import torch.distributed as tdist

            rng_all = [None] * info.world_size
            tdist.all_gather_object(rng_all, capture_rng_state())
        if info.is_main:
            state = model_payload(model, cfg, input_dim=train_fd.dim, tokens=tokens.tokens, norm=norm,
                                  feats=train_fd.provenance, epoch=ep, updates=updates, source="last")
            state.update({
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                "guard": guard.state_dict(), "position": int(position), "rng_per_rank": rng_all,
                "best_error": best_error, "best_epoch": best_epoch, "world_size": info.world_size,
                "epoch_sums": sums, "epoch_done": bool(position >= per_rank),
                "train_ids_sha256": _ids_digest(train_ids),
            })
            save_checkpoint(state, last_path)
        dist.barrier()

    stopped_early = False
    while epoch <= cfg.max_epochs:
        mine = rank_batches(epoch)
        net.train()
        t0 = time.perf_counter()
        loss_sum = carried.clone()  # CTC loss, target tokens, input frames (this rank)
        carried.zero_()
        seen = torch.zeros(1, dtype=torch.float64)  # frames trained on in this process's run of the epoch
        with progress(f"epoch {epoch}", total=sum(train_fd.frames[u] for b in mine[pos:] for u in b) / 100.0,
                      unit="audio-s") as bar:
            loader = _prefetch(mine[pos:], lambda b: _pad_batch(train_fd, b, norm))
            loss_dev = torch.zeros((), dtype=torch.float64, device=device)
            while pos < len(mine):
                if cfg.optim.max_update and updates >= cfg.optim.max_update:
                    loss_sum[0] += float(loss_dev)
                    loss_dev.zero_()
                    save_last(epoch, pos, loss_sum)
                    stopped_early = True
                    break
                group = mine[pos: pos + accum]
                lab_group = [[train_labels[u] for u in b] for b in group]
                tok = torch.tensor([float(sum(len(lab) for labs in lab_group for lab in labs))], dtype=torch.float64)
                tok = float(_reduce(tok, device)[0]) if info.distributed else float(tok[0])
                lr = sched.apply(optimizer, updates)
                optimizer.zero_grad(set_to_none=True)
                for j, (utts, labs) in enumerate(zip(group, lab_group)):
                    loaded, (feats, lengths) = next(loader)
                    faults.hit("data_load")
                    assert loaded is utts
                    feats, lengths = feats.to(device, non_blocking=True), lengths.to(device)
                    targets = torch.tensor([i for lab in labs for i in lab], dtype=torch.long)
                    target_lengths = torch.tensor([len(lab) for lab in labs], dtype=torch.long)
                    sync = (j == len(group) - 1) or not info.distributed
                    ctx = net.no_sync() if not sync else _null()
                    with ctx:
                        with autocast(device, amp):
                            logits, out_lengths = net(feats, lengths)
                        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
                        loss = F.ctc_loss(log_probs, targets.to(device), out_lengths, target_lengths.to(device),
                                          blank=0, reduction="sum", zero_infinity=False)
                        scaled = loss * (info.world_size / max(tok, 1.0))
                        if scaler is not None:
                            scaler.scale(scaled).backward()
                        else:
                            scaled.backward()
                    loss_dev += loss.detach().double()
                    n_frames = float(lengths.sum())
                    loss_sum[1] += float(target_lengths.sum())
                    loss_sum[2] += n_frames
                    seen += n_frames
                    bar.advance(n_frames / 100.0)
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if cfg.optim.clip_norm > 0:
                    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_norm)
                else:
                    gnorm = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters()
                                           if p.grad is not None))
                finite = bool(torch.isfinite(gnorm))
                if scaler is not None:
                    scaler.step(optimizer)  # skips by itself on inf/nan gradients
                    scaler.update()
                elif guard.ok(finite, f"epoch {epoch} update {updates + 1}"):
                    optimizer.step()
                updates += 1
                pos += len(group)
                faults.hit("train_step")
                if updates % 25 == 0:  # reading the loss waits for the GPU: not every update
                    loss_sum[0] += float(loss_dev)
                    loss_dev.zero_()
                    bar.update(info=f"loss {float(loss_sum[0]) / max(1.0, float(loss_sum[1])):.3f} lr {lr:.3g}")
                if cfg.save_interval_updates and updates % cfg.save_interval_updates == 0 and pos < len(mine):
                    loss_sum[0] += float(loss_dev)
                    loss_dev.zero_()
                    save_last(epoch, pos, loss_sum)
            loader.close()
            loss_sum[0] += float(loss_dev)
        if stopped_early:
            break
        train_time = time.perf_counter() - t0

        # ---- end of epoch: validation, metrics, checkpoints
        totals = _reduce(loss_sum, device) if info.distributed else loss_sum
        seen = _reduce(seen, device) if info.distributed else seen
        # Validation costs about as much as an epoch on a small labeled set: valid_every > 1 skips
        # it (the last epoch is always validated); decoding reads checkpoint_avg.pt either way.
        validate = epoch % cfg.valid_every == 0 or epoch >= cfg.max_epochs
        if validate:
            dev = evaluate(model, valid_fd, valid_labels, valid_batches, norm, tokens, device, amp, info)
            dev_unit = dev["unit"]
        else:
            dev = {"loss": None, "unit": dev_unit, "error": None, "wer": None, "time_s": 0.0}
        dev_error = dev["error"]
        metric_value = dev_error if cfg.best_metric == "error" else dev["loss"]
        is_best = validate and (best_error is None or (metric_value is not None and metric_value < best_error))
        if is_best:
            best_error, best_epoch = metric_value, epoch
        record = {
            "epoch": epoch, "updates": updates, "lr": sched.lr_at(updates),
            "train_loss": float(totals[0]) / max(1.0, float(totals[1])),
            "dev_loss": dev["loss"], dev["unit"].lower(): dev["error"], "wer": dev.get("wer"),
            "time_s": round(train_time, 3), "eval_time_s": round(dev["time_s"], 3),
            "audio_s_per_s": float(seen[0]) / 100.0 / max(train_time, 1e-9),
            "train_utts": len(train_ids), "skipped_short_train": len(train_short),
            "skipped_short_dev_loss": len(valid_short), "nonfinite_skipped": guard.skipped,
            "best_epoch": best_epoch,
        }
        if not math.isfinite(record["train_loss"]):
            raise W2vtkError(f"epoch {epoch}: the training loss is not finite; lower optim.lr")
        pos = per_rank
        # best / epoch / average files first, checkpoint_last last: a kill in between redoes the
        # epoch on resume (deterministically) instead of leaving a finished epoch without them
        if info.is_main:
            payload = model_payload(model, cfg, input_dim=train_fd.dim, tokens=tokens.tokens, norm=norm,
                                    feats=train_fd.provenance, epoch=epoch, updates=updates,
                                    source=f"epoch {epoch}")
            if is_best:
                payload["source"] = f"best: epoch {epoch} ({cfg.best_metric} {metric_value})"
                save_checkpoint(payload, exp_dir / "checkpoint_best.pt")
            if cfg.average_last > 0:
                payload["source"] = f"epoch {epoch}"
                save_checkpoint(payload, exp_dir / f"checkpoint_epoch{epoch}.pt")
                _write_average(exp_dir, cfg.average_last, payload)
            metrics.write(record)
            _print_epoch_table(record, dev["unit"], cfg.max_epochs, header=not rows_printed)
            rows_printed += 1
        save_last(epoch, pos, torch.zeros(3, dtype=torch.float64))
        epoch, pos = epoch + 1, 0

    if info.is_main and cfg.average_last > 0 and not stopped_early:
        _write_average(exp_dir, cfg.average_last, None)
    dist.barrier()
    return TrainAMResult(exp_dir=exp_dir, epochs_done=min(epoch - 1, cfg.max_epochs), updates=updates,
                         best_error=best_error, best_epoch=best_epoch, skipped_short=len(train_short),
                         num_train=len(train_ids), num_valid=len(valid_fd.ids), stopped_early=stopped_early)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _epoch_files(exp_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for p in exp_dir.glob("checkpoint_epoch*.pt"):
        num = p.name[len("checkpoint_epoch"): -len(".pt")]
        if num.isdigit():
            out.append((int(num), p))
    return sorted(out)


def _write_average(exp_dir: Path, n: int, template: dict | None) -> None:
    """Keep the newest ``n`` epoch files, write their mean as ``checkpoint_avg.pt``."""
    files = _epoch_files(exp_dir)
    for _, p in files[:-n]:
        p.unlink(missing_ok=True)
    files = files[-n:]
    if not files:
        return
    if template is None:
        template = load_checkpoint(files[-1][1])
    avg = dict(template)
    avg["model"] = _average_states([p for _, p in files])
    epochs = [e for e, _ in files]
    avg["source"] = f"average of epochs {epochs}"
    avg["averaged_epochs"] = epochs
    save_checkpoint(avg, exp_dir / "checkpoint_avg.pt")


def evaluate(model, fd: FeatureDir, labels: dict[str, list[int]], batches: list[list[str]], norm: Normaliser,
             tokens, device, amp: str, info) -> dict[str, Any]:
    """Dev loss (per token, over utterances CTC can align) and greedy error rates (all utterances),
    computed on this rank's share of ``batches`` and summed over ranks."""
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    model.eval()
    scorer = DevScorer(tokens)
    loss_sum, tok_sum = 0.0, 0.0
    mine = batches[info.rank::info.world_size]
    with torch.no_grad():
        for utts, (feats, lengths) in _prefetch(mine, lambda b: _pad_batch(fd, b, norm)):
            with autocast(device, amp):
                logits, out_lengths = model(feats.to(device), lengths.to(device))
            log_probs = logits.float().log_softmax(-1)
            best = log_probs.argmax(-1).cpu()
            out_lengths = out_lengths.cpu()
            ok = []
            for i, utt in enumerate(utts):
                lab = labels[utt]
                n = int(out_lengths[i])
                scorer.add(lab, ctc_collapse(best[i, :n].tolist()))
                if n >= ctc_min_frames(lab) and n > 0:
                    ok.append(i)
            if ok:
                labs = [labels[utts[i]] for i in ok]
                losses = F.ctc_loss(log_probs[ok].transpose(0, 1),
                                    torch.tensor([t for lab in labs for t in lab], dtype=torch.long, device=device),
                                    out_lengths[ok].to(device), torch.tensor([len(lab) for lab in labs], device=device),
                                    blank=0, reduction="none")
                loss_sum += float(losses.sum())
                tok_sum += sum(len(lab) for lab in labs)
    totals = scorer.totals()
    names = sorted(totals)
    packed = torch.tensor([loss_sum, tok_sum] + [v for k in names for v in (totals[k].errors, totals[k].ref_len)],
                          dtype=torch.float64)
    if info.distributed:
        packed = _reduce(packed, device)
    loss_sum, tok_sum = float(packed[0]), float(packed[1])
    rates = {}
    for i, k in enumerate(names):
        e, n = float(packed[2 + 2 * i]), float(packed[3 + 2 * i])
        rates[k] = 100.0 * e / n if n > 0 else 0.0
    unit = scorer.unit_name
    model.train()
    return {"loss": loss_sum / tok_sum if tok_sum > 0 else None, "unit": unit, "error": rates[unit],
            "wer": rates.get("WER"), "time_s": time.perf_counter() - t0}


_EPOCH_COLS = ("epoch", "upd", "lr", "train loss", "dev loss", "dev {unit}", "dev WER", "time", "audio-s/s", "best")
_EPOCH_WIDTHS = (9, 6, 8, 10, 9, 8, 7, 6, 9, 4)


def _print_epoch_table(rec: dict, unit: str, max_epochs: int, header: bool) -> None:
    """One fixed-width row per epoch (74 columns: fits an 80-column terminal, and a redirected log
    reads as one table), the header only before the first row this run prints; the full record is
    in metrics.jsonl. Losses are CTC per target token; error rates in percent; time is the epoch's
    training time; best is the best dev epoch so far."""
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    def row(cells) -> str:
        return " ".join(str(c).rjust(w) for c, w in zip(cells, _EPOCH_WIDTHS))

    if header:
        console.print(row(c.format(unit=unit) for c in _EPOCH_COLS), highlight=False, markup=False)
    console.print(row((f"{rec['epoch']}/{max_epochs}", rec["updates"], f(rec["lr"], ".2g"), f(rec["train_loss"], ".4f"),
                       f(rec["dev_loss"], ".4f"), f(rec[unit.lower()], ".2f"), f(rec["wer"], ".2f"),
                       f"{rec['time_s']:.0f}s", f(rec["audio_s_per_s"], ".0f"), rec["best_epoch"])),
                  highlight=False, markup=False)
