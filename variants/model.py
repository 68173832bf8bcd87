"""The full ASR model: Conv-Embed/subsampling + encoder + any of the heads.

Parts are named as the authors' implementation (icefall) splits its
parameters (encoder_embed, encoder, decoder, joiner, ...), so
:meth:`AsrModel.param_counts` reproduces their per-part counts row by row.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from .components.zipformer_block import UNUSED_BYPASS_SCALE
from .encoders import build_encoder
from .spec import ModelSpec

#: the modules of the models whose lists of modules are cached (AsrModel.set_batch_count)
_watched: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
#: bumped whenever one of them registers a submodule (torch calls the hook below from every
#: module's ``__setattr__`` and ``add_module``, so ``ModuleList``/``ModuleDict`` edits too): a
#: cached list stays valid while the count is unchanged. Registrations elsewhere (a new
#: container, e.g. a slice of a Sequential made in a forward pass) leave it as it is.
_module_tree_edits = 0


def _count_module_edit(module: nn.Module, name: str, submodule: nn.Module | None) -> None:
    global _module_tree_edits
    if module in _watched:
        _module_tree_edits += 1


torch.nn.modules.module.register_module_module_registration_hook(_count_module_edit)


def counted_numel(module: nn.Module) -> int:
    """Parameters as the authors count them: every parameter plus the Zipformer
    blocks' ``unused_bypass_scale`` buffers, which are parameters (never used) in
    their implementation and buffers here."""
    return (sum(p.numel() for p in module.parameters())
            + sum(b.numel() for name, b in module.named_buffers()
                  if name.rpartition(".")[2] == UNUSED_BYPASS_SCALE))


class AsrModel(nn.Module):
    """Encoder plus transducer / CTC / attention-decoder heads.

    ``forward(x, x_lens)`` runs the encoder only and returns ``(out, out_lens)``
    with ``out`` of shape (batch, frames at 25 Hz, ``encoder_dim``). The losses
    (``harness.losses``) and the decoders (``harness.decoding``) use the heads.
    """

    def __init__(self, spec: ModelSpec, heads: tuple[str, ...] = ("transducer",)):
        super().__init__()
        self.spec = spec
        self.head_names = tuple(heads)
        h = spec.heads
        self.vocab_size = h.vocab_size
        self.blank_id = h.blank_id
        self.encoder_embed, self.encoder = build_encoder(spec.encoder)
        self.encoder_dim = spec.encoder.output_dim
        if "transducer" in heads:
            from .heads.transducer import Decoder, Joiner

            self.decoder = Decoder(h.vocab_size, h.decoder_dim, h.blank_id, h.context_size)
            self.joiner = Joiner(self.encoder_dim, h.decoder_dim, h.joiner_dim, h.vocab_size)
            # projections for the pruned loss's "simple" (linear) joiner
            self.simple_am_proj = nn.Linear(self.encoder_dim, h.vocab_size)
            self.simple_lm_proj = nn.Linear(h.decoder_dim, h.vocab_size)
        if "ctc" in heads:
            from .heads.ctc import CtcHead

            self.ctc_output = CtcHead(self.encoder_dim, h.vocab_size)
        if "attention" in heads:
            from .heads.attention_decoder import AttentionDecoder

            self.attention_decoder = AttentionDecoder(
                vocab_size=h.vocab_size,
                d_model=h.attention_decoder_dim,
                num_layers=h.attention_decoder_layers,
                nhead=h.attention_decoder_heads,
                dim_feedforward=h.attention_decoder_ff_dim,
                memory_dim=self.encoder_dim,
                sos_id=h.sos_eos_id,
                eos_id=h.sos_eos_id,
            )

    def forward_encoder(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, num_features) fbank at 100 Hz; returns (B, T', D), lengths."""
        x, x_lens = self.encoder_embed(x, x_lens)
        return self.encoder(x, x_lens)

    forward = forward_encoder

    def set_batch_count(self, batch_count: float) -> None:
        """Drive every schedule (Bypass minimum, Balancer/Whitener, dropout).

        Called every training step: the modules that hold a ``batch_count`` are found by one
        walk of the module tree, cached until a submodule is registered into one of its
        modules (a walk of the ~500 modules of a small Zipformer took 1 ms of a ~50 ms
        step; a module deleted since is still written to, harmlessly); a plain float
        attribute (a ScheduledFloat's) is written directly: ``nn.Module.__setattr__`` would
        first look it up among the parameters, buffers and submodules.
        """
        cached = self.__dict__.get("_scheduled")
        if cached is None or cached[0] != _module_tree_edits:
            modules = list(self.modules())
            _watched.update(modules)
            cached = (_module_tree_edits, [(m, "batch_count" in vars(m)) for m in modules
                                           if hasattr(m, "batch_count")])
            self.__dict__["_scheduled"] = cached
        value = float(batch_count)
        for m, plain in cached[1]:
            if plain:
                object.__setattr__(m, "batch_count", value)
            else:
                m.batch_count = value

    def __getstate__(self) -> dict:
        # a copy (deepcopy, pickle) walks its own tree on its first set_batch_count
        state = self.__dict__.copy()
        state.pop("_scheduled", None)
        return state

    def param_counts(self) -> dict[str, int]:
        """Parameters per part, named as in the paper's accounting."""

        def n(mod: nn.Module | None) -> int:
            return 0 if mod is None else counted_numel(mod)

        parts = {
            "encoder_embed": n(self.encoder_embed),
            "encoder": n(self.encoder),
            "decoder": n(getattr(self, "decoder", None)),
            "joiner": n(getattr(self, "joiner", None)),
            "simple_proj": n(getattr(self, "simple_am_proj", None)) + n(getattr(self, "simple_lm_proj", None)),
            "ctc_output": n(getattr(self, "ctc_output", None)),
            "attention_decoder": n(getattr(self, "attention_decoder", None)),
        }
        parts["total"] = n(self)
        return parts
