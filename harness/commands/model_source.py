"""What the export commands read: a harness checkpoint file or a cell's run directory.

A checkpoint file is one the trainer writes (``epoch-<e>.pt``, ``checkpoint-<step>.pt``)
or ``harness import-icefall`` writes; a run directory (``runs/<grid>/<cell id>``) gives
the weights its decoding uses: the last epoch, averaged as its ``decode`` section says,
unless ``--epoch``, ``--avg`` or ``--[no-]use-averaged-model`` (:class:`Choice`) say otherwise.
The model is rebuilt from the checkpoint's ``config`` (variant, objective,
overrides); the vocabulary size is read off the weights and the blank is id 0,
as the harness's tokenizer guarantees.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.evaluate import checkpoint
from harness.evaluate.model_average import average_epochs
from variants.spec import ModelSpec


class SourceError(ValueError):
    """A path that is neither a harness checkpoint nor a cell's run directory."""


@dataclass(frozen=True)
class Choice:
    """Which weights of a cell to use: ``--epoch``, ``--avg``, ``--[no-]use-averaged-model``
    (None: the last epoch and the cell's ``decode`` section)."""

    epoch: int | None = None
    avg: int | None = None
    use_averaged_model: bool | None = None

    @classmethod
    def from_args(cls, args: Any) -> "Choice":
        return cls(getattr(args, "epoch", None), getattr(args, "avg", None),
                   getattr(args, "use_averaged_model", None))


def add_choice_arguments(p: Any) -> None:
    """``--epoch``, ``--avg`` and ``--[no-]use-averaged-model``, as ``harness decode`` has them."""
    import argparse

    from .common import positive_int

    p.add_argument("--epoch", type=positive_int, metavar="E",
                   help="with a run directory: the epoch checkpoint (default: the last)")
    p.add_argument("--avg", type=positive_int, metavar="N",
                   help="with a run directory: average the last N epochs up to --epoch "
                        "(default: the cell's decode.avg)")
    p.add_argument("--use-averaged-model", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the running-average model (default: the cell's "
                        "decode.use_averaged_model; with a checkpoint file: off, on uses its 'model_avg')")


@dataclass(frozen=True)
class Source:
    """Weights and the config they were trained with, and a note of what was averaged."""

    weights: dict[str, torch.Tensor]
    config: dict[str, Any]
    note: str
    epoch: int | None = None
    step: int | None = None


def read_source(path: str | Path, choice: Choice = Choice()) -> Source:
    """The weights at ``path`` (a run directory or a checkpoint file) as ``choice`` picks them."""
    path = Path(path)
    if path.is_dir():
        ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        epochs = checkpoint.epoch_checkpoints(ckpt_dir)
        if not epochs:
            raise SourceError(f"{path}: no epoch-<e>.pt in {ckpt_dir}; pass a cell's run directory "
                              "or a checkpoint file")
        epoch = choice.epoch if choice.epoch is not None else max(epochs)
        if epoch not in epochs:
            raise SourceError(f"{path}: --epoch: no checkpoint for epoch {epoch}; allowed: "
                              f"{', '.join(map(str, sorted(epochs)))}")
        cfg = checkpoint.load(epochs[epoch]).get("config") or {}
        dec = cfg.get("decode") or {}
        avg = choice.avg if choice.avg is not None else int(dec.get("avg", 1))
        uam = choice.use_averaged_model if choice.use_averaged_model is not None \
            else bool(dec.get("use_averaged_model", True))
        try:
            got = average_epochs(ckpt_dir, epoch, avg, uam)
        except (ValueError, FileNotFoundError, KeyError) as e:
            raise SourceError(f"{path}: cannot average epoch {epoch} over {avg}: {e}") from None
        return Source(got.weights, cfg, got.note, epoch, got.step)
    if not path.is_file():
        raise SourceError(f"{path}: no such file or directory")
    if choice.epoch is not None or choice.avg is not None:
        raise SourceError(f"{path}: --epoch and --avg choose among a cell's epoch checkpoints: pass its "
                          "run directory (runs/<grid>/<cell id>), not one file")
    try:
        state = checkpoint.load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise SourceError(f"{path}: not a torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) \
            or not isinstance(state.get("config"), dict):
        raise SourceError(f"{path}: not a harness checkpoint (needs 'model' and 'config'); "
                          "for the authors' checkpoints run `harness import-icefall` first")
    epoch = state.get("epoch")
    epoch = int(epoch) if epoch is not None else None
    step = int(state["step"]) if state.get("step") is not None else None
    if choice.use_averaged_model:
        if state.get("model_avg") is None:
            raise SourceError(f"{path}: --use-averaged-model: the checkpoint holds no running average "
                              "('model_avg')")
        keys = state["model"]
        weights = {k: v.to(keys[k].dtype) for k, v in state["model_avg"].items() if k in keys}
        return Source(weights, state["config"], f"{path.name} (running average since the start of training)",
                      epoch, step)
    note = state.get("averaged") or f"{path.name} (its own weights)"
    return Source(state["model"], state["config"], str(note), epoch, step)


def model_config(cfg: dict[str, Any], weights: dict[str, torch.Tensor]) -> tuple[ModelSpec, Any]:
    """(model spec, objective) of the model whose ``weights`` these are: the config's variant and
    overrides resolved once, with the vocabulary the weights hold (a bad one: ``VariantError``)."""
    from variants import get_spec
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
    return get_spec(cfg["variant"], overrides), objective


def load_model(path: str | Path, choice: Choice = Choice()):
    """The eval-mode AsrModel stored at ``path`` (see the module docstring)."""
    return load_source_model(path, choice)[0]


def load_source_model(path: str | Path, choice: Choice = Choice()):
    """(eval-mode AsrModel, :class:`Source`) of the weights ``choice`` picks at ``path``."""
    from variants import VariantError, model_from_spec

    path = Path(path)
    source = read_source(path, choice)
    weights, cfg = source.weights, source.config
    try:
        spec, objective = model_config(cfg, weights)
        model = model_from_spec(spec, objective)
    except VariantError as e:
        raise SourceError(f"{path}: config: {e}") from None
    variant = cfg["variant"]
    result = model.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise SourceError(f"{path}: weights do not fit {variant} ({objective}): missing "
                          f"{', '.join(result.missing_keys) or 'none'}; unknown "
                          f"{', '.join(result.unexpected_keys) or 'none'}")
    return model.eval(), source


def find_tokenizer(config: dict[str, Any], bpe_model: str | Path | None = None):
    """The Tokenizer of ``bpe_model``, else of the corpus the config was trained on (``data.dir``)."""
    from harness.data import PreparedCorpus, Tokenizer

    if bpe_model:
        path = Path(bpe_model)
    else:
        data_dir = (config.get("data") or {}).get("dir")
        if not data_dir:
            raise SourceError("the checkpoint does not name its corpus (data.dir): give --bpe-model PATH")
        try:
            path = Path(PreparedCorpus.load(data_dir).bpe_model)
        except (FileNotFoundError, ValueError, KeyError, TypeError) as e:
            raise SourceError(f"the cell's corpus {data_dir}: {e}; give --bpe-model PATH") from None
    try:
        return Tokenizer(path)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
        raise SourceError(f"--bpe-model {path}: {e}") from None
