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
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from torch import nn

from harness.config import Cell
from harness.data import batch_cut_ids, batch_lengths, batch_texts, make_dataloader
from harness.devices import select_device
from harness.evaluate import checkpoint
from harness.evaluate.data_setup import CellData
from harness.evaluate.model_average import new_average, update_average
from harness.evaluate.model_setup import LossModule, build_cell_model, build_loss_config, build_optimization
from variants.components.lean_autograd import keep_hidden_layers
from variants.components.whitener import load_whitener_probs, whitener_probs
from variants.tensor_bytes import tensor_bytes

from . import allocator, counters, distributed, interrupt
from .compile import compile_encoder
from .distributed import DistInfo
from .oom_check import check_oom
from .precision import LossScaler, Precision, select_precision
from .progress import TrainProgress, budget_steps
from .rng import rng_states, seed_everything, set_rng_states
from .step_profile import StepProfile, format_profile
from .train_state import DivergedError, TrainResult, TrainState
from .validation import loss_frames, validation_loss


@dataclass
class _Loop:
    """What one run's epochs share: the wrapped module, the loaders, the writers, the clock."""

    module: nn.Module
    train_dl: Any
    valid_dl: Any
    tb: Any
    profile: StepProfile
    #: batches per epoch (for fractional-epoch progress)
    per_epoch: float
    started: float
    stopped: str = ""


@dataclass
class _EpochTotals:
    """One epoch's running sums."""

    start: float
    steps_at_start: int
    loss: float = 0.0
    frames: float = 0.0
    exhausted: bool = False


class Trainer:
    """Trains one cell in ``run_dir``; ``on_epoch``/``on_progress`` report to the results store."""

    def __init__(self, cell: Cell, run_dir: Path, data: CellData, dist: DistInfo,
                 log: logging.Logger,
                 on_epoch: Optional[Callable[..., None]] = None,
                 on_progress: Optional[Callable[..., None]] = None,
                 on_epoch_end_decode: Optional[Callable[[int], None]] = None,
                 start_over_if_unreadable: bool = False):
        self.cell, self.cfg = cell, cell.config
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.data, self.dist, self.log = data, dist, log
        self.on_epoch, self.on_progress, self.on_epoch_end_decode = on_epoch, on_progress, on_epoch_end_decode
        self.start_over_if_unreadable = start_over_if_unreadable
        #: the transducer loss's backend of this run, once a step reported it
        self.rnnt_backend: Optional[str] = None
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
        """Set up (or resume), train epoch by epoch within the budget, checkpoint, report."""
        # train.recompute: the same values either way, so not part of the cell's id
        with keep_hidden_layers(not self.cfg.train.recompute):
            return self._run()

    def _run(self) -> TrainResult:
        t = self.cfg.train
        if self.device.type == "cpu":
            allocator.keep_freed_memory()   # ~5 % more CPU steps per second (issue 24)
        state = self.setup()
        self.restore(state)
        if self.dist.is_main:  # a full disk is said now, not after the steps to the first checkpoint
            self.check_space(state)
        module = self.wrap(state.model)
        train_dl, valid_dl = self.loaders()
        if t.oom_check and state.step == 0:
            check_oom(train_dl, lambda batch: self._try_batch(module, batch, state.optimizer, state.scaler),
                      state.optimizer, self.device, self.cfg.data.max_duration, self.log)
        loop = _Loop(module=module, train_dl=train_dl, valid_dl=valid_dl,
                     tb=self.open_tensorboard(), profile=StepProfile(self.device),
                     per_epoch=max(1.0, sum(c.duration for c in self.data.train_cuts)
                                   / (self.cfg.data.max_duration * self.dist.world_size)),
                     started=time.time())
        budget_epochs = t.epochs if t.epochs is not None else 10**9
        self.progress = TrainProgress(self.run_dir, budget_steps(t.max_steps, t.epochs, loop.per_epoch,
                                                                 t.accum_grad),
                                      state.step, enabled=self.dist.is_main, exact=t.epochs is None)
        try:
            with interrupt.deferred():  # a signal stops at the next step with a checkpoint
                while (state.epoch <= budget_epochs and not (t.max_steps and state.step >= t.max_steps)
                       and not loop.stopped):
                    self.train_epoch(state, loop)
            self.progress.finish(state.step)  # the bar's total: the steps run
        finally:
            self.progress.close()
            if loop.tb is not None:
                loop.tb.close()
        return TrainResult(step=state.step, epoch=state.epoch - 1, stopped_early=loop.stopped,
                           profile=loop.profile.summary())

    # ---- setup and restore --------------------------------------------------
    def setup(self) -> TrainState:
        """Seed, build the model (and its running average on rank 0), optimizer, schedule, scaler."""
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.log.info("device %s, precision %s, world size %d", self.device, self.precision.name,
                      self.dist.world_size)
        model = build_cell_model(self.cell, self.data.tokenizer)
        model_avg = new_average(model) if self.dist.is_main else None
        # on the device before the optimizer exists, so its state lives beside the weights
        model.to(self.device)
        if cfg.train.compile:
            compile_encoder(model)
            self.log.info("train.compile: the encoder is compiled (torch.compile, dynamic shapes) "
                          "at its first step")
        optimizer, scheduler, opt_name = build_optimization(self.cell, model)
        self.log.info("model %s (%s), %d params, optimizer %s", cfg.variant, self.cell.objective,
                      model.param_counts()["total"], opt_name)
        return TrainState(model=model, model_avg=model_avg, optimizer=optimizer,
                          scheduler=scheduler, scaler=LossScaler(self.precision))

    def restore(self, state: TrainState) -> None:
        """Load the newest readable checkpoint of the run into ``state``, if there is one.

        Unreadable ones are logged by name; if there are checkpoints but none is readable the
        cell fails, unless ``start_over_if_unreadable`` (they are then renamed ``*.unreadable``).
        """
        skipped: list[tuple[Path, str]] = []

        def on_skip(path: Path, why: str) -> None:
            skipped.append((path, why))
            self.log.warning("skipped checkpoint %s: unreadable (%s)", path, why)

        found = checkpoint.latest_valid(self.ckpt_dir, on_skip=on_skip)
        if found is None:
            if skipped:
                self.start_over(skipped)
            return
        path, saved = found
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        state.scaler.load_state_dict(saved.get("scaler") or {})
        if state.model_avg is not None and saved.get("model_avg") is not None:
            state.model_avg.load_state_dict(saved["model_avg"])
        load_whitener_probs(state.model, saved.get("whitener_probs") or {})
        state.step, state.batches = int(saved["step"]), int(saved["batches"])
        if saved.get("epoch_done"):
            state.epoch, state.batch_in_epoch = int(saved["epoch"]) + 1, 0
        else:
            state.epoch, state.batch_in_epoch = int(saved["epoch"]), int(saved["batch_in_epoch"])
            state.sampler_state = saved.get("sampler")
            state.epoch_sums = saved.get("epoch_sums")
        state.rng_state = saved.get("rng_states") or (
            {"torch": saved["rng"], "cuda": saved.get("cuda_rng")} if saved.get("rng") is not None else None)
        state.model.set_batch_count(self.model_batch_count(state.batches))
        self.log.info("resumed from %s: step %d, epoch %d, batch %d of the epoch",
                      path.name, state.step, state.epoch, state.batch_in_epoch)

    def check_space(self, state: TrainState) -> None:
        """Raise :class:`~harness.evaluate.checkpoint.NoSpaceError` (the folder and the bytes) unless
        the checkpoint folder has room for one checkpoint (optimizer state not made yet: taken as
        two moments per weight)."""
        weights = tensor_bytes(state.model.state_dict())
        average = tensor_bytes(state.model_avg.state_dict()) if state.model_avg is not None else 0
        moments = tensor_bytes(state.optimizer.state_dict()) or 2 * weights
        needed = int((weights + average + moments) * checkpoint.SPACE_MARGIN) + checkpoint.SPACE_EXTRA
        checkpoint.ensure_space(self.ckpt_dir, needed, "a checkpoint")

    def start_over(self, unreadable: list[tuple[Path, str]]) -> None:
        """No checkpoint is readable: fail the cell, or (if allowed) set them aside and start at 0."""
        names = "; ".join(f"{p.name}: {why}" for p, why in unreadable)
        if not self.start_over_if_unreadable:
            raise checkpoint.UnreadableCheckpointsError(
                f"no readable checkpoint in {self.ckpt_dir} ({names}); rerun `harness run` with "
                f"--retry-failed --start-over-if-unreadable to train this cell from step 0")
        for p, _ in unreadable:
            p.rename(p.with_name(p.name + ".unreadable"))
        self.log.warning("no readable checkpoint (%s): starting over from step 0; the files are "
                         "kept as *.unreadable", names)

    def wrap(self, model: nn.Module) -> nn.Module:
        """Model + loss in one module, under DistributedDataParallel when distributed."""
        module: nn.Module = LossModule(model, build_loss_config(self.cell))
        if self.dist.enabled:
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        return module

    def loaders(self) -> tuple[Any, Any]:
        """The training and validation loaders of this rank."""
        cfg, d, dist = self.cfg, self.cfg.data, self.dist
        train_dl = make_dataloader(self.data.train_cuts, max_duration=d.max_duration, train=True,
                                   spec_augment=d.spec_augment, num_workers=d.num_workers, seed=cfg.seed,
                                   world_size=dist.world_size, rank=dist.rank)
        valid_dl = make_dataloader(self.data.valid_cuts, max_duration=d.max_duration, train=False,
                                   num_workers=d.num_workers, world_size=dist.world_size, rank=dist.rank)
        return train_dl, valid_dl

    def open_tensorboard(self) -> Any:
        """Rank 0's TensorBoard writer under the run directory (None on other ranks)."""
        if not self.dist.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter  # slow to import; only when training

        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    # ---- an epoch and a step --------------------------------------------------
    def train_epoch(self, state: TrainState, loop: "_Loop") -> None:
        """Train until the loader is exhausted or a budget ends the epoch, then end it."""
        t = self.cfg.train
        state.scheduler.step_epoch(state.epoch - 1)
        if state.sampler_state is None:  # a resumed epoch keeps the random state it was saved with
            seed_everything(self.cfg.seed + state.epoch - 1)
        sampler = loop.train_dl.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(state.epoch - 1)
        if state.sampler_state is not None and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(dict(state.sampler_state))
            state.sampler_state = None
        loop.module.train()
        totals = _EpochTotals(start=time.time(), steps_at_start=state.step)
        if state.epoch_sums is not None:  # the resumed epoch's sums so far
            totals.loss, totals.frames = state.epoch_sums["loss"], state.epoch_sums["frames"]
            totals.steps_at_start = state.epoch_sums["steps_at_start"]
            state.epoch_sums = None
        it = iter(loop.train_dl)
        if state.rng_state is not None:  # after iter(): creating the iterator draws a seed
            set_rng_states(state.rng_state, self.device)
            state.rng_state = None
        while not (t.max_steps and state.step >= t.max_steps):
            loop.profile.start_step()
            with loop.profile.phase("data"):
                batch = next(it, None)
                if self.dist.enabled:  # ranks may get unequal batch counts: stop together
                    have = distributed.all_reduce_sum([float(batch is not None)], self.dist, self.device)
                    if have[0] < self.dist.world_size:
                        batch = None
            if batch is None:
                loop.profile.cancel_step()
                totals.exhausted = True
                break
            self.train_step(state, loop, batch, totals)
            if state.batch_in_epoch % t.accum_grad == 0 and self.stop_requested():
                self.stop_for_signal(state, loop, totals)
            if t.max_minutes and (time.time() - loop.started) / 60 > t.max_minutes:
                loop.stopped = f"stopped by train.max_minutes={t.max_minutes} at step {state.step}"
                break
        self.end_epoch(state, loop, totals)
        if self.stop_requested():  # the epoch's checkpoint is written
            raise interrupt.Interrupted(self.stop_signal(), step=state.step,
                                        checkpoint=checkpoint.epoch_path(self.ckpt_dir, state.epoch - 1).name)

    @staticmethod
    def stop_signal() -> int:
        """The signal to report (another rank's, taken as SIGTERM, if this rank got none)."""
        return interrupt.requested() or int(signal.SIGTERM)

    def stop_requested(self) -> bool:
        """Whether a signal asked to stop (on any rank: all ranks stop at the same step)."""
        asked = interrupt.requested() is not None
        if self.dist.enabled:
            asked = distributed.all_reduce_sum([float(asked)], self.dist, self.device)[0] > 0
        return asked

    def stop_for_signal(self, state: TrainState, loop: "_Loop", totals: "_EpochTotals") -> None:
        """Checkpoint the step just finished (unless it was saved already) and raise Interrupted."""
        path = checkpoint.step_path(self.ckpt_dir, state.step)
        if not path.exists():
            self.save(state, loop.train_dl, at_epoch_end=False, totals=totals)
        self.log.info("stopping at step %d on a signal: %s written", state.step, path.name)
        raise interrupt.Interrupted(self.stop_signal(), step=state.step, checkpoint=path.name)

    def train_step(self, state: TrainState, loop: "_Loop", batch: dict, totals: "_EpochTotals") -> None:
        """Forward and backward one batch; an optimizer step at each accumulation boundary."""
        t, dist, profile = self.cfg.train, self.dist, loop.profile
        state.batches += 1
        state.batch_in_epoch += 1
        # every batch (not every 10th): a resumed run then sees the same schedules
        state.model.set_batch_count(self.model_batch_count(state.batches))
        feats = batch["inputs"].to(self.device, non_blocking=True)
        feat_lens = batch_lengths(batch).to(self.device)
        tokens = self.data.tokenizer.encode(batch_texts(batch))
        boundary = state.batch_in_epoch % t.accum_grad == 0
        sync_ctx = (loop.module.no_sync() if dist.enabled and not boundary
                    else contextlib.nullcontext())
        with sync_ctx:
            with profile.phase("forward"):
                with self.precision.context():
                    # the loss's simple/pruned warm-up counts raw batches, as the authors' does
                    loss, info = loop.module(feats, feat_lens, tokens, float(state.batches),
                                             batch_cut_ids(batch))
            value = float(loss.detach())
            frames = float(loss_frames(info, feat_lens))
            if self.rnnt_backend is None and isinstance(info, dict) and info.get("rnnt_backend"):
                self.rnnt_backend = str(info["rnnt_backend"])
                self.log.info("transducer loss backend: %s", self.rnnt_backend)
            if dist.enabled:
                value, frames = distributed.all_reduce_sum([value, frames], dist, self.device)
            if not math.isfinite(value) and not state.scaler.enabled:
                raise DivergedError(state.step + 1, f"loss is {value} (epoch {state.epoch}, "
                                    f"batch {state.batch_in_epoch} of the epoch)")
            with profile.phase("backward"):
                state.scaler.scale(loss / t.accum_grad).backward()
        if math.isfinite(value):  # before a checkpoint, which saves the sums
            totals.loss += value
            totals.frames += frames
        if boundary:
            with profile.phase("optimizer"):
                state.step += 1
                state.scheduler.step_batch(self.lr_batch_count(state.step))
                state.scaler.step(state.optimizer)
                state.optimizer.zero_grad(set_to_none=True)
            warning = state.scaler.check(state.batch_in_epoch, state.step)
            if warning:
                self.log.warning(warning)
            if state.model_avg is not None and state.step % t.average_period == 0:
                update_average(state.model_avg, state.model, state.step, t.average_period)
            if state.step % t.save_every_n == 0:
                self.save(state, loop.train_dl, at_epoch_end=False, totals=totals)
            self.progress.update(state.step, totals.loss / max(totals.frames, 1.0))
        profile.end_step()
        if state.step and boundary and state.step % t.log_interval == 0:
            self.log_progress(state, loop, totals)

    def log_progress(self, state: TrainState, loop: "_Loop", totals: "_EpochTotals") -> None:
        """The running training loss and learning rate: log, TensorBoard, the results store."""
        scaler, step = state.scaler, state.step
        lr = _lr(state.scheduler)
        avg_loss = totals.loss / max(totals.frames, 1.0)
        self.log.info("epoch %d %s: loss %.4f, lr %.3g%s", state.epoch, self.progress.describe(), avg_loss,
                      lr, f", grad scale {scaler.value:.3g}" if scaler.enabled else "")
        if loop.tb is not None:
            loop.tb.add_scalar("train/loss", avg_loss, step)
            loop.tb.add_scalar("train/lr", lr, step)
            if scaler.enabled:
                loop.tb.add_scalar("train/grad_scale", scaler.value, step)
        epoch = state.epoch - 1 + min(state.batch_in_epoch / loop.per_epoch, 0.999)
        self.progress.write(epoch)
        if self.on_progress:
            self.on_progress(step=step, epoch=epoch)

    def end_epoch(self, state: TrainState, loop: "_Loop", totals: "_EpochTotals") -> None:
        """The end of an epoch (or of the step budget inside it): validate, checkpoint, report."""
        t, cfg = self.cfg.train, self.cfg
        pending = state.batch_in_epoch % t.accum_grad if totals.exhausted else 0
        if pending:  # like drop_last: an incomplete accumulation is not stepped
            state.optimizer.zero_grad(set_to_none=True)
            self.log.info("dropped the gradients of %d batch(es) of an incomplete "
                          "accumulation at the end of epoch %d", pending, state.epoch)
        if totals.exhausted and state.step == totals.steps_at_start:
            raise RuntimeError(
                f"epoch {state.epoch} made no optimizer step: it has {state.batch_in_epoch} batch(es), "
                f"fewer than train.accum_grad={t.accum_grad}; lower accum_grad or data.max_duration")
        valid_loss = validation_loss(loop.module, loop.valid_dl, state.batches, self.data.tokenizer,
                                     self.precision, self.device, self.dist)
        train_loss = totals.loss / max(totals.frames, 1.0) if totals.frames else float("nan")
        # the budget (steps or minutes) may end an epoch early: its checkpoint says so
        epoch_done = totals.exhausted
        self.save(state, loop.train_dl, at_epoch_end=True, partial=not epoch_done, totals=totals)
        profile = loop.profile
        self.log.info("epoch %d done at step %d: train loss %.4f, valid loss %.4f, %s",
                      state.epoch, state.step, train_loss, valid_loss, format_profile(profile.summary()))
        if loop.tb is not None:
            loop.tb.add_scalar("valid/loss", valid_loss, state.step)
        if self.on_epoch:
            self.on_epoch(epoch=state.epoch, step=state.step, train_loss=train_loss,
                          valid_loss=valid_loss, lr=_lr(state.scheduler),
                          seconds=time.time() - totals.start,
                          extra={"profile": profile.summary(), "partial": not epoch_done,
                                 "precision": self.precision.name,
                                 "world_size": self.dist.world_size,
                                 **({"rnnt_backend": self.rnnt_backend} if self.rnnt_backend else {})})
        if epoch_done:
            self.progress.epoch_done(state.epoch, state.step, t.epochs, t.max_steps)
        if self.on_epoch_end_decode and cfg.decode.every_epoch:
            self.on_epoch_end_decode(state.epoch)
        distributed.barrier(self.dist)
        state.epoch += 1
        state.batch_in_epoch = 0

    # ---- pieces -------------------------------------------------------------
    def save(self, state: TrainState, train_dl: Any, at_epoch_end: bool, partial: bool = False,
             totals: Optional["_EpochTotals"] = None) -> None:
        """Rank 0 writes the checkpoint (``epoch-<e>.pt`` at epoch end); all ranks then meet.

        It holds everything the next step depends on, so a resumed run repeats the
        uninterrupted one: weights, average, optimizer, schedules, batch counters, the
        sampler's position, every random generator and the epoch's running loss sums.
        """
        if self.dist.is_main:
            sampler = train_dl.sampler
            saved = {
                "model": state.model.state_dict(),
                "model_avg": state.model_avg.state_dict() if state.model_avg is not None else None,
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(),
                "scaler": state.scaler.state_dict(),
                "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else None,
                "step": state.step, "batches": state.batches, "epoch": state.epoch,
                "batch_in_epoch": state.batch_in_epoch,
                # an epoch cut short by the step budget resumes where it stopped
                "epoch_done": at_epoch_end and not partial, "partial_epoch": partial,
                "average_period": self.cfg.train.average_period,
                "rng_states": rng_states(self.device),
                # state the backward pass changes outside the parameters and buffers
                "whitener_probs": whitener_probs(state.model),
                "epoch_sums": ({"loss": totals.loss, "frames": totals.frames,
                                "steps_at_start": totals.steps_at_start} if totals is not None else None),
                "cell_id": self.cell.cell_id, "config": self.cell.resolved(),
            }
            if at_epoch_end:
                checkpoint.atomic_save(saved, checkpoint.epoch_path(self.ckpt_dir, state.epoch))
            else:
                checkpoint.atomic_save(saved, checkpoint.step_path(self.ckpt_dir, state.step))
            t = self.cfg.train
            checkpoint.retain(self.ckpt_dir, t.keep_last_k, t.keep_optimizer_k)
        distributed.barrier(self.dist)

    def _try_batch(self, module, batch, optimizer, scaler: LossScaler) -> None:
        """One forward and backward of ``batch`` with no optimizer step (the OOM check)."""
        feats = batch["inputs"].to(self.device)
        feat_lens = batch_lengths(batch).to(self.device)
        tokens = self.data.tokenizer.encode(batch_texts(batch))
        with self.precision.context():
            loss, _ = module(feats, feat_lens, tokens, 0.0, batch_cut_ids(batch))
        scaler.scale(loss).backward()
        optimizer.zero_grad(set_to_none=True)


def _lr(scheduler: Any) -> float:
    try:
        return float(max(scheduler.get_last_lr()))
    except Exception:
        return float("nan")


