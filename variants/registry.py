"""The variant registry: a variant name plus overrides resolve to a :class:`ModelSpec`
(:func:`get_spec`, the one resolve function), and a model is built from a spec
(:func:`model_from_spec`).

timm-style: a decorator registers a zero-argument preset returning a
:class:`~variants.spec.ModelSpec`; ablations are registered with
:func:`register_ablation` as switch sets over a base preset. The built-in
presets (``variants/specs/``) register themselves when ``variants`` is
imported; this module imports none of them.

    >>> from variants import build_model, list_variants
    >>> list_variants("zipformer-m*")
    >>> model = build_model("zipformer-m-layernorm", objective="ctc")
    >>> model = build_model("zipformer-s", num_encoder_layers=(1,) * 6)
    >>> model = model_from_spec(get_spec("zipformer-s", {"norm": "layer_norm"}), "ctc")
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pydantic import ValidationError

from .spec import OBJECTIVE_HEADS, ModelSpec


class VariantError(ValueError):
    """Base class of every registry error."""


class UnknownVariantError(VariantError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class UnknownSwitchError(VariantError):
    pass


class InvalidSwitchValueError(VariantError):
    pass


@dataclass(frozen=True)
class Entry:
    """One registered variant: how to build its spec and, for an ablation, what it derives from."""

    name: str
    preset: Callable[[], ModelSpec]
    #: the preset an ablation derives from (None for a base preset)
    base: str | None = None
    #: the switches an ablation sets over its base
    switches: dict[str, Any] = field(default_factory=dict)
    #: a toy-sized variant for tests and benchmarks (no paper figures)
    tiny: bool = False


#: name -> entry, in registration order
_REGISTRY: dict[str, Entry] = {}


def _register(entry: Entry) -> None:
    if entry.name in _REGISTRY:
        raise VariantError(f"variant {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry


def register_variant(name: str, *, tiny: bool = False
                     ) -> Callable[[Callable[[], ModelSpec]], Callable[[], ModelSpec]]:
    """Decorator: register a zero-argument function returning a ModelSpec
    (``tiny``: a toy-sized variant for tests, left out of ``list_variants(include_tiny=False)``)."""

    def deco(fn: Callable[[], ModelSpec]) -> Callable[[], ModelSpec]:
        _register(Entry(name, fn, tiny=tiny))
        return fn

    return deco


def register_ablation(name: str, base: str, description: str, *,
                      paper_params_m: dict[str, float] | None = None,
                      paper_gflops: float | None = None, **switches: Any) -> None:
    """Register ``name`` as ``base`` with ``switches`` applied (see :func:`apply_overrides`).

    ``paper_params_m`` / ``paper_gflops`` are the paper's figures for this row
    (not switches): they replace the base's, since the base's no longer apply.
    """

    def preset() -> ModelSpec:
        spec = apply_overrides(get_spec(base), switches, context=f"ablation {name!r}")
        return spec.model_copy(update={"description": description,
                                       "paper_params_m": dict(paper_params_m or {}),
                                       "paper_gflops": paper_gflops})

    preset.__doc__ = description
    _register(Entry(name, preset, base=base, switches=dict(switches)))


def list_variants(pattern: str = "*", *, include_tiny: bool = True) -> list[str]:
    """Registered names matching a shell-style wildcard, in registration order."""
    return [n for n, e in _REGISTRY.items()
            if fnmatch.fnmatchcase(n, pattern) and (include_tiny or not e.tiny)]


def _entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise UnknownVariantError(
            f"unknown variant {name!r}; allowed: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get_spec(name: str, overrides: Mapping[str, Any] | None = None) -> ModelSpec:
    """The spec variant ``name`` with ``overrides`` resolves to: the one place a
    (variant, overrides) pair becomes a :class:`ModelSpec`, for a grid's cells and for
    the config a checkpoint stores alike."""
    spec = _entry(name).preset()
    if overrides:
        spec = apply_overrides(spec, overrides, context=f"variant {name!r}")
    return spec


def variant_base(name: str) -> str | None:
    """The base preset an ablation derives from (None for a base preset)."""
    return _entry(name).base


def variant_switches(name: str) -> dict[str, Any]:
    """The switches an ablation sets over its base ({} for a base preset)."""
    return dict(_entry(name).switches)


def _sections(spec: ModelSpec) -> dict[str, dict[str, Any]]:
    return {
        "encoder": spec.encoder.model_dump(),
        "heads": spec.heads.model_dump(),
        "": {k: v for k, v in spec.model_dump().items() if k not in ("encoder", "heads")},
    }


def apply_overrides(spec: ModelSpec, overrides: Mapping[str, Any], context: str = "") -> ModelSpec:
    """Return ``spec`` with overrides applied.

    Keys are either dotted paths (``encoder.norm``, ``heads.vocab_size``,
    ``optimizer``) or bare switch names (``norm``), which are looked up in the
    encoder, then the heads, then the top level. Passing ``encoder=<dict>``
    replaces encoder fields given in the dict.
    """
    data = spec.model_dump()
    sections = _sections(spec)
    where = f" ({context})" if context else ""
    for key, value in overrides.items():
        if key in ("encoder", "heads") and isinstance(value, Mapping):
            for k, v in value.items():
                if k not in sections[key]:
                    raise UnknownSwitchError(
                        f"unknown switch {key}.{k}{where}; allowed: {', '.join(sorted(sections[key]))}")
                data[key][k] = v
            continue
        if "." in key:
            section, field = key.split(".", 1)
            if section not in ("encoder", "heads") or field not in sections[section]:
                raise UnknownSwitchError(f"unknown switch {key!r}{where}; allowed: {', '.join(allowed_switches(spec))}")
            data[section][field] = value
            continue
        for section in ("encoder", "heads", ""):
            if key in sections[section]:
                if section:
                    data[section][key] = value
                else:
                    data[key] = value
                break
        else:
            raise UnknownSwitchError(
                f"unknown switch {key!r}{where}; allowed: {', '.join(allowed_switches(spec))}")
    if "kind" in data["encoder"] and data["encoder"]["kind"] != spec.encoder.kind:
        raise InvalidSwitchValueError(f"encoder.kind cannot be changed by an override{where}")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as err:
        msgs = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"] if p not in ("zipformer", "conformer"))
            msgs.append(f"{loc}: {e['msg']}")
        raise InvalidSwitchValueError(f"invalid override{where}: " + "; ".join(msgs)) from None


def allowed_switches(spec: ModelSpec) -> list[str]:
    out = []
    for section, fields in _sections(spec).items():
        out += [f"{section}.{k}" if section else k for k in fields if k != "kind"]
    return out


def describe_variant(name: str) -> str:
    """A human-readable description: base, switches and the resolved spec."""
    spec = get_spec(name)
    lines = [f"{name}: {spec.description or spec.encoder.kind}"]
    base = variant_base(name)
    if base:
        lines.append(f"  derived from {base} with " +
                     ", ".join(f"{k}={v!r}" for k, v in variant_switches(name).items()))
    lines.append(f"  optimizer: {spec.optimizer}")
    for k, v in spec.encoder.model_dump().items():
        lines.append(f"  encoder.{k} = {v!r}")
    for k, v in spec.heads.model_dump().items():
        lines.append(f"  heads.{k} = {v!r}")
    if spec.paper_params_m:
        lines.append(f"  paper params (M): {spec.paper_params_m}")
    if spec.paper_gflops is not None:
        lines.append(f"  paper encoder GFLOPs: {spec.paper_gflops}")
    return "\n".join(lines)


def resolve_objective(objective: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A named objective (transducer, ctc, ctc_aed) or an explicit head tuple."""
    if isinstance(objective, str):
        if objective not in OBJECTIVE_HEADS:
            raise VariantError(
                f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVE_HEADS)} "
                "or a list of heads from transducer, ctc, attention")
        return OBJECTIVE_HEADS[objective]
    heads = tuple(objective)
    bad = [h for h in heads if h not in ("transducer", "ctc", "attention")]
    if bad or not heads:
        raise VariantError(f"unknown heads {bad}; allowed: transducer, ctc, attention")
    return heads


def model_from_spec(spec: ModelSpec, objective: str | tuple[str, ...] | list[str] = "transducer"):
    """The :class:`~variants.model.AsrModel` of a resolved spec with the heads of ``objective``."""
    from .model import AsrModel  # torch and every component: not needed to list or resolve specs

    return AsrModel(spec, resolve_objective(objective))


def build_model(name: str, objective: str | tuple[str, ...] | list[str] = "transducer", **overrides: Any):
    """Shorthand for scripts and tests: ``model_from_spec(get_spec(name, overrides), objective)``."""
    return model_from_spec(get_spec(name, overrides), objective)
