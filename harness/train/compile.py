"""``train.compile``: the encoder's forward and backward through ``torch.compile``.

What is compiled: the encoder stacks (``model.encoder``), in place
(``nn.Module.compile``: parameter names, checkpoints and the running average
are unchanged), with dynamic shapes so that batches of another size or length
reuse the compiled code instead of compiling again. Conv-Embed, the heads and
the losses stay eager (Conv-Embed checks its lengths' values, which a compiled
graph cannot branch on without recompiling). Balancer, Whitener and dropout
draw Python random numbers each step: Dynamo breaks the graph there, so their
schedules act exactly as in eager mode.

Known limit (measured on CPU): Dynamo guards on those random draws and on
the schedule values (ScheduledFloat) it reads, so training steps recompile as
they change, until each frame's cache limit sends it back to eager; that and
the compile time (~100 s of CPU for the demo's Zipformer) are why
``train.compile`` is off by default.

The arithmetic is the eager one up to float rounding (inductor fuses
element-wise chains and may reorder sums); tests/harness/test_train_compile.py
compares a compiled training step with the eager one on the CPU backend.
"""
from __future__ import annotations

from torch import nn

#: torch.compile's settings for the encoder
COMPILE_OPTIONS = {"dynamic": True}


def compile_encoder(model: nn.Module) -> None:
    """Compile ``model.encoder`` in place (the first forward then compiles)."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError("train.compile: the model has no encoder module to compile")
    encoder.compile(**COMPILE_OPTIONS)

