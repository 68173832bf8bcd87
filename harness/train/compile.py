"""``train.compile``: the encoder's forward and backward through ``torch.compile``.

What is compiled: each layer of the encoder (the items of its ``nn.ModuleList``
children: the Zipformer's stacks, the Conformer's layers), in place
(as ``nn.Module.compile`` does: parameter names, checkpoints and the running
average are unchanged), for training steps only (in eval or without gradients,
e.g. validation, the layers run eagerly instead of compiling a second set of
graphs), with dynamic shapes so that batches of another size or length
reuse the compiled code instead of compiling again. Conv-Embed, the encoder's
own glue (feature masks, output combination), the heads and the losses stay
eager.

Per-step decisions are drawn before the compiled region: a forward pre-hook on
the encoder calls ``decide`` on every module that makes one (Balancer, Whitener,
Bypass and its layer skip, the attention weights' draws, the block's constant
attention, and every ScheduledFloat), in ``modules()`` order, and those modules
(switched to ``predrawn``) read the step's draws and schedule values from 0-dim
tensors. The compiled graphs therefore guard on no Python random number or
schedule value and do not compile again per step; a Balancer or Whitener that
does not act on a step still runs, its gradient change multiplied by 0 (see
variants/components/scheduled_float.py). Same seed, same draws; the Python
random stream is consumed in another order than in eager mode, so a compiled run
is reproducible but not draw-for-draw the eager run.

Inside the compiled layers a few fused eager paths give way to plain ops that
inductor fuses itself (``torch.compiler.is_compiling()``): Swoosh and
activation-dropout-linear without their custom autograd Functions, the
relative-position shift and Upsample by index (no guards on strides or on
length % factor), the positional encoding without its cache; and the CPU-only layout
paths (``variants.fast_paths.cpu_layout``, with the C loops under them) are off there,
so the compiled layers run the arithmetic a GPU runs (the convolution module's
channels-last depth-wise view, added after these measurements, crashed inductor in the
downsampled stacks: a stride in ceil(T / 2) it could not order). Duck shaping is
turned off (``torch.fx.experimental._config.use_duck_shape``, process-wide): a
length equal by chance to a channel count (128) otherwise shared its symbol and
the next length compiled again.

Measured (CPU, one thread, the demo's Zipformer row, benchmarks/compile_speed.py,
torch 2.13):

- graphs: 4 (one per stack), no graph break, and no new graph over 8 steps
  (Dynamo only, ``--backend eager``) with batch size, length and the schedules'
  batch count changing every step; before the decisions moved out, the stacks
  broke into many graphs and compiled again each step until Dynamo's recompile
  limit sent them back to eager. 1 run.
- inductor, every batch padded to one length (``--fixed-length``): the first
  compiled step took 231 s of CPU (308 s wall, machine loaded), then 0.199 s per
  step compiled against 0.189 s eager (0.95x; 20 steps each, 4 graphs, none new).
  A second process with the same TORCHINDUCTOR_CACHE_DIR: the FX graph cache hit
  3 of 16 lookups, the first step took 226 s of CPU again (272 s wall, idle
  machine), median steps 0.191 s compiled against 0.215 s eager, but 4 more
  graphs were compiled during the timed steps. 1 run each, both before duck
  shaping was turned off (a batch of 4 shared its size symbol with the
  downsampling factor or head count: the likely cause of those 4 graphs).
- lengths: with inductor the backward is compiled for the first batch's length
  (AOT autograd fixes the saved tensors' strides to that batch's, adding a guard
  ``Eq(T, 41)``), so each new length compiles again (seen on the one-stack test
  model); Dynamo's graphs alone are length-generic.

So on CPU it does not pay: ~230 s of compiling against at most a few
hundredths of a second saved per step (a demo cell is ~1,100 steps, ~3 minutes of
training), and more compiling for each new length. ``train.compile`` stays off by
default; the GPU figure is left to ``PARTS=4 bash benchmarks/gpu_checks.sh``.

The arithmetic is the eager one up to float rounding (inductor fuses
element-wise chains and may reorder sums); tests/harness/train/test_train_compile.py
compares a compiled training step with the same drawn decisions run eagerly on
the CPU backend, and checks that steps with changing decisions compile no new graph.
"""
from __future__ import annotations

import torch
from torch import nn

from variants.components.scheduled_float import decision_modules, draw_decisions, set_predrawn

#: torch.compile's settings for the encoder's layers
COMPILE_OPTIONS = {"dynamic": True}


def compiled_parts(encoder: nn.Module) -> list[nn.Module]:
    """The modules :func:`compile_encoder` compiles: the items of the encoder's ModuleLists."""
    parts = [m for child in encoder.children() if isinstance(child, nn.ModuleList) for m in child]
    if not parts:
        raise ValueError("train.compile: the encoder has no list of layers to compile")
    return parts


def _draw_hook(encoder: nn.Module, args: tuple) -> None:
    if encoder.training:
        param = next(encoder.parameters())
        draw_decisions(encoder._decision_modules, param.device)


def install_decisions(encoder: nn.Module) -> None:
    """Draw the encoder's per-step decisions before its forward (a pre-hook), as tensors."""
    if getattr(encoder, "_decision_modules", None) is not None:
        return
    set_predrawn(encoder, True)
    encoder._decision_modules = decision_modules(encoder)
    encoder.register_forward_pre_hook(_draw_hook)


class _TrainingCall:
    """A compiled layer's call (``nn.Module._compiled_call_impl``): the compiled code in
    training with gradients, the eager call otherwise (validation compiles nothing more)."""

    def __init__(self, module: nn.Module, compiled):
        self.module, self.compiled = module, compiled

    def __call__(self, *args, **kwargs):
        if self.module.training and torch.is_grad_enabled():
            return self.compiled(*args, **kwargs)
        return self.module._call_impl(*args, **kwargs)


def compile_encoder(model: nn.Module, **options) -> None:
    """Compile ``model.encoder``'s layers in place for training steps (the first one then
    compiles; eval and no-grad calls stay eager); ``options`` override
    :data:`COMPILE_OPTIONS` (tests: ``backend``)."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError("train.compile: the model has no encoder module to compile")
    parts = compiled_parts(encoder)
    install_decisions(encoder)
    options = {**COMPILE_OPTIONS, **options}
    # no duck shaping: a length that happens to equal a channel count (128 frames, 128
    # channels) would otherwise share its symbol and guard, and compile again at the next length
    import torch.fx.experimental._config as fx_config
    fx_config.use_duck_shape = False
    for part in parts:
        # what nn.Module.compile does, with the training-only switch
        part._compiled_call_impl = _TrainingCall(part, torch.compile(part._call_impl, **options))


def dynamo_counts() -> dict[str, int]:
    """Graphs torch.compile has made so far in this process, and its recompiles and graph breaks."""
    from torch._dynamo.utils import counters
    return {"graphs": int(counters["stats"]["unique_graphs"]),
            "recompiles": int(sum(counters["recompiles"].values())),
            "graph_breaks": int(sum(counters["graph_break"].values()))}

