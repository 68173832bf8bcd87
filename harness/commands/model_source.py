"""What the export commands read: a harness checkpoint file or a cell's run directory.

A checkpoint file is one the trainer writes (``epoch-<e>.pt``, ``checkpoint-<step>.pt``)
or ``harness import-icefall`` writes; a run directory (``runs/<grid>/<cell id>``) gives
the weights its decoding uses: the last epoch, averaged as its ``decode`` section says.
The model is rebuilt from the checkpoint's ``config`` (variant, objective,
overrides); the vocabulary size is read off the weights and the blank is id 0,
as the harness's tokenizer guarantees.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.train import checkpoint
from harness.train.model_average import averaged_weights


class SourceError(ValueError):
    """A path that is neither a harness checkpoint nor a cell's run directory."""


def _weights_and_config(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if path.is_dir():
        ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        epochs = checkpoint.epoch_checkpoints(ckpt_dir)
        if not epochs:
            raise SourceError(f"{path}: no epoch-<e>.pt in {ckpt_dir}; pass a cell's run directory "
                              "or a checkpoint file")
        last = max(epochs)
        cfg = checkpoint.load(epochs[last]).get("config") or {}
        dec = cfg.get("decode") or {}
        weights = averaged_weights(ckpt_dir, last, int(dec.get("avg", 1)), bool(dec.get("use_averaged_model", True)))
        return weights, cfg
    if not path.is_file():
        raise SourceError(f"{path}: no such file or directory")
    try:
        state = checkpoint.load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise SourceError(f"{path}: not a torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) \
            or not isinstance(state.get("config"), dict):
        raise SourceError(f"{path}: not a harness checkpoint (needs 'model' and 'config'); "
                          "for the authors' checkpoints run `harness import-icefall` first")
    return state["model"], state["config"]


def model_config(cfg: dict[str, Any], weights: dict[str, torch.Tensor]) -> tuple[str, Any, dict[str, Any]]:
    """(variant, objective, overrides) to rebuild the model whose ``weights`` these are."""
    from variants.interop.icefall import infer_head_overrides

    if "variant" not in cfg:
        raise SourceError("checkpoint config: variant: missing")
    objective = cfg.get("objective", "transducer")
    objective = objective if isinstance(objective, str) else tuple(objective)
    overrides = dict(cfg.get("overrides") or {})
    vocab = infer_head_overrides(weights).get("heads.vocab_size")
    if vocab is not None:
        overrides.setdefault("heads.vocab_size", vocab)
    overrides.setdefault("heads.blank_id", 0)
    return cfg["variant"], objective, overrides


def load_model(path: str | Path):
    """The eval-mode AsrModel stored at ``path`` (see the module docstring)."""
    from variants import VariantError, build_model

    path = Path(path)
    weights, cfg = _weights_and_config(path)
    variant, objective, overrides = model_config(cfg, weights)
    try:
        model = build_model(variant, objective, **overrides)
    except VariantError as e:
        raise SourceError(f"{path}: config: {e}") from None
    result = model.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise SourceError(f"{path}: weights do not fit {variant} ({objective}): missing "
                          f"{', '.join(result.missing_keys) or 'none'}; unknown "
                          f"{', '.join(result.unexpected_keys) or 'none'}")
    return model.eval()
