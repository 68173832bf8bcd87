"""One config schema for every model the harness builds.

A *variant* is a named :class:`ModelSpec`. Ablations are specs derived from a
base spec by switches (``norm``, ``activation``, ``nla`` ...), never copied
models. Everything is a validated pydantic model: unknown keys and bad values
raise errors that name the key and list what is allowed.
"""
from __future__ import annotations

from typing import Annotated, Literal, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Norm = Literal["bias_norm", "layer_norm"]
# "swoosh": SwooshR everywhere except SwooshL in the feed-forward and
# convolution modules (the paper's choice); "swoosh_r": SwooshR everywhere
# ("Only SwooshR" row of Table 5); "swish": Swish everywhere.
Activation = Literal["swoosh", "swoosh_r", "swish"]
Objective = Literal["transducer", "ctc", "ctc_aed"]
OptimizerName = Literal["scaled_adam", "adam"]

#: heads each named objective uses
OBJECTIVE_HEADS: dict[str, tuple[str, ...]] = {
    "transducer": ("transducer",),
    "ctc": ("ctc",),
    "ctc_aed": ("ctc", "attention"),
}


class FrozenSpec(BaseModel):
    """A part of a model spec: immutable (specs are hashed into cell ids), unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ZipformerConfig(FrozenSpec):
    """Zipformer encoder (paper Table 1 and the authors' training flags)."""

    kind: Literal["zipformer"] = "zipformer"
    num_features: int = Field(80, gt=0)
    output_downsampling_factor: int = Field(2, ge=1)
    downsampling_factor: Tuple[int, ...] = (1, 2, 4, 8, 4, 2)
    num_encoder_layers: Tuple[int, ...] = (2, 2, 3, 4, 3, 2)
    encoder_dim: Tuple[int, ...] = (192, 256, 384, 512, 384, 256)
    feedforward_dim: Tuple[int, ...] = (512, 768, 1024, 1536, 1024, 768)
    encoder_unmasked_dim: Tuple[int, ...] = (192, 192, 256, 256, 256, 192)
    num_heads: Tuple[int, ...] = (4, 4, 4, 8, 4, 4)
    cnn_module_kernel: Tuple[int, ...] = (31, 31, 15, 15, 15, 31)
    query_head_dim: int = Field(32, gt=0)
    value_head_dim: int = Field(12, gt=0)
    pos_head_dim: int = Field(4, gt=0)
    pos_dim: int = Field(48, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    causal: bool = False
    # Conv-Embed's total temporal stride (2: 100 Hz -> 50 Hz; 4 for the
    # "no temporal downsampling" ablation, which runs everything at 25 Hz).
    embed_time_stride: Literal[2, 4] = 2
    # Conv-Embed's three Conv2d output channels (paper: 8, 32, 128; the last is
    # also the ConvNeXt width). Smaller values are for CPU-sized experiments only.
    embed_channels: Tuple[int, int, int] = (8, 32, 128)
    # --- ablation switches (paper Tables 5 and 6) ---
    norm: Norm = "bias_norm"
    activation: Activation = "swoosh"
    nla: bool = True
    share_attention_weights: bool = True
    bypass: bool = True
    balancer: bool = True
    whitener: bool = True
    block_style: Literal["zipformer", "double_conformer"] = "zipformer"
    # Adam needs a norm on every module's output (paper section 4.0.3)
    norm_on_every_module: bool = False

    @model_validator(mode="after")
    def _per_stack_lengths(self) -> "ZipformerConfig":
        n = len(self.downsampling_factor)
        per_stack = (
            "num_encoder_layers", "encoder_dim", "feedforward_dim",
            "encoder_unmasked_dim", "num_heads", "cnn_module_kernel",
        )
        for name in per_stack:
            got = len(getattr(self, name))
            if got != n:
                raise ValueError(
                    f"{name} has {got} entries but downsampling_factor has {n}: "
                    "every per-stack setting needs one entry per stack")
        for i, (u, d) in enumerate(zip(self.encoder_unmasked_dim, self.encoder_dim)):
            if u > d:
                raise ValueError(f"encoder_unmasked_dim[{i}]={u} exceeds encoder_dim[{i}]={d}")
        for i, (d, h) in enumerate(zip(self.encoder_dim, self.num_heads)):
            if d <= 0 or h <= 0:
                raise ValueError(f"encoder_dim[{i}] and num_heads[{i}] must be positive")
        if any(c <= 0 for c in self.embed_channels):
            raise ValueError(f"embed_channels={self.embed_channels} must be positive")
        for i, k in enumerate(self.cnn_module_kernel):
            if k % 2 == 0:
                raise ValueError(f"cnn_module_kernel[{i}]={k} must be odd")
        return self

    @property
    def output_dim(self) -> int:
        return max(self.encoder_dim)


class ConformerConfig(FrozenSpec):
    """The authors' original (non-reworked) Conformer used for Table 2's rows."""

    kind: Literal["conformer"] = "conformer"
    num_features: int = Field(80, gt=0)
    num_encoder_layers: int = Field(16, gt=0)
    d_model: int = Field(256, gt=0)
    dim_feedforward: int = Field(1024, gt=0)
    nhead: int = Field(4, gt=0)
    cnn_module_kernel: int = Field(31, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # --- switches that make sense for a Conformer ---
    norm: Norm = "layer_norm"
    activation: Literal["swish", "swoosh", "swoosh_r"] = "swish"

    @model_validator(mode="after")
    def _heads_divide(self) -> "ConformerConfig":
        if self.d_model % self.nhead:
            raise ValueError(f"d_model={self.d_model} is not divisible by nhead={self.nhead}")
        if self.cnn_module_kernel % 2 == 0:
            raise ValueError(f"cnn_module_kernel={self.cnn_module_kernel} must be odd")
        return self

    @property
    def output_dim(self) -> int:
        return self.d_model


EncoderConfig = Annotated[Union[ZipformerConfig, ConformerConfig], Field(discriminator="kind")]


class HeadsConfig(FrozenSpec):
    """Output heads shared by all variants (authors' defaults)."""

    vocab_size: int = Field(500, gt=1)
    blank_id: int = Field(0, ge=0)
    decoder_dim: int = Field(512, gt=0)          # stateless transducer decoder
    context_size: int = Field(2, ge=1)
    joiner_dim: int = Field(512, gt=0)
    attention_decoder_dim: int = Field(512, gt=0)
    attention_decoder_layers: int = Field(6, gt=0)
    attention_decoder_heads: int = Field(8, gt=0)
    attention_decoder_ff_dim: int = Field(2048, gt=0)
    # the attention decoder's <sos/eos>: id 1 in the authors' BPE layout
    # (<blk>=0, <sos/eos>=1, <unk>=2), which harness.data's BPE models follow
    sos_eos_id: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "HeadsConfig":
        if self.blank_id >= self.vocab_size:
            raise ValueError(f"blank_id={self.blank_id} must be < vocab_size={self.vocab_size}")
        if self.sos_eos_id >= self.vocab_size or self.sos_eos_id == self.blank_id:
            raise ValueError(f"sos_eos_id={self.sos_eos_id} must be < vocab_size={self.vocab_size} "
                             f"and differ from blank_id={self.blank_id}")
        if self.attention_decoder_dim % self.attention_decoder_heads:
            raise ValueError("attention_decoder_dim must be divisible by attention_decoder_heads")
        return self


class ModelSpec(FrozenSpec):
    """A complete model: encoder + heads + the optimizer it is trained with."""

    encoder: EncoderConfig = Field(default_factory=ZipformerConfig)
    heads: HeadsConfig = Field(default_factory=HeadsConfig)
    optimizer: OptimizerName = "scaled_adam"
    description: str = ""
    # paper values, for reports: {"transducer": 65.6, ...} params (M) and GFLOPs
    paper_params_m: dict[str, float] = Field(default_factory=dict)
    paper_gflops: float | None = None
