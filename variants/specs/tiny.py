"""Tiny variants for tests and benchmarks: each keeps its encoder's structure
(every stack and module, the same switches and optimizer as its S preset) at
sizes that build in well under a second and train a step in milliseconds on a
CPU. They have no paper figures and ``harness profile`` without names skips them.
"""
from ..registry import register_variant
from ..spec import ConformerConfig, HeadsConfig, ModelSpec, ZipformerConfig

#: heads at toy sizes (a grid cell still takes its vocabulary from its tokenizer)
TINY_HEADS = dict(vocab_size=20, decoder_dim=16, joiner_dim=16, attention_decoder_dim=16,
                  attention_decoder_layers=1, attention_decoder_heads=2, attention_decoder_ff_dim=16)


@register_variant("zipformer-tiny", tiny=True)
def zipformer_tiny() -> ModelSpec:
    """Zipformer-S's six stacks (downsampling 1, 2, 4, 8, 4, 2), one block each, dim 32."""
    return ModelSpec(
        encoder=ZipformerConfig(num_encoder_layers=(1,) * 6, encoder_dim=(32,) * 6,
                                feedforward_dim=(32,) * 6, encoder_unmasked_dim=(16,) * 6,
                                num_heads=(2,) * 6),
        heads=HeadsConfig(**TINY_HEADS),
        description="tiny Zipformer for tests (Zipformer-S structure, dim 32)",
    )


@register_variant("conformer-tiny", tiny=True)
def conformer_tiny() -> ModelSpec:
    """Two Conformer layers at d_model 32, trained with Adam like the Conformer presets."""
    return ModelSpec(
        encoder=ConformerConfig(num_encoder_layers=2, d_model=32, dim_feedforward=64, nhead=4,
                                cnn_module_kernel=7),
        heads=HeadsConfig(**TINY_HEADS),
        optimizer="adam",
        description="tiny Conformer for tests (two layers, d_model 32)",
    )
