"""Swappable Zipformer / Conformer components and the variant registry.

Importing ``variants`` registers the built-in presets (``variants/specs/``).
"""
from .registry import (  # noqa: F401
    InvalidSwitchValueError,
    UnknownSwitchError,
    UnknownVariantError,
    VariantError,
    apply_overrides,
    build_model,
    describe_variant,
    get_spec,
    list_variants,
    model_from_spec,
    register_ablation,
    register_variant,
)
from .spec import ConformerConfig, HeadsConfig, ModelSpec, ZipformerConfig  # noqa: F401
from . import specs  # noqa: F401,E402  (registers the built-in presets)


def __getattr__(name: str):
    """The authors' checkpoint interop (``variants.interop``), imported on first use:
    it builds models, which ``import variants`` alone does not need."""
    if name in ("load_icefall_checkpoint", "export_icefall_state_dict"):
        from . import interop
        return getattr(interop, name)
    raise AttributeError(f"module 'variants' has no attribute {name!r}")
