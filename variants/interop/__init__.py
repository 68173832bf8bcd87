"""Interoperability: the authors' (icefall) checkpoints in and out, and exported models."""
from .icefall import (  # noqa: F401
    IcefallCheckpointError,
    IcefallImport,
    export_icefall_state_dict,
    icefall_flags,
    load_icefall_checkpoint,
    resolve_icefall_checkpoint,
)
from .icefall_names import icefall_to_ours, ours_to_icefall  # noqa: F401
