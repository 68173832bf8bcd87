"""Train one cell: the authors' loop with the runner's plumbing around it.

Mixed precision (bf16, or fp16 with a GradScaler), gradient accumulation,
the batch counter that drives the model's schedules and the LR schedule
(scaled by the real batch duration), TensorBoard, atomic checkpoints every N
steps and at each epoch end, resume from the newest valid checkpoint, the
running average of the weights, divergence detection, an OOM check at start,
and a per-phase step profile. The same code runs on CPU, one GPU, or under
``torchrun`` with DistributedDataParallel (NCCL on GPUs, gloo on CPU).
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from harness.config import Cell
from harness.data import batch_cut_ids, batch_lengths, batch_texts, make_dataloader
from harness.losses import LossConfig, compute_loss
from variants import build_model
from variants.optim import build_optimizer, build_scheduler, default_scheduler_for

from . import checkpoint, counters, distributed
from .data_setup import CellData
from .distributed import DistInfo
from .model_average import new_average, update_average
from .precision import LossScaler, Precision, select_device, select_precision
from .step_profile import StepProfile, format_profile


class DivergedError(RuntimeError):
    """The loss became NaN or infinite (or fp16's loss scale collapsed)."""

    def __init__(self, step: int, message: str):
        self.step = step
        super().__init__(message)


class OutOfMemoryAtStartError(RuntimeError):
    """The largest batches the sampler can produce do not fit on the device."""


@dataclass
class TrainResult:
    step: int
    epoch: int
    stopped_early: str = ""
    profile: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


class LossModule(nn.Module):
    """Model + loss in one forward, so DistributedDataParallel sees the whole computation."""

    def __init__(self, model: nn.Module, loss_cfg: Any):
        super().__init__()
        self.model = model
        self.loss_cfg = loss_cfg

    def forward(self, feats, feat_lens, tokens, batch_count, utt_ids=None):
        return compute_loss(self.model, feats, feat_lens, tokens, batch_count, self.loss_cfg,
                            utt_ids=utt_ids)


def build_cell_model(cell: Cell, tokenizer: Any) -> nn.Module:
    """The cell's AsrModel with its vocabulary taken from the tokenizer."""
    overrides = dict(cell.config.overrides)
    overrides["heads.vocab_size"] = int(tokenizer.vocab_size)
    overrides["heads.blank_id"] = int(tokenizer.blank_id)
    objective = cell.config.objective
    return build_model(cell.config.variant, objective if isinstance(objective, str) else tuple(objective),
                       **overrides)


def build_loss_config(cell: Cell) -> Any:
    """``harness.losses.LossConfig`` from the cell's ``loss`` section."""
    return LossConfig(**cell.config.loss)


def build_optimization(cell: Cell, model: nn.Module) -> tuple[Any, Any, str]:
    """Optimizer and LR scheduler from the cell's optimizer section (defaults: the spec's)."""
    opt_cfg = cell.config.optimizer
    name = opt_cfg.name or model.spec.optimizer
    optimizer = build_optimizer(name, model, lr=opt_cfg.lr, **opt_cfg.options)
    sched_name = opt_cfg.schedule or default_scheduler_for(name)
    scheduler = build_scheduler(sched_name, optimizer, **opt_cfg.schedule_options)
    return optimizer, scheduler, name


class Trainer:
    """Trains one cell in ``run_dir``; ``on_epoch``/``on_progress`` report to the results store."""

    def __init__(self, cell: Cell, run_dir: Path, data: CellData, dist: DistInfo,
                 log: logging.Logger,
                 on_epoch: Optional[Callable[..., None]] = None,
                 on_progress: Optional[Callable[..., None]] = None,
                 on_epoch_end_decode: Optional[Callable[[int], None]] = None):
        self.cell, self.cfg = cell, cell.config
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.data, self.dist, self.log = data, dist, log
        self.on_epoch, self.on_progress, self.on_epoch_end_decode = on_epoch, on_progress, on_epoch_end_decode
        t = self.cfg.train
        self.device = select_device(t.device, dist.local_rank)
        self.precision: Precision = select_precision(t.precision, self.device)
        distributed.init(dist, self.device.type)

    # ---- counters ---------------------------------------------------------
    def model_batch_count(self, batches: int) -> float:
        """Batches at the reference duration: drives Bypass/Balancer/Whitener/dropout schedules."""
        d = self.cfg.data
        return counters.model_batch_count(batches, d.max_duration, self.dist.world_size, d.ref_duration)

    def lr_batch_count(self, step: int) -> float:
        """Optimizer steps at the batch duration the LR schedule was tuned for."""
        return counters.lr_batch_count(step, self.cfg.train.accum_grad, self.cfg.data.max_duration,
                                       self.dist.world_size, self.cfg.optimizer.schedule_ref_duration)

    # ---- main -------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, t, dist = self.cfg, self.cfg.train, self.dist
        seed_everything(cfg.seed)
        self.log.info("device %s, precision %s, world size %d", self.device, self.precision.name,
                      dist.world_size)
        model = build_cell_model(self.cell, self.data.tokenizer)
        model_avg = new_average(model) if dist.is_main else None
        # on the device before the optimizer exists, so its state lives beside the weights
        model.to(self.device)
        loss_cfg = build_loss_config(self.cell)
        optimizer, scheduler, opt_name = build_optimization(self.cell, model)
        scaler = LossScaler(self.precision)
        n_params = model.param_counts()["total"]
        self.log.info("model %s (%s), %d params, optimizer %s", cfg.variant, self.cell.objective,
                      n_params, opt_name)

        step, batches, epoch, batch_in_epoch, sampler_state = 0, 0, 1, 0, None
        found = checkpoint.latest_valid(self.ckpt_dir)
        if found is not None:
            path, state = found
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state.get("scaler") or {})
            if model_avg is not None and state.get("model_avg") is not None:
                model_avg.load_state_dict(state["model_avg"])
            step, batches = int(state["step"]), int(state["batches"])
            if state.get("epoch_done"):
                epoch, batch_in_epoch = int(state["epoch"]) + 1, 0
            else:
                epoch, batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
                sampler_state = state.get("sampler")
            if state.get("rng") is not None:
                torch.set_rng_state(state["rng"])
            if state.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            self.log.info("resumed from %s: step %d, epoch %d, batch %d of the epoch",
                          path.name, step, epoch, batch_in_epoch)
        module: nn.Module = LossModule(model, loss_cfg)
        if dist.enabled:
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)

        d = cfg.data
        train_dl = make_dataloader(self.data.train_cuts, max_duration=d.max_duration, train=True,
                                   spec_augment=d.spec_augment, num_workers=d.num_workers, seed=cfg.seed,
                                   world_size=dist.world_size, rank=dist.rank)
        valid_dl = make_dataloader(self.data.valid_cuts, max_duration=d.max_duration, train=False,
                                   num_workers=d.num_workers, world_size=dist.world_size, rank=dist.rank)
        if t.oom_check and step == 0:
            self.check_oom(module, train_dl, optimizer, scaler)

        tb = None
        if dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        profile = StepProfile(self.device)
        per_epoch = max(1.0, sum(c.duration for c in self.data.train_cuts)
                        / (d.max_duration * dist.world_size))
        started = time.time()
        stopped = ""
        budget_epochs = t.epochs if t.epochs is not None else 10**9
        tokenizer = self.data.tokenizer
        try:
            while epoch <= budget_epochs and not (t.max_steps and step >= t.max_steps) and not stopped:
                scheduler.step_epoch(epoch - 1)
                if sampler_state is None:  # a resumed epoch keeps the random state it was saved with
                    seed_everything(cfg.seed + epoch - 1)
                sampler = train_dl.sampler
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch - 1)
                if sampler_state is not None and hasattr(sampler, "load_state_dict"):
                    sampler.load_state_dict(dict(sampler_state))
                    sampler_state = None
                module.train()
                epoch_start = time.time()
                loss_sum, frame_sum = 0.0, 0.0
                it = iter(train_dl)
                exhausted = False
                steps_at_epoch_start = step
                while True:
                    if t.max_steps and step >= t.max_steps:
                        break
                    profile.start_step()
                    with profile.phase("data"):
                        batch = next(it, None)
                        if dist.enabled:  # ranks may get unequal batch counts: stop together
                            have = distributed.all_reduce_sum([float(batch is not None)], dist, self.device)
                            if have[0] < dist.world_size:
                                batch = None
                    if batch is None:
                        profile.cancel_step()
                        exhausted = True
                        break
                    batches += 1
                    batch_in_epoch += 1
                    if batches % 10 == 1:
                        model.set_batch_count(self.model_batch_count(batches))
                    feats = batch["inputs"].to(self.device, non_blocking=True)
                    feat_lens = batch_lengths(batch).to(self.device)
                    tokens = tokenizer.encode(batch_texts(batch))
                    boundary = batch_in_epoch % t.accum_grad == 0
                    sync_ctx = (module.no_sync() if dist.enabled and not boundary
                                else contextlib.nullcontext())
                    with sync_ctx:
                        with profile.phase("forward"):
                            with self.precision.context():
                                # the loss's simple/pruned warm-up counts raw batches, as the authors' does
                                loss, info = module(feats, feat_lens, tokens, float(batches),
                                                    batch_cut_ids(batch))
                        value = float(loss.detach())
                        frames = float(_frames(info, feat_lens))
                        if dist.enabled:
                            value, frames = distributed.all_reduce_sum([value, frames], dist, self.device)
                        if not math.isfinite(value) and not scaler.enabled:
                            raise DivergedError(step + 1, f"loss is {value} (epoch {epoch}, "
                                           f"batch {batch_in_epoch} of the epoch)")
                        with profile.phase("backward"):
                            scaler.scale(loss / t.accum_grad).backward()
                    if boundary:
                        with profile.phase("optimizer"):
                            step += 1
                            scheduler.step_batch(self.lr_batch_count(step))
                            scaler.step(optimizer)
                            optimizer.zero_grad(set_to_none=True)
                        warning = scaler.check(batch_in_epoch, step)
                        if warning:
                            self.log.warning(warning)
                        if model_avg is not None and step % t.average_period == 0:
                            update_average(model_avg, model, step, t.average_period)
                        if step % t.save_every_n == 0:
                            self.save(False, model, model_avg, optimizer, scheduler, scaler,
                                      train_dl, step, batches, epoch, batch_in_epoch)
                    if math.isfinite(value):
                        loss_sum += value
                        frame_sum += frames
                    profile.end_step()
                    if step and boundary and step % t.log_interval == 0:
                        lr = _lr(scheduler)
                        avg_loss = loss_sum / max(frame_sum, 1.0)
                        self.log.info("epoch %d step %d: loss %.4f, lr %.3g%s", epoch, step, avg_loss, lr,
                                      f", grad scale {scaler.value:.3g}" if scaler.enabled else "")
                        if tb is not None:
                            tb.add_scalar("train/loss", avg_loss, step)
                            tb.add_scalar("train/lr", lr, step)
                            if scaler.enabled:
                                tb.add_scalar("train/grad_scale", scaler.value, step)
                        if self.on_progress:
                            self.on_progress(step=step, epoch=epoch - 1 + min(
                                batch_in_epoch / per_epoch, 0.999))
                    if t.max_minutes and (time.time() - started) / 60 > t.max_minutes:
                        stopped = f"stopped by train.max_minutes={t.max_minutes} at step {step}"
                        break
                # ---- end of epoch (or of the step budget inside it) ----
                pending = batch_in_epoch % t.accum_grad if exhausted else 0
                if pending:  # like drop_last: an incomplete accumulation is not stepped
                    optimizer.zero_grad(set_to_none=True)
                    self.log.info("dropped the gradients of %d batch(es) of an incomplete "
                                  "accumulation at the end of epoch %d", pending, epoch)
                if exhausted and step == steps_at_epoch_start:
                    raise RuntimeError(
                        f"epoch {epoch} made no optimizer step: it has {batch_in_epoch} batch(es), fewer "
                        f"than train.accum_grad={t.accum_grad}; lower accum_grad or data.max_duration")
                valid_loss = self.validate(module, valid_dl, model, batches)
                train_loss = loss_sum / max(frame_sum, 1.0) if frame_sum else float("nan")
                # the budget (steps or minutes) may end an epoch early: its checkpoint says so
                epoch_done = exhausted
                self.save(True, model, model_avg, optimizer, scheduler, scaler, train_dl,
                          step, batches, epoch, batch_in_epoch, partial=not epoch_done)
                self.log.info("epoch %d done at step %d: train loss %.4f, valid loss %.4f, %s",
                              epoch, step, train_loss, valid_loss, format_profile(profile.summary()))
                if tb is not None:
                    tb.add_scalar("valid/loss", valid_loss, step)
                if self.on_epoch:
                    self.on_epoch(epoch=epoch, step=step, train_loss=train_loss, valid_loss=valid_loss,
                                  lr=_lr(scheduler), seconds=time.time() - epoch_start,
                                  extra={"profile": profile.summary(), "partial": not epoch_done,
                                         "precision": self.precision.name,
                                         "world_size": dist.world_size})
                if self.on_epoch_end_decode and cfg.decode.every_epoch:
                    self.on_epoch_end_decode(epoch)
                distributed.barrier(dist)
                epoch += 1
                batch_in_epoch = 0
        finally:
            if tb is not None:
                tb.close()
        return TrainResult(step=step, epoch=epoch - 1, stopped_early=stopped, profile=profile.summary())

    # ---- pieces -------------------------------------------------------------
    def save(self, at_epoch_end: bool, model, model_avg, optimizer, scheduler, scaler, train_dl,
             step, batches, epoch, batch_in_epoch, partial: bool = False) -> None:
        """Rank 0 writes the checkpoint (``epoch-<e>.pt`` at epoch end); all ranks then meet."""
        if self.dist.is_main:
            sampler = train_dl.sampler
            state = {
                "model": model.state_dict(),
                "model_avg": model_avg.state_dict() if model_avg is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else None,
                "step": step, "batches": batches, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                # an epoch cut short by the step budget resumes where it stopped
                "epoch_done": at_epoch_end and not partial, "partial_epoch": partial,
                "average_period": self.cfg.train.average_period,
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "cell_id": self.cell.cell_id, "config": self.cell.resolved(),
            }
            if at_epoch_end:
                checkpoint.atomic_save(state, checkpoint.epoch_path(self.ckpt_dir, epoch))
            else:
                checkpoint.atomic_save(state, checkpoint.step_path(self.ckpt_dir, step))
                checkpoint.prune_step_checkpoints(self.ckpt_dir, self.cfg.train.keep_last_k)
        distributed.barrier(self.dist)

    @torch.no_grad()
    def validate(self, module: nn.Module, valid_dl, model: nn.Module, batches: int) -> float:
        """Validation loss per frame (summed over ranks)."""
        # the bare module: DDP's forward would need every rank to run the same number of batches
        module = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
        module.eval()
        total, frames = 0.0, 0.0
        for batch in valid_dl:
            feats = batch["inputs"].to(self.device)
            feat_lens = batch_lengths(batch).to(self.device)
            tokens = self.data.tokenizer.encode(batch_texts(batch))
            with self.precision.context():
                loss, info = module(feats, feat_lens, tokens, float(batches),
                                    batch_cut_ids(batch))
            total += float(loss)
            frames += float(_frames(info, feat_lens))
        total, frames = distributed.all_reduce_sum([total, frames], self.dist, self.device)
        module.train()
        return total / frames if frames else float("nan")

    def check_oom(self, module: nn.Module, train_dl, optimizer, scaler: LossScaler) -> None:
        """Run the sampler's largest batches once; on OOM say which max duration would fit."""
        if self.device.type != "cuda":
            self.log.info("OOM check skipped: it guards GPU memory and this cell trains on %s",
                          self.device)
            return
        from lhotse.dataset import find_pessimistic_batches

        batches, _ = find_pessimistic_batches(train_dl.sampler)
        for criterion, cuts in batches.items():
            try:
                self._try_batch(module, train_dl.dataset[cuts], optimizer, scaler)
            except torch.cuda.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                fits = self._largest_fitting(module, train_dl, cuts, optimizer, scaler)
                dur = sum(c.duration for c in cuts)
                raise OutOfMemoryAtStartError(
                    f"out of memory on {torch.cuda.get_device_name(self.device)} with the sampler's "
                    f"largest batch ({criterion}, {dur:.0f} s of audio, data.max_duration="
                    f"{self.cfg.data.max_duration}); "
                    + (f"about {fits:.0f} s fit: set data.max_duration to {0.9 * fits:.0f} or less"
                       if fits else "not even one utterance fits")) from None
        optimizer.zero_grad(set_to_none=True)
        self.log.info("OOM check passed on the %d largest batches", len(batches))

    def _try_batch(self, module, batch, optimizer, scaler: LossScaler) -> None:
        feats = batch["inputs"].to(self.device)
        feat_lens = batch_lengths(batch).to(self.device)
        tokens = self.data.tokenizer.encode(batch_texts(batch))
        with self.precision.context():
            loss, _ = module(feats, feat_lens, tokens, 0.0, batch_cut_ids(batch))
        scaler.scale(loss).backward()
        optimizer.zero_grad(set_to_none=True)

    def _largest_fitting(self, module, train_dl, cuts, optimizer, scaler) -> float:
        """Audio seconds of the largest shortest-first part of the OOM batch that fits."""
        from lhotse import CutSet

        def fits(part: list) -> bool:
            try:
                self._try_batch(module, train_dl.dataset[CutSet.from_cuts(part)], optimizer, scaler)
                return True
            except torch.cuda.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                return False

        return largest_fitting_duration(list(cuts), fits)


def largest_fitting_duration(cuts: list, fits: Callable[[list], bool]) -> float:
    """Binary search for the most shortest-first cuts that ``fits``; their total duration.

    The whole list is known not to fit; 0.0 if not even the shortest cut does.
    """
    items = sorted(cuts, key=lambda c: c.duration)
    lo, hi = 0, len(items) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(items[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return float(sum(c.duration for c in items[:lo]))


def _frames(info: Any, feat_lens: torch.Tensor) -> float:
    """Frames the loss was summed over (the loss's own count if it reports one)."""
    if isinstance(info, dict):
        for key in ("frames", "num_frames"):
            if key in info:
                return float(info[key])
    return float(feat_lens.sum())


def _lr(scheduler: Any) -> float:
    try:
        return float(max(scheduler.get_last_lr()))
    except Exception:
        return float("nan")


