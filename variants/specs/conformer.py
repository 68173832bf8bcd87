"""Conformer-S/M/L: the authors' reproduction behind the paper's Table 2 rows
(icefall's original, non-reworked Conformer, with the layer counts and
dimensions of the authors' Conformer-S/M/L recipes)."""
from ..registry import register_variant
from ..spec import ConformerConfig, ModelSpec


def conformer(**encoder) -> ConformerConfig:
    return ConformerConfig(**encoder)


def _conformer_spec(layers: int, dim: int, ff: int, heads: int, label: str,
                    params: float, gflops: float) -> ModelSpec:
    return ModelSpec(
        encoder=conformer(num_encoder_layers=layers, d_model=dim, dim_feedforward=ff, nhead=heads),
        optimizer="adam",
        description=f"Conformer-{label} (authors' reproduction, paper Table 2)",
        paper_params_m={"transducer": params},
        paper_gflops=gflops,
    )


@register_variant("conformer-s")
def conformer_s() -> ModelSpec:
    return _conformer_spec(16, 144, 576, 4, "S", 9.8, 29.1)


@register_variant("conformer-m")
def conformer_m() -> ModelSpec:
    return _conformer_spec(16, 256, 1024, 4, "M", 28.4, 77.0)


@register_variant("conformer-l")
def conformer_l() -> ModelSpec:
    return _conformer_spec(18, 512, 2048, 8, "L", 122.5, 294.2)
