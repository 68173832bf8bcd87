"""Check every cell of a grid completely before anything is trained.

The schema (``harness.config.schema``) checks each key's type; this module
checks what only the code that uses a key knows, against that code itself:

- ``decode.methods``: known to ``harness.decoding`` and applicable to the
  cell's heads (a method for the other rows of an objective axis is fine; a
  cell left with none, or a method that no cell can use, is an error);
- ``data``: ``options`` against the corpus's options model
  (``harness.config.corpora``), the synthetic tier list and which corpus takes
  which option; ``src_dir`` exists and passes the recipe's source checks (a
  LibriSpeech copy's parts, one's own manifests or Kaldi directories: split
  names, audio files) when the corpus still has to be prepared; a prepared ``dir`` was
  prepared with the cell's options (``tier: tiny`` -> ``easy`` with the same
  ``dir`` is an error naming both) and passes the cell's checks
  (``oov_chars``, ``allow_dropped``); ``test_sets`` name splits it has;
- ``optimizer``: ``options`` and ``schedule_options`` against the optimizer's
  and the schedule's constructors (built once over a dummy parameter);
- ``loss``: :class:`harness.losses.LossConfig` and its head combination.

:func:`check_grid` expands and checks a grid and raises one
:class:`~harness.grid.errors.GridErrors` with every problem, one line each.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config import Cell, DataSection
from variants.registry import resolve_objective

from .cells import COMMAND_LINE, blame, expand_all
from .errors import GridError, GridErrors, from_validation_error
from .loader import Grid

Problem = tuple[str, str]  # (key path inside the cell config, message)


def check_grid(grid: Grid, disk: bool = True, overrides: dict[str, Any] | None = None) -> list[Cell]:
    """The grid's cells, every one checked; every problem of the grid at once as
    :class:`GridErrors` (one line each: file, key path, message and what is allowed).
    ``disk=False`` leaves out what depends on this machine's files (source folders,
    prepared corpora), e.g. to plan a LibriSpeech grid where LibriSpeech is not. ``overrides``:
    the command line's ``--set`` changes, applied to every cell after its row."""
    cells, errors = expand_all(grid, overrides)
    errors += validate_cells(grid, cells, disk, overrides)
    if errors:
        raise GridErrors(errors)
    return cells


def validate_cells(grid: Grid, cells: list[Cell], disk: bool = True,
                   overrides: dict[str, Any] | None = None) -> list[GridError]:
    """The problems of ``cells`` (already resolved against the schema)."""
    file = str(grid.path)
    errors: list[GridError] = []
    data_seen: dict[str, list[Problem]] = {}
    for cell in cells:
        changes = cell_changes(grid, cell) + ([(COMMAND_LINE, overrides)] if overrides else [])

        def where(key: str) -> str:
            return blame(tuple(key.split(".")), changes) + key

        problems: list[Problem] = []
        problems += decode_problems(cell)
        problems += optimizer_problems(cell)
        d = cell.config.data
        dkey = json.dumps(d.model_dump(mode="json"), sort_keys=True)
        if dkey not in data_seen:
            data_seen[dkey] = data_problems(d, disk)
        problems += data_seen[dkey]
        errors += [GridError(file, where(key), msg) for key, msg in problems]
        errors += loss_errors(cell, file, changes)
    errors += unused_methods(grid, cells)
    return errors


def cell_changes(grid: Grid, cell: Cell) -> list[tuple[str, dict[str, Any]]]:
    """(origin, keys set) of the ablation row and axis values that made ``cell``."""
    out: list[tuple[str, dict[str, Any]]] = []
    row = cell.labels.get("row", "base")
    out += [(f"ablations[{i}]", r.set) for i, r in enumerate(grid.spec.ablations) if r.name == row]
    for axis, values in grid.spec.axes.items():
        for i, v in enumerate(values):
            if isinstance(v, dict):
                label, sets = v.get("name"), v.get("set") or {}
            else:
                label, sets = (str(v) if not isinstance(v, list) else "+".join(map(str, v))), {axis: v}
            if label == cell.labels.get(axis):
                out.append((f"axes.{axis}[{i}]", sets))
                break
    return out


# --------------------------------------------------------------------------- this machine, averaging

def device_errors(grid: Grid, cells: list[Cell]) -> list[GridError]:
    """``train.device: cuda`` on a machine where torch sees no CUDA GPU (checked by ``run``
    before any training; ``plan`` shows it as a note, since a grid may be planned elsewhere)."""
    wanting = [c for c in cells if c.config.train.device == "cuda"]
    if not wanting:
        return []
    import torch

    if torch.cuda.is_available():
        return []
    by_key: dict[str, list[str]] = {}
    for c in wanting:
        by_key.setdefault(blame(("train", "device"), cell_changes(grid, c)) + "train.device", []).append(c.name)
    return [GridError(str(grid.path), key, f"'cuda', but torch sees no CUDA GPU on this machine (cell(s) "
                      f"{', '.join(names)}); allowed here: auto, cpu (or run the grid on a GPU machine)")
            for key, names in by_key.items()]


def averaging_notes(cells: list[Cell]) -> list[str]:
    """Cells whose running average (``decode.use_averaged_model``) may hold nothing of the
    epochs they decode, with what to change: a ``train.max_steps`` budget below
    ``average_period`` (never updated) or not a multiple of it (the last epoch may end
    inside the last period). Such a cell still trains and decodes: the decode falls back to
    the plain checkpoint and says so (:func:`harness.evaluate.model_average.average_epochs`)."""
    found: dict[str, list[str]] = {}
    for c in cells:
        t = c.config.train
        if not c.config.decode.use_averaged_model or not t.max_steps or t.max_steps % t.average_period == 0:
            continue
        m, p = t.max_steps, t.average_period
        divisors = [d for d in range(min(p, m), 0, -1) if m % d == 0][:1]
        change = (f"set train.average_period to a divisor of max_steps (e.g. {divisors[0]}), "
                  f"train.max_steps to a multiple of {p} (e.g. {(m // p + 1) * p}), or "
                  "decode.use_averaged_model: false")
        if m < p:
            why = (f"train.max_steps {m} is below train.average_period {p}: the running average is never "
                   f"updated, so the cell decodes its plain checkpoint")
        else:
            why = (f"train.max_steps {m} is not a multiple of train.average_period {p}: if the last epoch "
                   f"ends after step {m // p * p}, the running average holds nothing of it and the cell "
                   "decodes its plain checkpoint")
        found.setdefault(f"{why}; {change}", []).append(c.cell_id)
    return [f"{msg} (cell(s) {', '.join(ids)})" for msg, ids in found.items()]


# --------------------------------------------------------------------------- decoding

def _heads(cell: Cell) -> tuple[str, ...]:
    o = cell.config.objective
    return resolve_objective(o if isinstance(o, str) else tuple(o))


def decode_problems(cell: Cell) -> list[Problem]:
    from harness.decoding.decode import METHOD_HEADS

    heads = _heads(cell)
    asked = cell.config.decode.methods
    out: list[Problem] = []
    for m in asked or []:
        if m not in METHOD_HEADS:
            out.append(("decode.methods", f"unknown decoding method {m!r}; allowed: "
                                          f"{', '.join(METHOD_HEADS)}"))
    methods = cell.config.decode_methods
    fits = [m for m, need in METHOD_HEADS.items() if set(need) <= set(heads)]
    if not usable_methods(cell) and not out and fits:  # no fits: the objective itself is the error
        out.append(("decode.methods", f"cell {cell.name!r} (objective {cell.objective}) has no decoding "
                                      f"method for its heads: {', '.join(methods)} "
                                      f"{'needs' if len(methods) == 1 else 'need'} "
                                      f"{' or '.join('+'.join(METHOD_HEADS[m]) for m in methods)}; "
                                      f"allowed for {cell.objective}: {', '.join(fits)}"))
    return out


def usable_methods(cell: Cell) -> list[str]:
    """The cell's decoding methods that apply to its heads."""
    from harness.decoding.decode import METHOD_HEADS

    heads = set(_heads(cell))
    return [m for m in cell.config.decode_methods if m in METHOD_HEADS and set(METHOD_HEADS[m]) <= heads]


def unused_methods(grid: Grid, cells: list[Cell]) -> list[GridError]:
    """A listed method that no cell of the grid can use would be skipped silently."""
    from harness.decoding.decode import METHOD_HEADS

    listed: dict[str, list[Cell]] = {}
    for c in cells:
        for m in c.config.decode.methods or []:
            listed.setdefault(m, []).append(c)
    out = []
    for m, users in listed.items():
        if m not in METHOD_HEADS or any(set(METHOD_HEADS[m]) <= set(_heads(c)) for c in users):
            continue
        if any(not usable_methods(c) for c in users):
            continue  # reported as a cell with no method
        objectives = sorted({c.objective for c in users})
        out.append(GridError(str(grid.path), blame(("decode", "methods"), cell_changes(grid, users[0]))
                             + "decode.methods",
                             f"decoding method {m!r} needs the {'+'.join(METHOD_HEADS[m])} head(s) and "
                             f"applies to no cell of this grid (objectives: {', '.join(objectives)}); "
                             f"allowed: a method for those heads, or an objective with them"))
    return out


# --------------------------------------------------------------------------- data

def data_options_allowed(corpus: str) -> list[str]:
    """The options ``corpus`` takes (its own first)."""
    from harness.config.corpora import corpus_option_names

    return corpus_option_names(corpus)


def _quoted(names: list[str]) -> str:
    q = [repr(n) for n in names]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " or " + q[-1]


def data_problems(d: DataSection, disk: bool = True) -> list[Problem]:
    """The data section's problems: ``options`` against the corpus's options model, the tiers
    and which corpus takes which option; with ``disk``, the source folder and the prepared
    corpus in ``dir`` too."""
    from harness.config.corpora import CORPUS_OPTIONS, corpora_taking
    from harness.data.corpora import get_recipe
    from harness.data.errors import DataError
    from harness.data.prepare import corpus_identity
    from harness.data.synthetic.tiers import TIERS

    opts = dict(d.options)
    allowed = data_options_allowed(d.corpus)
    out: list[Problem] = []
    try:
        CORPUS_OPTIONS[d.corpus].model_validate(opts)
    except ValidationError as err:
        for e in err.errors():
            key = "data.options." + ".".join(map(str, e["loc"]))
            name = e["loc"][-1]
            if e["type"] == "extra_forbidden" and corpora_taking(str(name)):
                out.append((key, f"applies to corpus {_quoted(corpora_taking(str(name)))} only, this cell's "
                                 f"corpus is {d.corpus!r}; allowed here: {', '.join(allowed)}"))
            elif e["type"] == "extra_forbidden":
                out.append((key, f"unknown option {name!r} of corpus {d.corpus!r}; allowed: {', '.join(allowed)}"))
            else:
                out.append((key, f"{e['msg']} (got {e.get('input')!r})"))
    if "tier" in opts and opts["tier"] not in TIERS:
        out.append(("data.options.tier", f"unknown synthetic tier {opts['tier']!r}; allowed: "
                                         f"{', '.join(TIERS)}"))
    takes_src = get_recipe(d.corpus).takes_src
    if not out:
        try:  # the values (hours, voices, train_set ...) as prepare_corpus will see them
            corpus_identity(d.corpus, (d.src_dir or ".") if takes_src else d.src_dir, **opts)
        except (DataError, ValueError) as e:
            out.append(("data.src_dir" if "source directory" in str(e) else "data.options", str(e)))
    if disk:
        out += _source_problems(d, parts=not out)
    if disk and not out:
        out += _prepared_problems(d)
    return out


def _source_problems(d: DataSection, parts: bool) -> list[Problem]:
    """A corpus still to be prepared needs its source folder (with ``parts``: what its recipe
    checks before preparing, e.g. the LibriSpeech parts its train_set needs, one's own
    manifests or Kaldi directories and their audio files)."""
    from harness.data.corpora import get_recipe
    from harness.data.errors import DataError
    from harness.data.prepare import corpus_options, recorded_options

    recipe = get_recipe(d.corpus)
    if not recipe.takes_src or recorded_options(d.dir) is not None:
        return []
    if not (d.src_dir and Path(d.src_dir).is_dir()):
        what = f"no such directory {d.src_dir!r}" if d.src_dir else f"required for corpus {d.corpus!r}"
        return [("data.src_dir", f"{what}, and data.dir {d.dir!r} holds no prepared corpus; "
                                 f"allowed: the folder of {recipe.source_what}")]
    if parts:
        try:
            recipe.check_source(Path(d.src_dir).resolve(), corpus_options(d.corpus, d.options), deep=True)
        except (DataError, ValueError) as e:
            return [("data.src_dir", str(e))]
    return []


def _prepared_problems(d: DataSection) -> list[Problem]:
    """A prepared ``dir``: prepared with the cell's options, its recorded changes pass the
    cell's checks, and ``test_sets`` name its splits."""
    from harness.data.errors import DataError
    from harness.data.prepare import (Checks, PreparedCorpus, check_recorded_changes, prepared_mismatch,
                                      recorded_options)

    if recorded_options(d.dir) is None:
        return []
    diff = prepared_mismatch(d.dir, d.corpus, d.src_dir, d.options)
    if diff:
        was = ", ".join(f"{k}={a!r}" for k, (a, _) in diff.items())
        now = ", ".join(f"{k}={b!r}" for k, (_, b) in diff.items())
        return [("data.options" if "corpus" not in diff else "data.corpus",
                 f"data.dir {d.dir} was prepared with {was}, this cell asks for {now}; allowed: the "
                 f"recorded options, another data.dir, or delete {d.dir} to prepare it again")]
    out: list[Problem] = []
    try:
        check_recorded_changes(Path(d.dir), Checks(d.corpus, oov_chars=d.options.get("oov_chars", "report"),
                                                   allow_dropped=d.options.get("allow_dropped", False)))
    except DataError as e:
        out.append(("data.options", str(e)))
    if d.test_sets is not None and (Path(d.dir) / "prepared.json").is_file():
        splits = PreparedCorpus.load(d.dir).splits
        unknown = [t for t in d.test_sets if t not in splits]
        if unknown:
            out.append(("data.test_sets", f"unknown split(s) {', '.join(unknown)} of {d.dir}; allowed: "
                                          f"{', '.join(splits)}"))
    return out


# --------------------------------------------------------------------------- optimizer, loss

def optimizer_problems(cell: Cell) -> list[Problem]:
    """Build the cell's optimizer and schedule once over a dummy parameter (or over the
    model when ``lr_scales`` names its modules): their constructors check every option."""
    from torch import nn

    from variants import model_from_spec
    from variants.optim import build_optimizer, build_scheduler, default_scheduler_for

    o = cell.config.optimizer
    name = o.name or cell.spec.optimizer
    if "lr_scales" in o.options:
        target: Any = model_from_spec(cell.spec, _heads(cell))
    else:
        target = nn.Linear(2, 2)
    out: list[Problem] = []
    try:
        optimizer = build_optimizer(name, target, lr=o.lr, **o.options)
    except (ValueError, TypeError) as e:
        out.append(("optimizer.options", str(e)))
        optimizer = build_optimizer(name, nn.Linear(2, 2))  # to check the schedule's options too
    try:
        build_scheduler(o.schedule or default_scheduler_for(name), optimizer, **o.schedule_options)
    except (ValueError, TypeError) as e:
        out.append(("optimizer.schedule_options", str(e)))
    return out


def loss_errors(cell: Cell, file: str, changes: list[tuple[str, dict[str, Any]]]) -> list[GridError]:
    """``loss`` against :class:`harness.losses.LossConfig`, and its scales for the cell's heads."""
    from harness.losses import LossConfig

    try:
        cfg = LossConfig(**cell.config.loss)
    except ValidationError as err:
        return [from_validation_error(file, err, LossConfig,
                                      prefix=lambda loc: blame(("loss",) + loc, changes) + "loss")]
    try:
        cfg.head_scales(_heads(cell))
    except ValueError as e:
        return [GridError(file, blame(("objective",), changes) + "objective", str(e))]
    return []
