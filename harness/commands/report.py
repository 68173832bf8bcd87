"""`harness report [GRID ...] [--store PATH ...] [--out runs/report]`: the tables (Markdown,
LaTeX, CSV) and figures (PNG, PDF) whose rows the results stores hold, the paper's values
beside ours where the runs reproduce a paper table or repeat one of its comparisons, and an
index page ``index.md`` linking them all. Rows are named with the switches in which they
differ from their grid's base row. Grids select their stores and their cells; with
neither grids nor stores, every store the ``experiments/`` grids name is read.
An empty or absent store gives a report of the paper's values and our profile,
saying what is missing."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

from harness.report.data import StoreSnapshot

from .common import UserError

DEFAULT_OUT = "runs/report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grids", nargs="*", metavar="GRID",
                   help="grid files: their stores, only their cells (default: every store the "
                        "experiments/ grids name)")
    p.add_argument("--store", nargs="+", default=None, metavar="PATH",
                   help="results store(s) to read, every cell in them")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    p.add_argument("--compare", nargs="+", default=None, metavar="GRID",
                   help="grids whose rows get verdicts with confidence intervals and forest plots "
                        "(default: the GRID arguments, else the experiments/ grids the store's cells "
                        "belong to)")


def experiment_stores(root: Path = Path("experiments")) -> list[Path]:
    """The stores the grids under ``root`` name (the default store for grids that name none)."""
    from harness.grid.errors import GridError
    from harness.grid.loader import load_grid

    out: list[Path] = []
    for f in sorted(root.glob("*.yaml")):
        try:
            path = load_grid(f).store_path
        except GridError:
            continue
        if path not in out:
            out.append(path)
    return out


def experiment_grids(names: set[str], root: Path = Path("experiments")) -> list[tuple[Any, list[Any]]]:
    """The grids under ``root`` (else the repository's ``experiments/``) whose names are in
    ``names`` (the grids the store's cells belong to), expanded; grids that do not load are left out."""
    from harness.grid.cells import load_cells
    from harness.grid.errors import GridError

    if not root.is_dir():
        root = Path(__file__).resolve().parents[2] / "experiments"
    out = []
    for f in sorted(root.glob("*.yaml")):
        try:
            grid, cells = load_cells(str(f))
        except GridError:
            continue
        if grid.name in names:
            out.append((grid, cells))
    return out


def row_labels(cells: list[Any], grid_name: str) -> dict[str, str]:
    """Row name -> the row with its switches from the grid's base (from the report's cells)."""
    return {c.row: c.label(with_grid=False) for c in cells if c.grid == grid_name}


def verdict_section(page: Any, snap: StoreSnapshot, grids: list[tuple[Any, list[Any]]], out: Path,
                    cells: list[Any] = ()) -> dict[str, list[Any]]:
    """Per grid: the table of `harness compare` and a forest plot per test set; returns each
    grid's verdicts (grid name -> verdicts)."""
    from harness.report import figures
    from harness.report.verdicts import NoResults, grid_verdicts, verdicts_table

    page.add_text("## Verdicts (confidence intervals)")
    found: dict[str, list[Any]] = {}
    for grid, gcells in grids:
        try:
            verdicts = grid_verdicts(grid, gcells, snap)
        except NoResults:
            page.missing.append(f"Grid {grid.name}: no decoded cell, so no verdicts (run `harness run "
                                f"{grid.path}`).")
            continue
        found[grid.name] = verdicts
        labels = row_labels(list(cells), grid.name)
        t = verdicts_table(grid.name, verdicts, labels)
        page.add_table(t, t.write(out, f"verdicts-{grid.name}"),
                       intro=f"`harness compare {grid.path}` prints the same lines (`--json` for one "
                             "object per line); rows are named with their switches from the grid's base.")
        for paths, caption in figures.forest_plots(grid.name, verdicts, out, labels):
            page.add_figure(paths, caption)
    if not found:
        page.add_text("No grid with decoded cells: no verdicts (`harness report GRID` names the grids).")
    return found


def base_row(grid: Any) -> str:
    """The row switches are shown against: the grid's base row, else its baseline row."""
    from harness.report.verdicts import baseline_label

    return "base" if grid.spec.include_base else baseline_label(grid)


def paper_claims(grids: list[tuple[Any, list[Any]]], stored: set[str]
                 ) -> dict[str, list[tuple[str, Any, Any, Any]]]:
    """Section -> (grid name, row, baseline row, PaperClaim) for each grid row with cells in
    the store (``stored``: their ids) that repeats a comparison of the paper's."""
    from harness.report.verdicts import grid_claims

    out: dict[str, list[tuple[str, Any, Any, Any]]] = {}
    for grid, gcells in grids:
        mine = [c for c in gcells if c.cell_id in stored]
        try:
            claims = grid_claims(grid, mine) if mine else []
        except ValueError:   # a grid whose baseline row is not in the store
            claims = []
        for row, base, claim in claims:
            out.setdefault(claim.section, []).append((grid.name, row, base, claim))
    return out


def build_report(stores: Path | Sequence[Path], out: Path,
                 cell_ids: Optional[set[str]] = None,
                 grids: Optional[list[tuple[Any, list[Any]]]] = None) -> tuple[Path, list[str]]:
    """Write the tables and figures whose rows the stores hold (only ``cell_ids``' cells if
    given); return the index path and what is missing. ``grids`` (grid, cells): their rows'
    verdicts and the paper comparisons they repeat (default: the ``experiments/`` grids the
    store's cells belong to). A paper table is written in full when a cell is one of its own
    models on its test sets, as the rows a grid repeats when a grid row repeats one of its
    comparisons, and not at all otherwise; with no cells at all, the paper's values alone."""
    from harness.report import figures
    from harness.report import paper_tables as tables
    from harness.report.data import assign_switches
    from harness.report.index import ReportPage

    paths = [Path(stores)] if isinstance(stores, (str, Path)) else [Path(p) for p in stores]
    snap = StoreSnapshot.read_many(paths, cell_ids)
    cells, profile = snap.cells(), snap.profile()
    bench = snap.tables["bench"]
    counts = Counter(c.status for c in cells)
    names = ", ".join(f"`{p}`" for p in paths)
    store_line = (f"{names} ({len(cells)} cells"
                  + (": " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if counts else "")
                  + f"; {len(snap.tables['wers'])} WER rows, {len(snap.tables['profile'])} profile rows, "
                    f"{len(bench)} benchmark rows)") if snap.exists else f"{names} (no such store)"
    page = ReportPage(out, store_line)
    if not snap.exists:
        page.missing.append(f"No results store at {', '.join(map(str, paths))}: run `harness run GRID` "
                            "(training), `harness profile` and `harness bench` to fill one.")
    if not cells:
        page.missing.append("No grid cells: every WER below is the paper's only (run `harness run GRID`).")
    elif not snap.tables["wers"]:
        page.missing.append("No WERs yet: no cell has been decoded.")
    if not profile:
        page.missing.append("No profile rows: params/GFLOPs 'ours' are empty (run `harness profile`).")
    if not bench:
        page.missing.append("No benchmark rows: no Figure 3 (run `harness bench`, on a GPU for the "
                            "paper's protocol).")
    bad = [c for c in cells if c.status in ("failed", "diverged")]
    if bad:
        page.missing.append("Cells that did not finish: " + "; ".join(
            f"{c.name} ({c.variant}, {c.objective}) {c.status}"
            + (f": {c.error.strip().splitlines()[-1][:160]}" if c.error else "") for c in bad))

    if grids is None:
        grids = experiment_grids({c.grid for c in cells if c.grid}) if cells else []
    bases = {}
    for grid, _ in grids:
        try:
            bases[grid.name] = base_row(grid)
        except ValueError:
            pass
    assign_switches(cells, bases)
    verdicts = verdict_section(page, snap, grids, out, cells) if grids else {}

    page.add_text("## Tables")
    if cells:
        runs = tables.runs_table(cells, snap.tables["wers"], snap.tables.get("utterances", []))
        page.add_table(runs, runs.write(out, "runs"))
    claims = paper_claims(grids, {c.cell_id for c in cells})
    switches = {(c.grid, c.row): c.switches for c in cells}
    skipped: list[str] = []
    full_tables = 0
    for section, corpora, fn in (("librispeech", tables.LIBRISPEECH_CORPORA, tables.librispeech_table),
                                 ("ablations", tables.LIBRISPEECH_CORPORA, tables.ablation_table),
                                 ("activation_constraints", tables.LIBRISPEECH_CORPORA,
                                  tables.constraints_table),
                                 ("aishell", ("aishell",), tables.aishell_table)):
        stem, label = tables.SECTION_TABLES.get(section) or ("table3-aishell", "Table 3 (Aishell-1)")
        full = tables.has_runs(cells, section, corpora) or (not cells and section in tables.SECTION_TABLES)
        if full:
            t = fn(cells, profile)
            page.add_table(t, t.write(out, stem))
            full_tables += 1
        if claims.get(section):
            entries = [(g, row, base, claim, switches.get((g, row.name), []),
                        [v for v in verdicts.get(g, []) if v.row == row.name])
                       for g, row, base, claim in claims[section]]
            t = tables.paper_comparison_table(section, entries)
            page.add_table(t, t.write(out, stem + ("-repeated" if full else "")))
        elif not full:
            skipped.append(label)
    skipped.append("Table 4 (WenetSpeech: the harness has no WenetSpeech recipe)")
    if skipped:
        page.add_text("Not generated (no cell of their models on their test sets, no grid row repeating "
                      "one of their comparisons): " + ", ".join(skipped) + ".")

    if bench:
        page.add_text("## Inference benchmark (Figure 3)")
        setups = sorted({tables.bench_setup(r) for r in bench})
        page.add_text("Benchmarks in the store were measured on: "
                      + "; ".join(tables.describe_setup(s) for s in setups)
                      + ". The paper's protocol is batch 30 x 30 s on one V100 GPU.")
        bt, rt = tables.bench_table(bench), tables.ratio_table(bench)
        page.add_table(bt, bt.write(out, "figure3-bench"))
        page.add_table(rt, rt.write(out, "figure3-ratios"))
        for paths, caption in figures.figure3(bench, cells, out):
            page.add_figure(paths, caption)
    train_bench = snap.tables.get("train_bench", [])
    if train_bench:
        page.add_text("## Training benchmark")
        tt = tables.train_bench_table(train_bench)
        page.add_table(tt, tt.write(out, "train-bench"))

    # the paper's activations when the report reproduces a paper table or a row switches them
    activations = not cells or full_tables > 0 or any(
        "activation" in s.lower() or "swoosh" in s.lower() or "swish" in s.lower()
        for c in cells for s in c.switches)
    page.add_text(("## Optimizers (Figure A.2)" if figures.compares_optimizers(cells) else "## Convergence")
                  + (" and activations (Figure A.3)" if activations else ""))
    page.add_figure(*figures.figure_a2(cells, snap.tables["wers"], snap.tables["epochs"], out))
    if activations:
        page.add_figure(*figures.figure_a3(out))
    if (out / "profile.md").exists():
        page.add_text("## Profile\n\nParams per part and encoder GFLOPs of every variant: "
                      "[profile.md](profile.md) · [profile.csv](profile.csv) (written by `harness profile`).")
    return page.write(), page.missing


def run(args: argparse.Namespace) -> int:
    from harness.grid.cells import load_cells
    from harness.grid.errors import GridError
    from harness.store import default_store_path
    from harness.store.results_store import StoreError

    stores = [Path(p) for p in args.store or []]
    cell_ids: Optional[set[str]] = None
    grids = []
    for g in args.grids:
        try:
            grid, cells = load_cells(g)
        except GridError as e:
            raise UserError(str(e))
        grids.append((grid, cells))
        cell_ids = (cell_ids or set()) | {c.cell_id for c in cells}
        if not args.store and grid.store_path not in stores:
            stores.append(grid.store_path)
    if args.compare:
        grids = []
        for g in args.compare:
            try:
                grids.append(load_cells(g))
            except GridError as e:
                raise UserError(str(e))
    if not stores:
        stores = [p for p in experiment_stores() if p.exists()] or [default_store_path()]
    try:
        index, missing = build_report(stores, Path(args.out), cell_ids, grids or None)
    except StoreError as e:  # every store fault (not SQLite, empty, locked, ...) as one line
        raise UserError(str(e))
    except (FileExistsError, NotADirectoryError, PermissionError) as e:
        raise UserError(f"--out {args.out}: cannot write {e.filename}: {e.strerror}") from None
    for m in missing:
        print(f"missing: {m}", file=sys.stderr)
    print(f"wrote {index}")
    return 0
