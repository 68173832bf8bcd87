"""What the report reads: the results store's tables and the paper's values.

Helpers here turn store rows into the few facts a table needs: a cell's
corpus, optimizer and overrides, and its final WER per test set with the
decoding method the paper uses for its objective.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

PAPER_VALUES = Path(__file__).with_name("paper_values.yaml")

#: decoding method preferred for each objective (the paper: beam search of 4 for
#: transducers; attention rescoring for CTC/AED); others follow alphabetically
METHOD_PREFERENCE: dict[str, tuple[str, ...]] = {
    "transducer": ("modified_beam_search", "greedy_search"),
    "ctc": ("ctc_greedy_search",),
    "ctc_aed": ("attention_rescoring", "ctc_greedy_search"),
}


@lru_cache(maxsize=1)
def paper_values() -> dict[str, Any]:
    with open(PAPER_VALUES) as f:
        return yaml.safe_load(f)


def norm_set(name: str) -> str:
    """Test-set names compared loosely: ``test_clean`` == ``test-clean``."""
    return str(name).strip().lower().replace("_", "-")


def parse_json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


@dataclass
class CellRun:
    """One grid cell as the report sees it."""

    cell_id: str
    name: str
    grid: str
    variant: str
    objective: str
    status: str
    error: str | None
    config: dict[str, Any]
    params: int | None
    gflops: float | None
    epoch: float | None
    #: optimizer steps trained
    step: int | None = None
    #: normalised test set -> (WER %, method, epoch) at the cell's last decoded epoch
    wers: dict[str, tuple[float, str, int]] = field(default_factory=dict)
    #: normalised test set -> 95 % CI of that WER (decodes with per-utterance results only)
    wer_cis: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: the settings in which the cell's config differs from its grid's base row
    #: (``overrides.norm=layer_norm``); set by :func:`assign_switches`
    switches: list[str] = field(default_factory=list)

    @property
    def row(self) -> str:
        """The cell's grid row: its name less its seed part (``layernorm/seed1`` -> ``layernorm``)."""
        parts = self.name.split("/")
        if len(parts) > 1 and re.fullmatch(r"seed-?\d+", parts[-1]):
            parts = parts[:-1]
        return "/".join(parts)

    def label(self, with_grid: bool = True) -> str:
        """The row's name with the switches that differ from the base (:func:`switches_text`)."""
        name = f"{self.grid}/{self.row}" if with_grid and self.grid else self.row
        sw = switches_text(self.switches)
        return f"{name} ({sw})" if sw else name

    @property
    def corpus(self) -> str | None:
        return (self.config.get("data") or {}).get("corpus")

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.config.get("overrides") or {})

    @property
    def optimizer(self) -> str:
        """The optimizer the cell trained with (the spec's default when the grid names none)."""
        opt = self.config.get("optimizer")
        name = opt.get("name") if isinstance(opt, dict) else opt
        if name:
            return str(name)
        try:
            from variants import get_spec

            return get_spec(self.variant).optimizer
        except Exception:  # an unregistered variant in an old store
            return "unknown"

    def describe(self) -> str:
        """Where the numbers come from, in a few words."""
        bits = [f"{self.grid}/{self.name}" if self.grid else self.name, self.corpus or "corpus ?"]
        if self.epoch is not None:
            bits.append(f"epoch {self.epoch:g}")
        if self.overrides:
            bits.append("overrides " + ", ".join(f"{k}={v}" for k, v in self.overrides.items()))
        methods = sorted({m for _, m, _ in self.wers.values()})
        if methods:
            bits.append("/".join(methods))
        return "; ".join(bits)

    def wer_text(self, test_set: str) -> float | str:
        """:meth:`wer_cell` with its 95 % CI where there is one ("12.34 [11.02, 13.80]")."""
        w = self.wer_cell(test_set)
        ci = self.wer_cis.get(norm_set(test_set))
        if ci is None or isinstance(w, str):
            return w
        return f"{w:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"

    def wer_cell(self, test_set: str) -> float | str:
        """The WER, or why there is none (failed, diverged, running, no WER)."""
        if self.status in ("failed", "diverged"):
            return self.status
        w = self.wers.get(norm_set(test_set))
        if w is not None:
            return w[0]
        return "no WER" if self.status == "done" else self.status


#: config keys that never tell rows apart (seeds are the rows' repetitions)
_NOT_SWITCHES = {"seed"}
#: how many switches a label shows before "+N more"
LABEL_SWITCHES = 3


def flat_config(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (``optimizer.name``); lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _value_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value_text(x) for x in v) + "]"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def config_switches(config: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """The settings in which ``config`` differs from ``base``, as ``key=value`` (the variant,
    objective and optimizer's name first, then model overrides, then the rest by key). Keys that ``config`` lacks (a
    section the row replaced) are not listed: the values it sets are."""
    a, b = flat_config(base), flat_config(config)
    out = [k for k in sorted(b) if k not in _NOT_SWITCHES and a.get(k, object()) != b[k]]
    order = {"variant": 0, "objective": 1, "optimizer.name": 2}
    out.sort(key=lambda k: (order.get(k, 3 if k.startswith("overrides.") else 4), k))
    return [f"{k}={_value_text(b[k])}" for k in out]


def switches_text(switches: list[str], limit: int = LABEL_SWITCHES) -> str:
    """The first ``limit`` switches, then "+N more"."""
    if len(switches) <= limit:
        return ", ".join(switches)
    return ", ".join(switches[:limit]) + f", +{len(switches) - limit} more"


def assign_switches(cells: list["CellRun"], base_rows: Mapping[str, str] | None = None) -> None:
    """Set each cell's :attr:`CellRun.switches` against its grid's base row: ``base_rows``
    (grid name -> row name, from the grid file), else the grid's row ``base``, else its first
    row in the store. A grid of one row has no switches."""
    by_grid: dict[str, list[CellRun]] = {}
    for c in cells:
        by_grid.setdefault(c.grid, []).append(c)
    for grid, cs in by_grid.items():
        rows = list(dict.fromkeys(c.row for c in cs))
        if len(rows) < 2:
            continue
        want = (base_rows or {}).get(grid)
        ref_row = want if want in rows else ("base" if "base" in rows else rows[0])
        ref = next(c for c in cs if c.row == ref_row)
        for c in cs:
            c.switches = [] if c.row == ref_row else config_switches(c.config, ref.config)


def configured_keys(config: dict[str, Any]) -> set[str]:
    """The decode keys of the cell's own ``decode`` section (empty if it cannot be read)."""
    from harness.decoding import DecodeSettings

    d = config.get("decode") if isinstance(config.get("decode"), dict) else {}
    try:
        methods = tuple(d.get("methods") or ("greedy_search",))
        s = DecodeSettings(methods=methods, beam=int(d.get("beam", 4)), avg=int(d.get("avg", 1)),
                           use_averaged_model=bool(d.get("use_averaged_model", True)))
    except (TypeError, ValueError):
        return set()
    return {s.key(m) for m in methods}


def prefer_decode(rows: list[dict[str, Any]], keys: set[str]) -> dict[str, Any]:
    """Of several decodes of one method and epoch: the grid's own settings, else the newest."""
    return max(rows, key=lambda r: (r.get("decode_key") in keys, r.get("created_at") or 0.0))


def select_rows(rows: list[dict[str, Any]], objective: str,
                keys: set[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Per test set: the ``wers`` row at the last decoded epoch, by the preferred method (and,
    of several decodes, the one with the cell's own decode settings: ``keys``)."""
    by_set: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("wer") is not None:
            by_set.setdefault(norm_set(r["test_set"]), []).append(r)
    pref = METHOD_PREFERENCE.get(objective, ())
    out = {}
    for ts, rs in by_set.items():
        last = max(int(r["epoch"]) for r in rs)
        per_method: dict[str, list[dict[str, Any]]] = {}
        for r in rs:
            if int(r["epoch"]) == last:
                per_method.setdefault(r["method"], []).append(r)
        at_last = {m: prefer_decode(v, keys) for m, v in per_method.items()}
        order = [m for m in pref if m in at_last] + sorted(m for m in at_last if m not in pref)
        out[ts] = at_last[order[0]]
    return out


def select_wers(rows: list[dict[str, Any]], objective: str,
                keys: set[str] = frozenset()) -> dict[str, tuple[float, str, int]]:
    """Per test set: (WER, method, epoch) of :func:`select_rows`' choice."""
    return {ts: (float(r["wer"]), str(r["method"]), int(r["epoch"]))
            for ts, r in select_rows(rows, objective, keys).items()}


#: bootstrap resamples of one decode's interval in the tables (the verdicts use 10,000)
CELL_CI_RESAMPLES = 2000
#: the ``wers`` / ``utterances`` key columns
DECODE_KEY_COLUMNS = ("cell_id", "test_set", "method", "epoch", "decode_key")


def cell_wer_ci(utt_row: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """A 95 % bootstrap CI (speaker blocks) of one decode's WER from its stored utterances."""
    if utt_row is None:
        return None
    from harness import stats
    from harness.store.results_store import decode_utterances

    u = decode_utterances(utt_row)
    if not len(u["ids"]) or not int(u["ref_len"].sum()):
        return None
    groups = u["speakers"] if any(u["speakers"]) else None
    s = stats.summarize(u["errors"], u["ref_len"], groups, resamples=CELL_CI_RESAMPLES, seed=0)
    return float(s.ci.lo), float(s.ci.hi)


def load_cells(cell_rows: list[dict[str, Any]], wer_rows: list[dict[str, Any]],
               utt_rows: list[dict[str, Any]] = ()) -> list[CellRun]:
    """Every cell with its final WERs, from the store's ``cells`` and ``wers`` rows (and their
    95 % CIs where ``utt_rows``, the store's ``utterances``, hold the decode's utterances)."""
    wers: dict[str, list[dict[str, Any]]] = {}
    for r in wer_rows:
        wers.setdefault(r["cell_id"], []).append(r)
    utts = {tuple(r[k] for k in DECODE_KEY_COLUMNS): r for r in utt_rows}
    cells = []
    for c in cell_rows:
        config = parse_json(c.get("config")) or {}
        if not isinstance(config, dict):
            config = {}
        objective = parse_json(c.get("objective")) or config.get("objective") or "transducer"
        if isinstance(objective, list):
            objective = "+".join(objective)
        cells.append(CellRun(
            cell_id=c["cell_id"], name=c.get("name") or c["cell_id"], grid=c.get("grid") or "",
            variant=c.get("variant") or config.get("variant") or "?", objective=str(objective),
            status=c.get("status") or "pending", error=c.get("error"), config=config,
            params=c.get("params"), gflops=c.get("gflops"), epoch=c.get("epoch"), step=c.get("step")))
        chosen = select_rows(wers.get(c["cell_id"], []), str(objective), configured_keys(config))
        cells[-1].wers = {ts: (float(r["wer"]), str(r["method"]), int(r["epoch"])) for ts, r in chosen.items()}
        for ts, r in chosen.items():
            ci = cell_wer_ci(utts.get(tuple(r[k] for k in DECODE_KEY_COLUMNS))) if utts else None
            if ci is not None:
                cells[-1].wer_cis[ts] = ci
    return cells


@dataclass
class StoreSnapshot:
    """All rows of the store's tables, read once (empty where there is no store)."""

    path: Path
    exists: bool
    tables: dict[str, list[dict[str, Any]]]

    @classmethod
    def read(cls, path: str | Path) -> "StoreSnapshot":
        from harness.store.results_store import SCHEMA, ResultsStore

        path = Path(path)
        if not path.exists():
            return cls(path, False, {t: [] for t in SCHEMA})
        store = ResultsStore(path, readonly=True)
        return cls(path, True, {t: store.rows(t) for t in SCHEMA})

    @classmethod
    def read_many(cls, paths: list[Path], cell_ids: set[str] | None = None) -> "StoreSnapshot":
        """Several stores' rows together (a cell in two stores counts once, the first's);
        ``cell_ids``: only those cells and their epoch and WER rows."""
        from harness.store.results_store import PRIMARY_KEYS, SCHEMA

        snaps = [cls.read(p) for p in paths]
        tables: dict[str, list[dict[str, Any]]] = {}
        for t in SCHEMA:
            seen: set[tuple] = set()
            rows = []
            for snap in snaps:
                for r in snap.tables[t]:
                    key = tuple(r[k] for k in PRIMARY_KEYS[t])
                    if key in seen or (cell_ids is not None and "cell_id" in r
                                       and r["cell_id"] not in cell_ids):
                        continue
                    seen.add(key)
                    rows.append(r)
            tables[t] = rows
        return cls(paths[0] if len(paths) == 1 else Path(), any(s.exists for s in snaps), tables)

    def cells(self) -> list[CellRun]:
        return load_cells(self.tables["cells"], self.tables["wers"], self.tables.get("utterances", []))

    def profile(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(variant, objective) -> the profile row."""
        return {(r["variant"], r["objective"]): r for r in self.tables["profile"]}
