"""Verdicts on a grid's rows: each row's WER with a confidence interval, its difference from
the baseline row with a confidence interval, the probability of improvement, and a verdict.

Rows are the grid's base and ablation rows (with their axis values); cells that differ only
by seed form one row. The per-utterance counts the decodes wrote into the store's
``utterances`` table are resampled by :mod:`harness.stats` (speaker blocks, and seeds when a
row has several); a decode without them (a store written before that table) keeps its point
estimate and says :data:`RE_DECODE`.

The baseline is the grid's ``baseline:`` row, else its base row, else (``include_base:
false``) its first ablation. Where a row is the same ablation of the baseline as one the paper
reports (Table 5 and 6 switches of Zipformer-M, found by comparing model specs; Table 2's
Conformer vs Zipformer of the baseline's scale), the verdict is ``holds`` / ``reversed`` /
``not resolved`` against the paper's sign; elsewhere ``better`` / ``worse`` / ``not resolved``.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from harness.config import Cell
from harness.config.cell_id import SPEC_LABELS
from variants import get_spec
from variants.spec import ModelSpec

from .data import configured_keys, norm_set, paper_values, prefer_decode

#: what a decode without per-utterance counts says instead of an interval
RE_DECODE = "re-decode with `harness decode` for intervals"
#: paper sections whose rows are switches of their Zipformer-M row
ABLATION_SECTIONS = {"ablations": "Table 5", "activation_constraints": "Table 6"}


class NoResults(ValueError):
    """The grid has no decoded cell in the store (never run, or not decoded yet)."""


@dataclass
class Verdict:
    """One (row, test set, method) of ``harness compare``. WERs and differences in percent
    (points); ``delta`` = row - baseline (negative: the row is better)."""

    row: str
    test_set: str
    method: str
    unit: str
    baseline: str
    n_seeds: int
    seeds: list[Optional[int]]
    wer: float
    wer_ci: Optional[list[float]] = None
    wer_std: Optional[float] = None
    n_utts: Optional[int] = None
    delta: Optional[float] = None
    delta_ci: Optional[list[float]] = None
    p_improvement: Optional[float] = None
    mapsswe_p: Optional[float] = None
    n_pairs: Optional[int] = None
    #: holds / reversed / not resolved / better / worse; 'baseline' for the baseline row;
    #: None where there is no interval (see ``note``)
    verdict: Optional[str] = None
    #: the smallest difference this budget resolves: the half-width of ``delta_ci``
    resolvable: Optional[float] = None
    #: the paper's same comparison ("Table 5: LayerNorm") and its difference on this test set
    paper: Optional[str] = None
    paper_delta: Optional[float] = None
    #: standard deviation over paired seeds of the per-seed difference (None under 2 seeds)
    delta_seed_sd: Optional[float] = None
    #: the difference's CI half-width from the utterances of one seed pair alone
    within_half_width: Optional[float] = None
    note: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)

    def wer_text(self) -> str:
        if self.wer_ci is None:
            return f"{self.wer:.2f}"
        return f"{self.wer:.2f} [{self.wer_ci[0]:.2f}, {self.wer_ci[1]:.2f}]"

    def delta_text(self) -> str:
        if self.delta is None:
            return "—"
        if self.delta_ci is None:
            return f"{self.delta:+.2f}"
        return f"{self.delta:+.2f} [{self.delta_ci[0]:+.2f}, {self.delta_ci[1]:+.2f}]"

    def verdict_text(self) -> str:
        if self.verdict is None:
            return self.note or "—"
        if self.resolvable is None:
            return self.verdict
        return f"{self.verdict} (±{self.resolvable:.2f})"


# ---- rows ----

@dataclass
class GridRow:
    """Cells of one row (one per seed), in the grid's order."""

    name: str
    label: str                       # the base/ablation row's name
    axes: tuple[tuple[str, str], ...]
    cells: list[Cell] = field(default_factory=list)


def row_name(cell: Cell) -> str:
    """The cell's name less its seed part."""
    parts = cell.name.split("/")
    if "seed" in cell.labels and parts and parts[-1] == f"seed{cell.labels['seed']}":
        parts = parts[:-1]
    return "/".join(parts) or cell.labels.get("row", cell.name)


def grid_rows(cells: Iterable[Cell]) -> list[GridRow]:
    """The grid's rows in order: cells that differ only by seed are one row."""
    rows: dict[str, GridRow] = {}
    for c in cells:
        name = row_name(c)
        axes = tuple((k, v) for k, v in c.labels.items() if k not in ("row", "seed"))
        rows.setdefault(name, GridRow(name, c.labels.get("row", name), axes)).cells.append(c)
    return list(rows.values())


def baseline_label(grid: Any, requested: Optional[str] = None) -> str:
    """The baseline row's name: ``requested``, the grid's ``baseline:``, the base row, or the
    first ablation (``include_base: false``). A name that is no row is a ValueError."""
    spec = grid.spec
    labels = (["base"] if spec.include_base else []) + [r.name for r in spec.ablations]
    name = requested or spec.baseline or labels[0]
    if name not in labels:
        raise ValueError(f"--baseline {name!r}: not a row of grid {grid.name}; allowed: {', '.join(labels)}")
    return name


# ---- the paper's comparisons ----

def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _spec_fields(spec: ModelSpec, optimizer: Optional[str] = None) -> dict[str, Any]:
    """A model spec's structure as flat fields, with the optimizer the cell trains with."""
    fields = _flat(spec.model_dump(mode="json", exclude=SPEC_LABELS))
    fields["optimizer"] = optimizer or spec.optimizer
    return fields


def _changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    return {k: b.get(k) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _scale(variant: str) -> Optional[str]:
    """s, m or l for a variant derived from a paper-scale preset (``zipformer-s`` ...)."""
    from variants.registry import variant_base

    name: Optional[str] = variant
    while name is not None:
        m = re.fullmatch(r"(?:zipformer|conformer)-([sml])", name)
        if m:
            return m.group(1)
        try:
            name = variant_base(name)
        except Exception:
            return None
    return None


@dataclass(frozen=True)
class PaperClaim:
    """The paper's difference (row - baseline, points) for the same comparison, per test set."""

    label: str
    deltas: dict[str, float]         # normalised paper test set -> difference
    #: the paper_values.yaml section and the paper's two rows (row, reference) it compares
    section: str = ""
    rows: tuple[str, str] = ("", "")

    def delta_for(self, test_set: str) -> tuple[float, str]:
        """The difference on ``test_set`` if the paper reports it, else the mean of the paper's
        test sets (the sign of the claim); and which it is."""
        ts = norm_set(test_set)
        if ts in self.deltas:
            return self.deltas[ts], ts
        return float(np.mean(list(self.deltas.values()))), "mean of " + ", ".join(self.deltas)


def _section_deltas(section: Mapping[str, Any], row: Mapping[str, Any],
                    base: Mapping[str, Any], sign: float = 1.0) -> dict[str, float]:
    return {norm_set(ts): sign * (float(row[ts]) - float(base[ts])) for ts in section["test_sets"]
            if row.get(ts) is not None and base.get(ts) is not None}


def paper_claim(row: Cell, base: Cell) -> Optional[PaperClaim]:
    """The paper's comparison that ``row`` vs ``base`` repeats, if any: both cells with one
    objective, and either a Conformer vs a Zipformer of one paper scale (Table 2's transducer
    rows), or a Zipformer whose model spec (optimizer included) differs from the baseline's
    exactly as a Table 5/6 variant differs from Zipformer-M."""
    if row.objective != base.objective:
        return None
    a, b = (_spec_fields(c.spec, c.config.optimizer.name) for c in (base, row))
    kinds = (a.get("encoder.kind"), b.get("encoder.kind"))
    values = paper_values()
    if kinds in (("zipformer", "conformer"), ("conformer", "zipformer")):
        scale = _scale(base.config.variant)
        if scale is None or scale != _scale(row.config.variant):
            return None
        section = values["librispeech"]
        rows = {r.get("variant"): r for r in section["rows"] if r.get("objective") == "transducer"}
        z, c = rows.get(f"zipformer-{scale}"), rows.get(f"conformer-{scale}")
        if z is None or c is None:
            return None
        sign = 1.0 if kinds[0] == "zipformer" else -1.0   # conformer - zipformer, as row - base
        label = f"Table 2: Conformer-{scale.upper()} vs Zipformer-{scale.upper()}"
        pair = (c["model"], z["model"]) if sign > 0 else (z["model"], c["model"])
        return PaperClaim(label, _section_deltas(section, c, z, sign), "librispeech", pair)
    if kinds != ("zipformer", "zipformer"):
        return None
    change = _changes(a, b)
    if not change:
        return None
    for key, table in ABLATION_SECTIONS.items():
        section = values[key]
        base_row = next((r for r in section["rows"] if r.get("variant") == "zipformer-m"), None)
        if base_row is None:
            continue
        ref = _spec_fields(get_spec("zipformer-m"))
        for r in section["rows"]:
            v = r.get("variant")
            if not v or v == "zipformer-m":
                continue
            try:
                theirs = _changes(ref, _spec_fields(get_spec(v)))
            except Exception:
                continue
            if theirs == change:
                return PaperClaim(f"{table}: {r['model']}", _section_deltas(section, r, base_row), key,
                                  (r["model"], base_row["model"]))
    return None


def grid_claims(grid: Any, cells: list[Cell], baseline: Optional[str] = None
                ) -> list[tuple[GridRow, GridRow, PaperClaim]]:
    """(row, its baseline row, the paper's comparison it repeats) for each row of ``cells``
    (a grid's cells, e.g. only those in the store) that repeats one; no store is read."""
    name = baseline_label(grid, baseline)
    rows = grid_rows(cells)
    out = []
    for row in rows:
        base = next((b for b in rows if b.label == name and b.axes == row.axes), None)
        if base is None or base is row:
            continue
        claim = paper_claim(row.cells[0], base.cells[0])
        if claim is not None:
            out.append((row, base, claim))
    return out


# ---- what the store holds ----

@dataclass
class Decode:
    """One cell's final decode of a test set by a method, with its utterances if stored."""

    cell: Cell
    wer_row: dict[str, Any]
    utts: Optional[dict[str, Any]]   # harness.store.results_store.decode_utterances


def final_decodes(cell: Cell, wer_rows: Sequence[Mapping[str, Any]],
                  utt_rows: Mapping[tuple, Mapping[str, Any]]) -> dict[tuple[str, str], Decode]:
    """(test set, method) -> the cell's decode at its last decoded epoch of that test set (of
    several decodes, the one with the cell's own decode settings, else the newest)."""
    from harness.store.results_store import PRIMARY_KEYS, decode_utterances

    by_set: dict[str, list[Mapping[str, Any]]] = {}
    for r in wer_rows:
        if r.get("wer") is not None:
            by_set.setdefault(str(r["test_set"]), []).append(r)
    keys = configured_keys(cell.config.model_dump(mode="json"))
    out: dict[tuple[str, str], Decode] = {}
    for ts, rs in by_set.items():
        last = max(int(r["epoch"]) for r in rs)
        per_method: dict[str, list[Mapping[str, Any]]] = {}
        for r in rs:
            if int(r["epoch"]) == last:
                per_method.setdefault(str(r["method"]), []).append(r)
        for m, v in per_method.items():
            chosen = dict(prefer_decode(list(v), keys))
            u = utt_rows.get(tuple(chosen[k] for k in PRIMARY_KEYS["wers"]))
            out[(ts, m)] = Decode(cell, chosen, decode_utterances(u) if u is not None else None)
    return out


def _seed(cell: Cell) -> Optional[int]:
    return int(cell.config.seed) if cell.config.seed is not None else None


def _matrix(decodes: list[Decode], order: Optional[list[str]] = None
            ) -> tuple[Optional[np.ndarray], Optional[dict[str, Any]], Optional[str]]:
    """Errors (n_seeds, n_utts) in one utterance order (``order``, else the first decode's),
    with the first decode's ids, ref_len and speakers; or why there is none."""
    if any(d.utts is None for d in decodes):
        return None, None, RE_DECODE
    first = decodes[0].utts
    ids = list(order) if order is not None else list(first["ids"])
    want = set(ids)
    rows, ref = [], None
    for d in decodes:
        pos = {u: i for i, u in enumerate(d.utts["ids"])}
        if set(pos) != want or len(pos) != len(d.utts["ids"]):
            return None, None, "decoded on different utterances (e.g. other test_sets or corpus); no interval"
        idx = np.array([pos[u] for u in ids], dtype=np.int64)
        rl = d.utts["ref_len"][idx]
        if ref is None:
            ref = rl
            speakers = [d.utts["speakers"][i] for i in idx]
        elif not np.array_equal(ref, rl):
            return None, None, "reference lengths differ between decodes of one test set; no interval"
        rows.append(d.utts["errors"][idx])
    return np.stack(rows), {"ids": ids, "ref_len": ref, "speakers": speakers}, None


def _groups(speakers: Sequence[str]) -> Optional[np.ndarray]:
    return np.asarray(speakers) if any(speakers) else None


def compare_rows(rows: list[GridRow], baseline: str, snapshot: Any, *,
                 test_sets: Optional[Sequence[str]] = None, methods: Optional[Sequence[str]] = None,
                 resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> list[Verdict]:
    """A :class:`Verdict` per (row, test set, method) that the store has decodes for."""
    from harness import stats
    from harness.store.results_store import PRIMARY_KEYS

    wers_by_cell: dict[str, list[dict[str, Any]]] = {}
    for r in snapshot.tables["wers"]:
        wers_by_cell.setdefault(r["cell_id"], []).append(r)
    utt_rows = {tuple(r[k] for k in PRIMARY_KEYS["utterances"]): r
                for r in snapshot.tables.get("utterances", [])}
    want_sets = {norm_set(t) for t in test_sets} if test_sets else None
    finals: dict[str, dict[tuple[str, str], list[Decode]]] = {}
    for row in rows:
        per: dict[tuple[str, str], list[Decode]] = {}
        for c in row.cells:
            for key, d in final_decodes(c, wers_by_cell.get(c.cell_id, []), utt_rows).items():
                if (want_sets is None or norm_set(key[0]) in want_sets) and (not methods or key[1] in methods):
                    per.setdefault(key, []).append(d)
        finals[row.name] = per
    base_of = {}
    for row in rows:
        match = [b for b in rows if b.label == baseline and b.axes == row.axes]
        base_of[row.name] = match[0] if match else None

    out: list[Verdict] = []
    for row in rows:
        base = base_of[row.name]
        claim = (paper_claim(row.cells[0], base.cells[0])
                 if base is not None and base is not row else None)
        for (ts, m), decodes in sorted(finals[row.name].items(), key=lambda kv: kv[0]):
            seeds = [_seed(d.cell) for d in decodes]
            wers = np.array([float(d.wer_row["wer"]) for d in decodes])
            v = Verdict(row=row.name, test_set=ts, method=m, unit=str(decodes[0].wer_row.get("unit") or "word"),
                        baseline=base.name if base is not None else "", n_seeds=len(decodes), seeds=seeds,
                        wer=float(wers.mean()), wer_std=float(wers.std(ddof=1)) if len(wers) > 1 else None)
            errors, info, why = _matrix(decodes)
            if errors is not None:
                s = stats.summarize(errors, info["ref_len"], _groups(info["speakers"]),
                                    resamples=resamples, seed=seed, level=level)
                v.wer, v.wer_ci, v.wer_std, v.n_utts = (float(s.mean), [float(s.ci.lo), float(s.ci.hi)],
                                                        float(s.std) if s.n_seeds > 1 else None, int(s.n_utts))
            else:
                v.note = why
            if base is row:
                v.verdict = "baseline"
                out.append(v)
                continue
            if claim is not None:
                v.paper_delta, where = claim.delta_for(ts)
                v.paper = f"{claim.label} ({where})"
            bdecodes = finals[base.name].get((ts, m)) if base is not None else None
            if not bdecodes:
                v.note = v.note or (f"no baseline row {baseline!r} decode of {ts} by {m}" if base is not None
                                    else f"no baseline row {baseline!r} with this row's axis values")
                out.append(v)
                continue
            bwers = {_seed(d.cell): float(d.wer_row["wer"]) for d in bdecodes}
            v.delta = float(wers.mean() - np.mean(list(bwers.values())))
            paired = [float(w) - bwers[sd] for sd, w in zip(seeds, wers) if sd in bwers]
            v.delta_seed_sd = float(np.std(paired, ddof=1)) if len(paired) > 1 else None
            if errors is not None:
                berrors, _, bwhy = _matrix(bdecodes, order=info["ids"])
                if berrors is None:
                    v.note = f"baseline {bwhy}" if bwhy == RE_DECODE else bwhy
                else:
                    bseeds = [_seed(d.cell) for d in bdecodes]
                    c = stats.compare(errors, berrors, info["ref_len"], _groups(info["speakers"]),
                                      seeds_row=seeds, seeds_base=bseeds,
                                      resamples=resamples, seed=seed, level=level)
                    v.delta, v.delta_ci = float(c.delta), [float(c.ci.lo), float(c.ci.hi)]
                    v.p_improvement = float(c.p_improvement)
                    v.mapsswe_p = None if c.mapsswe_p is None else float(c.mapsswe_p)
                    v.n_pairs = int(c.n_pairs)
                    v.verdict = stats.verdict(c, v.paper_delta)
                    v.resolvable = float(c.ci.half_width)
                    if c.within_ci is not None:
                        v.within_half_width = float(c.within_ci.half_width)
                    if c.n_pairs > 1:
                        v.delta_seed_sd = float(c.seed_sd)
            out.append(v)
    return out


def grid_verdicts(grid: Any, cells: list[Cell], snapshot: Any, *, baseline: Optional[str] = None,
                  test_sets: Optional[Sequence[str]] = None, methods: Optional[Sequence[str]] = None,
                  resamples: int = 10_000, seed: int = 0) -> list[Verdict]:
    """Every row of ``grid`` against its baseline, from ``snapshot`` (a
    :class:`harness.report.data.StoreSnapshot`). :class:`NoResults` when no cell of the grid
    has a decode there; ValueError for an unknown ``baseline``."""
    name = baseline_label(grid, baseline)
    ids = {c.cell_id for c in cells}
    if not any(r["cell_id"] in ids and r.get("wer") is not None for r in snapshot.tables["wers"]):
        where = snapshot.path if snapshot.exists else f"{snapshot.path} (no such store)"
        raise NoResults(f"{grid.path}: grid {grid.name} has no decoded cell in {where}; "
                        f"run `harness run {grid.path}` first")
    return compare_rows(grid_rows(cells), name, snapshot, test_sets=test_sets, methods=methods,
                        resamples=resamples, seed=seed)


def read_grid_verdicts(grid: Any, cells: list[Cell], store: Optional[str | Path] = None, **kw: Any
                       ) -> list[Verdict]:
    """Read the grid's store (or ``store``) and compare its rows (:func:`grid_verdicts`); a
    missing store is :class:`NoResults`, a broken one ``StoreError``."""
    from .data import StoreSnapshot

    snap = StoreSnapshot.read_many([Path(store) if store else grid.store_path],
                                   {c.cell_id for c in cells})
    return grid_verdicts(grid, cells, snap, **kw)


def seeds_needed(v: Verdict, level: float = 0.95) -> Optional[int]:
    """Seeds per row that would resolve ``v``'s observed difference (None if it needs more
    than 100, or there is no interval or seed spread to go on)."""
    from harness import stats

    if v.delta is None or v.within_half_width is None:
        return None
    return stats.seeds_to_resolve(v.delta, v.delta_seed_sd or 0.0, v.within_half_width, v.n_seeds,
                                  level=level)



def verdicts_table(grid_name: str, verdicts: list[Verdict],
                   labels: Optional[Mapping[str, str]] = None) -> Any:
    """The report's table of :func:`grid_verdicts`: our verdict beside the paper's difference.
    ``labels``: row name -> the name shown (the row with its switches from the grid's base)."""
    from harness.tables import Table

    labels = labels or {}
    base = next((v.baseline for v in verdicts if v.baseline), "")
    t = Table(title=f"Verdicts, grid {grid_name}: each row vs the baseline row {base} (95% CIs)",
              columns=["row", "seeds", "test set", "method", "WER/CER % [95% CI]", "std over seeds",
                       f"diff vs {base} [95% CI]", "P(better)", "MAPSSWE p", "verdict",
                       "resolvable (±)", "paper diff", "paper comparison"],
              digits={"std over seeds": 2, "P(better)": 2, "MAPSSWE p": 3, "resolvable (±)": 2})
    for v in verdicts:
        t.add([labels.get(v.row, v.row), v.n_seeds, v.test_set, v.method, v.wer_text(), v.wer_std, v.delta_text(),
               v.p_improvement, v.mapsswe_p, v.verdict or v.note or "—", v.resolvable,
               "—" if v.paper_delta is None else f"{v.paper_delta:+.2f}", v.paper or "—"])
    t.notes = [
        "WER/CER: the mean over the row's seeds, with a 95% bootstrap confidence interval (speaker "
        "blocks of utterances resampled, and seeds when the row has several); diff: row - baseline in "
        "points, paired on the same utterances and equal seeds (negative: the row is better); "
        "P(better): the share of resamples in which the row's error rate is lower.",
        "verdict: where the paper reports the same comparison (its difference in 'paper diff'), "
        "holds / reversed when the CI excludes 0 with the paper's sign / the opposite sign; elsewhere "
        "better / worse; not resolved when the CI spans 0. resolvable: the CI's half-width, the "
        "smallest difference this budget could resolve.",
    ]
    if any(v.note == RE_DECODE or (v.note or "").endswith(RE_DECODE) for v in verdicts):
        t.notes.append(f"Decodes recorded before per-utterance results were stored have point "
                       f"estimates only: {RE_DECODE}.")
    return t
