"""The authors' checkpoints (icefall's zipformer recipe) in and out.

Reads the layouts their recipe writes:

* ``epoch-N.pt`` / ``checkpoint-N.pt`` from their ``train.py``: ``{"model": state_dict,
  "model_avg": ..., "optimizer": ..., <every training flag>}``;
* ``pretrained.pt`` from their ``export.py`` (also what it writes after ``--avg``):
  ``{"model": state_dict}``;
* a bare state dict (what their ``average_checkpoints`` returns).

The scale (Zipformer-S/M/L) and the heads (transducer, CTC, attention decoder)
are read off the parameter names and shapes; the flags a ``train.py``
checkpoint records (head dims, ``encoder_unmasked_dim``, ``blank_id``,
``sos_id``) are used when present. Names are mapped by
:mod:`variants.interop.icefall_names`; every key on either side must be
accounted for, otherwise one error lists the missing, unknown and
mis-shaped keys by name.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from ..registry import VariantError, get_spec, list_variants, resolve_objective, variant_base
from ..spec import OBJECTIVE_HEADS, ModelSpec
from .icefall_names import icefall_to_ours, ours_to_icefall

StateDict = Mapping[str, torch.Tensor]

#: encoder fields the parameter shapes determine (the rest only matter in training)
STRUCTURE = ("downsampling_factor", "num_encoder_layers", "encoder_dim", "feedforward_dim",
             "num_heads", "cnn_module_kernel", "pos_dim", "query_head_dim", "value_head_dim",
             "pos_head_dim", "embed_channels", "output_downsampling_factor", "num_features")
#: our encoder switches their code has no equivalent for: a model must have these values to export
AUTHORS_SWITCHES = {"norm": "bias_norm", "activation": "swoosh", "nla": True,
                    "share_attention_weights": True, "bypass": True, "block_style": "zipformer",
                    "norm_on_every_module": False, "embed_time_stride": 2,
                    "embed_channels": (8, 32, 128), "output_downsampling_factor": 2, "causal": False}
#: head order in an explicit objective
HEAD_ORDER = ("transducer", "ctc", "attention")
_STACK = re.compile(r"^encoder\.encoders\.(\d+)\.(?:encoder\.)?layers\.(\d+)\.")


class IcefallCheckpointError(ValueError):
    """A checkpoint that is not, or does not fit, the authors' zipformer layout."""


@dataclass
class IcefallImport:
    """What a checkpoint resolves to: build ``variant`` with ``objective`` and ``overrides``."""

    variant: str
    objective: Union[str, tuple[str, ...]]
    overrides: dict[str, Any]
    state_dict: dict[str, torch.Tensor]          # our names
    recorded: dict[str, Any] = field(default_factory=dict)  # train.py flags found in the file
    step: int = 0
    epoch: int = 0

    def build(self):
        from ..registry import build_model

        return build_model(self.variant, self.objective, **self.overrides)


# ---------------------------------------------------------------- reading
def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise IcefallCheckpointError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("/constants.pkl") for n in z.namelist()):
                raise IcefallCheckpointError(
                    f"{path}: a TorchScript file (export.py --jit); import the pretrained.pt or "
                    "epoch-N.pt it was made from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise IcefallCheckpointError(f"{path}: not a torch checkpoint ({e})") from None
        # train.py checkpoints also hold their flags (paths, dicts): a full unpickle
    except Exception as e:  # noqa: BLE001 - anything torch.load raises is a bad file
        raise IcefallCheckpointError(f"{path}: not a torch checkpoint ({type(e).__name__}: {e})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise IcefallCheckpointError(f"{path}: not a torch checkpoint ({type(e).__name__}: {e})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def read_icefall_state_dict(path_or_state_dict: Union[str, Path, Mapping[str, Any]],
                            use_averaged_model: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict with the authors' names, the flags the file records) from any of their layouts.

    ``use_averaged_model``: take ``model_avg`` (the running average ``train.py`` keeps)."""
    where = str(path_or_state_dict) if isinstance(path_or_state_dict, (str, Path)) else "state dict"
    obj = _torch_load(Path(path_or_state_dict)) if isinstance(path_or_state_dict, (str, Path)) \
        else path_or_state_dict
    if _is_state_dict(obj):
        if use_averaged_model:
            raise IcefallCheckpointError(f"{where}: a bare state dict has no model_avg")
        return dict(obj), {}
    if not isinstance(obj, Mapping):
        raise IcefallCheckpointError(f"{where}: expected a dict, got {type(obj).__name__}")
    key = "model_avg" if use_averaged_model else "model"
    if not _is_state_dict(obj.get(key)):
        raise IcefallCheckpointError(
            f"{where}: {key}: no state dict there; top-level keys: {', '.join(map(str, list(obj)[:20]))}")
    recorded = {k: v for k, v in obj.items()
                if k not in ("model", "model_avg", "optimizer", "scheduler", "grad_scaler", "sampler")
                and isinstance(v, (str, int, float, bool))}
    return dict(obj[key]), recorded


# ---------------------------------------------------------------- inferring the structure
def _tuple_flag(recorded: Mapping[str, Any], name: str) -> Optional[tuple[int, ...]]:
    v = recorded.get(name)
    if v is None:
        return None
    try:
        return tuple(int(x) for x in str(v).split(","))
    except ValueError:
        return None


def infer_structure(sd: StateDict, recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Encoder fields (ZipformerConfig names) read off a state dict with our names."""
    recorded = recorded or {}
    layers: dict[int, int] = {}
    for k in sd:
        m = _STACK.match(k)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            layers[i] = max(layers.get(i, 0), j + 1)
    if not layers or sorted(layers) != list(range(len(layers))):
        raise IcefallCheckpointError(
            "no Zipformer encoder found: expected keys encoder.encoders.<i>.[encoder.]layers.<j>.*")
    n = len(layers)

    def first(i: int, rest: str) -> torch.Tensor:
        for pre in (f"encoder.encoders.{i}.layers.0.", f"encoder.encoders.{i}.encoder.layers.0."):
            if pre + rest in sd:
                return sd[pre + rest]
        raise IcefallCheckpointError(f"stack {i}: missing encoder.encoders.{i}.[encoder.]layers.0.{rest}")

    # head dims are not identifiable from shapes alone: the recorded flags, else the authors' defaults
    q = (_tuple_flag(recorded, "query_head_dim") or (32,))[0]
    p = (_tuple_flag(recorded, "pos_head_dim") or (4,))[0]
    v = (_tuple_flag(recorded, "value_head_dim") or (12,))[0]
    out: dict[str, Any] = {
        "num_encoder_layers": tuple(layers[i] for i in range(n)),
        "encoder_dim": tuple(int(first(i, "norm.bias").shape[0]) for i in range(n)),
        "feedforward_dim": tuple(int(first(i, "feed_forward2.in_proj.weight").shape[0]) for i in range(n)),
        "num_heads": tuple(int(first(i, "self_attn_weights.linear_pos.weight").shape[0]) // p for i in range(n)),
        "cnn_module_kernel": tuple(int(first(i, "conv_module1.depthwise_conv.weight").shape[-1]) for i in range(n)),
        "downsampling_factor": tuple(
            int(sd[f"encoder.encoders.{i}.downsample.bias"].shape[0]) if f"encoder.encoders.{i}.downsample.bias" in sd
            else 1 for i in range(n)),
        "pos_dim": int(first(0, "self_attn_weights.linear_pos.weight").shape[1]),
        "query_head_dim": q, "pos_head_dim": p, "value_head_dim": v,
    }
    if "encoder.downsample_output.bias" in sd:
        out["output_downsampling_factor"] = int(sd["encoder.downsample_output.bias"].shape[0])
    chans = [sd.get(f"encoder_embed.conv.{j}.weight") for j in (0, 3, 6)]
    if all(c is not None for c in chans):
        out["embed_channels"] = tuple(int(c.shape[0]) for c in chans)
    nf = recorded.get("feature_dim")
    if isinstance(nf, int):
        out["num_features"] = nf
    unmasked = _tuple_flag(recorded, "encoder_unmasked_dim")
    if unmasked is not None:
        out["encoder_unmasked_dim"] = unmasked
    return out


def infer_heads(sd: StateDict) -> tuple[str, ...]:
    """The heads whose parameters the state dict (our names) holds, in HEAD_ORDER."""
    has = {"transducer": any(k.startswith(("decoder.", "joiner.", "simple_")) for k in sd),
           "ctc": any(k.startswith("ctc_output.") for k in sd),
           "attention": any(k.startswith("attention_decoder.") for k in sd)}
    heads = tuple(h for h in HEAD_ORDER if has[h])
    if not heads:
        raise IcefallCheckpointError("no head found: expected decoder./joiner. (transducer), "
                                     "ctc_output. (CTC) or attention_decoder. keys")
    return heads


def objective_name(heads: tuple[str, ...]) -> Union[str, tuple[str, ...]]:
    """A named objective when one has exactly these heads, else the tuple."""
    for name, hs in OBJECTIVE_HEADS.items():
        if tuple(hs) == tuple(heads):
            return name
    return tuple(heads)


def infer_head_overrides(sd: StateDict, recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``heads.*`` overrides read off the head shapes (and the recorded flags)."""
    recorded = recorded or {}
    o: dict[str, Any] = {}
    for k in ("decoder.embedding.weight", "ctc_output.linear.weight", "attention_decoder.output_layer.weight"):
        if k in sd:
            o["heads.vocab_size"] = int(sd[k].shape[0])
            break
    if "decoder.embedding.weight" in sd:
        o["heads.decoder_dim"] = int(sd["decoder.embedding.weight"].shape[1])
        o["heads.context_size"] = int(sd["decoder.conv.weight"].shape[-1]) if "decoder.conv.weight" in sd else 1
    if "joiner.output_linear.weight" in sd:
        o["heads.joiner_dim"] = int(sd["joiner.output_linear.weight"].shape[1])
    if "attention_decoder.embed.weight" in sd:
        o["heads.attention_decoder_dim"] = int(sd["attention_decoder.embed.weight"].shape[1])
        o["heads.attention_decoder_layers"] = 1 + max(
            int(m.group(1)) for k in sd if (m := re.match(r"^attention_decoder\.layers\.(\d+)\.", k)))
        o["heads.attention_decoder_ff_dim"] = int(sd["attention_decoder.layers.0.feed_forward.0.weight"].shape[0])
        if isinstance(recorded.get("attention_decoder_num_heads"), int):
            o["heads.attention_decoder_heads"] = recorded["attention_decoder_num_heads"]
    for ours, theirs in (("heads.blank_id", "blank_id"), ("heads.sos_eos_id", "sos_id")):
        if isinstance(recorded.get(theirs), int):
            o[ours] = recorded[theirs]
    return o


def _structure_of(spec: ModelSpec) -> dict[str, Any]:
    enc = spec.encoder
    return {k: getattr(enc, k) for k in STRUCTURE}


def _differences(found: Mapping[str, Any], spec: ModelSpec) -> list[str]:
    have = _structure_of(spec)
    return [f"encoder.{k}={tuple(v) if isinstance(v, (list, tuple)) else v} (variant: {have[k]})"
            for k, v in found.items() if k in have and (tuple(v) if isinstance(v, (list, tuple)) else v) != have[k]]


def _switch_differences(spec: ModelSpec) -> list[str]:
    """Switches of ``spec`` the authors' code does not have (their weights would compute otherwise)."""
    enc = spec.encoder
    return [f"encoder.{k}={getattr(enc, k)!r} (authors: {v!r})" for k, v in AUTHORS_SWITCHES.items()
            if k not in STRUCTURE and getattr(enc, k) != v]


def _choose_variant(structure: Mapping[str, Any], variant: Optional[str]) -> str:
    if variant is not None:
        try:
            spec = get_spec(variant)
        except VariantError as e:
            raise IcefallCheckpointError(str(e)) from None
        if spec.encoder.kind != "zipformer":
            raise IcefallCheckpointError(f"variant {variant!r} is a {spec.encoder.kind}; the authors' "
                                         "checkpoints are Zipformers")
        diffs = _switch_differences(spec) + _differences(structure, spec)
        if diffs:
            raise IcefallCheckpointError(f"variant {variant!r} does not match the checkpoint: " + "; ".join(diffs))
        return variant
    candidates = [n for n in list_variants("zipformer-*") if variant_base(n) is None]
    for name in candidates:
        if not _differences(structure, get_spec(name)):
            return name
    shown = ", ".join(f"{k}={v}" for k, v in structure.items() if k in STRUCTURE)
    raise IcefallCheckpointError(f"no Zipformer preset ({', '.join(candidates)}) has the checkpoint's "
                                 f"structure ({shown}); pass a variant that does")


def resolve_icefall_checkpoint(path_or_state_dict: Union[str, Path, Mapping[str, Any]],
                               variant: Optional[str] = None,
                               objective: Union[str, tuple[str, ...], list[str], None] = None,
                               use_averaged_model: bool = False) -> IcefallImport:
    """Read a checkpoint and decide what it is: variant, objective, overrides, our-named weights."""
    theirs, recorded = read_icefall_state_dict(path_or_state_dict, use_averaged_model)
    if recorded.get("causal") is True:
        raise IcefallCheckpointError("a causal (streaming) Zipformer checkpoint; only non-causal ones "
                                     "are supported (our encoder has no chunked attention)")
    ours = {icefall_to_ours(k): v for k, v in theirs.items()}
    structure = infer_structure(ours, recorded)
    name = _choose_variant(structure, variant)
    spec = get_spec(name)
    overrides: dict[str, Any] = {}
    unmasked = structure.get("encoder_unmasked_dim")
    if unmasked is not None and tuple(unmasked) != tuple(spec.encoder.encoder_unmasked_dim):
        overrides["encoder.encoder_unmasked_dim"] = tuple(unmasked)
    overrides.update({k: v for k, v in infer_head_overrides(ours, recorded).items()
                      if getattr(spec.heads, k.split(".", 1)[1]) != v})
    if objective is None:
        obj: Union[str, tuple[str, ...]] = objective_name(infer_heads(ours))
    else:
        try:
            heads = resolve_objective(objective if isinstance(objective, str) else tuple(objective))
        except VariantError as e:
            raise IcefallCheckpointError(str(e)) from None
        obj = objective if isinstance(objective, str) else objective_name(tuple(heads))
    step = recorded.get("batch_idx_train")
    epoch = recorded.get("cur_epoch")
    return IcefallImport(name, obj, overrides, ours, recorded,
                         step=int(step) if isinstance(step, int) else 0,
                         epoch=int(epoch) if isinstance(epoch, int) else 0)


def check_keys(model: torch.nn.Module, sd: StateDict, name_of=lambda k: k) -> None:
    """One error naming every missing, unknown and mis-shaped key (``name_of`` maps to the file's names)."""
    want = model.state_dict()
    missing = [name_of(k) for k in want if k not in sd]
    unknown = [name_of(k) for k in sd if k not in want]
    shapes = [f"{name_of(k)} {tuple(sd[k].shape)} (model: {tuple(want[k].shape)})"
              for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown keys ({len(unknown)}): {', '.join(unknown)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {', '.join(shapes)}")
    if parts:
        raise IcefallCheckpointError("; ".join(parts))


def load_icefall_checkpoint(path_or_state_dict: Union[str, Path, Mapping[str, Any]],
                            variant: Optional[str] = None,
                            objective: Union[str, tuple[str, ...], list[str], None] = None,
                            use_averaged_model: bool = False):
    """The :class:`~variants.model.AsrModel` holding an authors' checkpoint's weights (eval mode)."""
    imp = resolve_icefall_checkpoint(path_or_state_dict, variant, objective, use_averaged_model)
    model = imp.build()
    check_keys(model, imp.state_dict, ours_to_icefall)
    model.load_state_dict(imp.state_dict, strict=True)
    return model.eval()


# ---------------------------------------------------------------- writing
def check_exportable(model) -> None:
    """Refuse a model the authors' code would compute differently (it has no switch for it)."""
    enc = model.spec.encoder
    if enc.kind != "zipformer":
        raise IcefallCheckpointError(f"a {enc.kind} encoder has no counterpart in the authors' zipformer recipe")
    bad = _switch_differences(model.spec) + [
        f"encoder.{k}={getattr(enc, k)!r} (authors: {AUTHORS_SWITCHES[k]!r})"
        for k in ("embed_channels", "output_downsampling_factor")
        if getattr(enc, k) != AUTHORS_SWITCHES[k]]
    if bad:
        raise IcefallCheckpointError("the authors' code cannot run this model: " + "; ".join(bad))


def export_icefall_state_dict(model) -> dict[str, torch.Tensor]:
    """Our model's weights under the authors' names (load with ``strict=True`` in their AsrModel)."""
    check_exportable(model)
    return {ours_to_icefall(k): v.detach().clone() for k, v in model.state_dict().items()}


def icefall_flags(model) -> list[str]:
    """The authors' ``train.py`` flags that build a model matching ours (for their export/decode scripts)."""
    enc, h = model.spec.encoder, model.spec.heads
    join = lambda t: ",".join(str(x) for x in t)  # noqa: E731
    flags = ["--num-encoder-layers", join(enc.num_encoder_layers),
             "--downsampling-factor", join(enc.downsampling_factor),
             "--feedforward-dim", join(enc.feedforward_dim),
             "--num-heads", join(enc.num_heads),
             "--encoder-dim", join(enc.encoder_dim),
             "--encoder-unmasked-dim", join(enc.encoder_unmasked_dim),
             "--cnn-module-kernel", join(enc.cnn_module_kernel),
             "--query-head-dim", str(enc.query_head_dim), "--value-head-dim", str(enc.value_head_dim),
             "--pos-head-dim", str(enc.pos_head_dim), "--pos-dim", str(enc.pos_dim),
             "--causal", "0",
             "--use-transducer", str(int("transducer" in model.head_names)),
             "--use-ctc", str(int("ctc" in model.head_names)),
             "--use-attention-decoder", str(int("attention" in model.head_names))]
    if "transducer" in model.head_names:
        flags += ["--decoder-dim", str(h.decoder_dim), "--joiner-dim", str(h.joiner_dim),
                  "--context-size", str(h.context_size)]
    if "attention" in model.head_names:
        flags += ["--attention-decoder-dim", str(h.attention_decoder_dim),
                  "--attention-decoder-num-layers", str(h.attention_decoder_layers),
                  "--attention-decoder-attention-dim", str(h.attention_decoder_dim),
                  "--attention-decoder-num-heads", str(h.attention_decoder_heads),
                  "--attention-decoder-feedforward-dim", str(h.attention_decoder_ff_dim)]
    return flags


__all__ = ["IcefallCheckpointError", "IcefallImport", "check_keys", "export_icefall_state_dict",
           "icefall_flags", "infer_heads", "infer_structure", "load_icefall_checkpoint",
           "read_icefall_state_dict", "resolve_icefall_checkpoint"]
