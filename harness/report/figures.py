"""The paper's figures regenerated from the store: Figure 3 (inference time and
peak memory vs average WER), Figure A.2 (WER vs epoch for ScaledAdam and Adam;
Eden and Noam schedules) and Figure A.3 (Swish, SwooshR, SwooshL).

Each figure is written as PNG and PDF; each function returns the paths written
and a caption saying what the figure shows (and what it could not show).
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .data import (METHOD_PREFERENCE, CellRun, configured_keys, norm_set, paper_values,  # noqa: E402
                   prefer_decode, switches_text)
from harness.atomic import atomic_write_bytes  # noqa: E402
from .paper_tables import LIBRISPEECH_CORPORA, bench_setup, describe_setup, scale_ratios  # noqa: E402

OURS, PAPER = "tab:blue", "tab:gray"
OPT_LABELS = {"scaled_adam": "ScaledAdam", "adam": "Adam"}
#: Eden's epoch term needs batches per epoch: LibriSpeech 960 h x 3 speed
#: perturbations, 1000 s per GPU x 4 GPUs per batch (Zipformer-M, Table 7)
LIBRISPEECH_BATCHES_PER_EPOCH = round(960 * 3600 * 3 / (1000 * 4))


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    """PNG and PDF of ``fig``, written atomically."""
    paths = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150, bbox_inches="tight")
        paths.append(atomic_write_bytes(out_dir / f"{stem}.{ext}", buf.getvalue()))
    plt.close(fig)
    return paths


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


# ---- Figure 3 ----

def paper_avg_wer() -> dict[str, float]:
    """Variant -> the paper's average of test-clean and test-other (transducer rows)."""
    out = {}
    for r in paper_values()["librispeech"]["rows"]:
        if r.get("variant") and r.get("objective") == "transducer":
            out[r["variant"]] = (r["test-clean"] + r["test-other"]) / 2
    return out


def ours_avg_wer(cells: list[CellRun]) -> dict[str, float]:
    """Variant -> our average WER of test-clean and test-other (done transducer cells, no overrides)."""
    out: dict[str, float] = {}
    for c in cells:
        if (c.status != "done" or c.objective != "transducer" or c.overrides
                or c.corpus not in LIBRISPEECH_CORPORA):
            continue
        w = [c.wers.get(s) for s in ("test-clean", "test-other")]
        if all(w):
            out[c.variant] = (w[0][0] + w[1][0]) / 2
    return out


def figure3(bench: list[Mapping[str, Any]], cells: list[CellRun], out_dir: Path) -> list[tuple[list[Path], str]]:
    """One Figure 3 per benchmark setup (device, batch, duration, threads)."""
    results = []
    ours_wer, paper_wer = ours_avg_wer(cells), paper_avg_wer()
    for setup in sorted({bench_setup(r) for r in bench}):
        rows = [r for r in bench if bench_setup(r) == setup]
        with_wer = [r for r in rows if r["variant"] in ours_wer]
        stem = f"figure3-{slug(describe_setup(setup))}"
        if with_wer:
            results.append(_figure3_scatter(rows, with_wer, ours_wer, paper_wer, setup, out_dir, stem))
        else:
            results.append(_figure3_ratios(rows, setup, out_dir, stem))
    return results


def _figure3_scatter(rows, with_wer, ours_wer, paper_wer, setup, out_dir, stem):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, xlabel in ((axes[0], "median_s", "encoder inference time per batch (s)"),
                            (axes[1], "peak_mem_mb", "peak memory (MB)")):
        for r in with_wer:
            ax.scatter(r[key], ours_wer[r["variant"]], color=OURS, marker="o", zorder=3)
            ax.annotate(r["variant"], (r[key], ours_wer[r["variant"]]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        for r in rows:
            if r["variant"] in paper_wer:
                ax.axhline(paper_wer[r["variant"]], color=PAPER, ls="--", lw=0.8)
                ax.annotate(f"paper WER {r['variant']}", (ax.get_xlim()[0], paper_wer[r["variant"]]),
                            fontsize=6, color=PAPER, xytext=(2, 2), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("average WER, test-clean & test-other (%)")
        ax.grid(alpha=0.3)
    axes[0].scatter([], [], color=OURS, marker="o", label="ours (measured time/memory, our WER)")
    axes[0].plot([], [], color=PAPER, ls="--", label="paper's average WER (its time/memory are given only as a plot)")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=2,
               bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(f"Figure 3: encoder inference vs WER — {describe_setup(setup)}", fontsize=10)
    caption = (f"Figure 3 on {describe_setup(setup)}: our measured encoder time and peak memory against "
               "our average WER (blue); dashed lines are the paper's average WERs (the paper gives its "
               "time/memory values only in a plot, so they cannot be placed).")
    return save(fig, out_dir, stem), caption


def _figure3_ratios(rows, setup, out_dir, stem):
    ratios = [r for r in scale_ratios(rows)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if ratios:
        scales = [r["scale"] for r in ratios]
        for ax, key, label in ((axes[0], "time_ratio", "inference time ratio"),
                               (axes[1], "mem_ratio", "peak memory ratio")):
            vals = [r[key] if r[key] is not None else float("nan") for r in ratios]
            bars = ax.bar(scales, vals, color=OURS, label="ours: Zipformer-X / Conformer-X")
            ax.bar_label(bars, fmt="%.2f", fontsize=8)
            ax.axhline(1.0, color=PAPER, ls="--", lw=1, label="1.0 (equal); below: Zipformer better")
            ax.set_xlabel("model scale")
            ax.set_ylabel(f"{label} (Zipformer / Conformer)")
            ax.grid(alpha=0.3, axis="y")
        axes[0].legend(fontsize=7)
        what = "Zipformer/Conformer ratios by scale"
    else:
        names = [r["variant"] for r in rows]
        for ax, key, label in ((axes[0], "median_s", "encoder inference time per batch (s)"),
                               (axes[1], "peak_mem_mb", "peak memory (MB)")):
            ax.bar(names, [r[key] for r in rows], color=OURS, label="ours")
            ax.set_ylabel(label)
            ax.tick_params(axis="x", rotation=45, labelsize=7)
            ax.grid(alpha=0.3, axis="y")
        axes[0].legend(fontsize=7)
        what = "absolute time and memory per variant (no Zipformer/Conformer pair of one scale)"
    fig.suptitle(f"Figure 3 (no WER in the store): {what} — {describe_setup(setup)}", fontsize=9)
    caption = (f"Figure 3 on {describe_setup(setup)}: the store holds no average WER for the benchmarked "
               f"models, so this plots {what} instead of time/memory against WER.")
    return save(fig, out_dir, stem), caption


# ---- Figure A.2 ----

def wer_by_epoch(wer_rows: list[Mapping[str, Any]], objective: str,
                 keys: set[str] = frozenset()) -> dict[int, float]:
    """Epoch -> average of test-clean and test-other WER (preferred method; of several decodes,
    the cell's own settings ``keys``), where both exist."""
    pref = METHOD_PREFERENCE.get(objective, ())
    per: dict[int, dict[str, dict[str, list[Mapping[str, Any]]]]] = {}
    for r in wer_rows:
        if r.get("wer") is None:
            continue
        per.setdefault(int(r["epoch"]), {}).setdefault(norm_set(r["test_set"]), {}).setdefault(
            r["method"], []).append(r)
    out = {}
    for epoch, sets in per.items():
        vals = []
        for s in ("test-clean", "test-other"):
            methods = sets.get(s, {})
            order = [m for m in pref if m in methods] + sorted(m for m in methods if m not in pref)
            if order:
                vals.append(float(prefer_decode(methods[order[0]], keys)["wer"]))
        if len(vals) == 2:
            out[epoch] = sum(vals) / 2
    return dict(sorted(out.items()))


def cell_colors(cells: list[CellRun]) -> dict[str, Any]:
    """One colour per cell (tab10, then tab20), in the cells' order."""
    cmap = plt.get_cmap("tab10" if len(cells) <= 10 else "tab20")
    return {c.cell_id: cmap(i % cmap.N) for i, c in enumerate(cells)}


def cell_schedule(c: CellRun, epoch_rows: list[Mapping[str, Any]]) -> tuple[str, list[tuple[int, float]]]:
    """The learning rate the cell trained with, per optimizer step: (description, curve).

    Its optimizer section's schedule, base lr and options (the defaults of its optimizer where
    it names none); Eden's epoch from the cell's own steps per epoch."""
    from variants.optim import DEFAULT_LR, default_scheduler_for, schedule_curve

    opt = c.config.get("optimizer") if isinstance(c.config.get("optimizer"), dict) else {}
    name = c.optimizer if c.optimizer in DEFAULT_LR else "scaled_adam"
    sched = opt.get("schedule") or default_scheduler_for(name)
    lr = opt.get("lr") or DEFAULT_LR[name]
    kw = dict(opt.get("schedule_options") or {})
    steps_by_epoch = sorted((int(r["epoch"]), int(r["step"])) for r in epoch_rows
                            if r.get("step") is not None)
    last = int(c.step or (steps_by_epoch[-1][1] if steps_by_epoch else 0)) or 100_000
    steps = sorted({max(1, round(last * i / 200)) for i in range(201)})
    if sched == "noam":
        curve = schedule_curve("noam", steps, base=lr, **kw)
    else:
        per_epoch = steps_by_epoch[0][1] if steps_by_epoch and steps_by_epoch[0][1] > 0 else \
            LIBRISPEECH_BATCHES_PER_EPOCH
        curve = schedule_curve("eden", steps, base_lr=lr, batches_per_epoch=per_epoch, **kw)
    return f"{sched.capitalize()}, base {lr:g}", curve


def compares_optimizers(cells: list[CellRun]) -> bool:
    """Whether the cells hold the paper's Figure A.2 comparison (ScaledAdam and Adam runs), or
    hold no runs at all (the figure then shows the paper's two schedules)."""
    return not cells or {"scaled_adam", "adam"} <= {c.optimizer for c in cells}


def rows_text(cells: list[CellRun], limit: int = 6) -> str:
    """The grid rows of ``cells`` (grid/row), in order, the first ``limit`` then "+N more"."""
    rows = list(dict.fromkeys(f"{c.grid}/{c.row}" if c.grid else c.row for c in cells))
    return ", ".join(rows[:limit]) + (f", +{len(rows) - limit} more" if len(rows) > limit else "")


def figure_a2(cells: list[CellRun], wer_rows: list[Mapping[str, Any]],
              epoch_rows: list[Mapping[str, Any]], out_dir: Path) -> tuple[list[Path], str]:
    """Convergence per epoch (left) and each cell's learning-rate schedule (right). Titled as
    the paper's Figure A.2 (ScaledAdam vs Adam) only when the cells compare those optimizers (or
    there are none); otherwise titled by the cells' own grid rows, and written as
    ``convergence.{png,pdf}``. Legends: each cell with its switches from its grid's base row."""
    from variants.optim import schedule_curve

    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(11, 4.2))
    by_cell: dict[str, list[Mapping[str, Any]]] = {}
    for r in wer_rows:
        by_cell.setdefault(r["cell_id"], []).append(r)
    epochs_by_cell: dict[str, list[Mapping[str, Any]]] = {}
    for r in epoch_rows:
        epochs_by_cell.setdefault(r["cell_id"], []).append(r)
    colors = cell_colors(cells)
    style = {"adam": "--"}  # line style by optimizer, colour by cell

    paper_fig = compares_optimizers(cells)
    several_opts = len({c.optimizer for c in cells}) > 1

    def label(c: CellRun) -> str:
        bits = [switches_text(c.switches)] if c.switches else []
        if several_opts and not any(s.startswith("optimizer.name=") for s in c.switches):
            bits.append(OPT_LABELS.get(c.optimizer, c.optimizer))
        return (f"{c.grid}/{c.name}" if c.grid else c.name) + (f" ({'; '.join(bits)})" if bits else "") \
            + (f" [{c.status}]" if c.status != "done" else "")

    curves = []
    for c in cells:
        if c.corpus not in LIBRISPEECH_CORPORA:
            continue
        pts = wer_by_epoch(by_cell.get(c.cell_id, []), c.objective, configured_keys(c.config))
        if pts:
            curves.append((c, pts))
    left_what = "average WER"
    if curves:
        for c, pts in curves:
            ax.plot(list(pts), list(pts.values()), marker="o", ms=3, color=colors[c.cell_id],
                    ls=style.get(c.optimizer, "-"), label=label(c))
        ax.set_ylabel("average WER, test-clean & test-other (%)")
    else:
        named = {c.cell_id: c for c in cells}
        drawn = 0
        for cid, rows in epochs_by_cell.items():
            c = named.get(cid)
            pts = sorted((int(r["epoch"]), float(r["valid_loss"])) for r in rows if r.get("valid_loss") is not None)
            if c is None or not pts:
                continue
            drawn += 1
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=colors[cid],
                    ls=style.get(c.optimizer, "-"), label=label(c))
        ax.set_ylabel("validation loss (no per-epoch WER in the store)")
        left_what = "validation loss" if drawn else "nothing (no runs in the store)"
        if not drawn:
            ax.text(0.5, 0.5, "no runs in the store", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14))   # below: many rows
    shown = [c for c in cells if c.cell_id in epochs_by_cell or c.step]
    if shown:
        schedules = [(c, *cell_schedule(c, epochs_by_cell.get(c.cell_id, []))) for c in shown]
        rows_of: dict[str, list[str]] = {}   # one legend entry per schedule, naming its rows
        for c, what, _ in schedules:
            rows_of.setdefault(what, [])
            if c.row not in rows_of[what]:
                rows_of[what].append(c.row)
        for c, what, curve in schedules:
            first = what in rows_of
            ax_lr.plot([s for s, _ in curve], [v for _, v in curve], color=colors[c.cell_id],
                       ls=style.get(c.optimizer, "-"),
                       label=f"{what}: {', '.join(rows_of.pop(what))}" if first else "_nolegend_")
        right_what = ("each cell's own schedule (its optimizer section, base lr and options; Eden's "
                      "epoch from the cell's steps per epoch) up to the step it trained to")
    else:
        steps = list(range(0, 100001, 250))
        eden = schedule_curve("eden", steps, batches_per_epoch=LIBRISPEECH_BATCHES_PER_EPOCH)
        noam = schedule_curve("noam", [max(s, 1) for s in steps])
        ax_lr.plot([s for s, _ in eden], [v for _, v in eden], color=PAPER,
                   label="paper: Eden (ScaledAdam), base 0.045")
        ax_lr.plot([s for s, _ in noam], [v for _, v in noam], color=PAPER, ls="--",
                   label="paper: Noam (Adam), base 7.5, warm-up 10k")
        right_what = (f"no runs, so the paper's Eden and Noam schedules (Eden's epoch from "
                      f"{LIBRISPEECH_BATCHES_PER_EPOCH} batches per epoch: LibriSpeech 960 h x 3 speed "
                      "perturbations at 1000 s x 4 GPUs per batch)")
    ax_lr.set_yscale("log")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.set_ylabel("learning rate (log scale)")
    ax_lr.grid(alpha=0.3, which="both")
    ax_lr.legend(fontsize=7, loc="best")
    if paper_fig:
        title = "Figure A.2: ScaledAdam vs Adam"
        stem = "figureA2-optimizers"
    else:
        title = f"Convergence and learning rate: {rows_text(cells)}"
        stem = "convergence"
    fig.suptitle(f"{title} — convergence (left) and learning-rate schedules (right)", fontsize=10)
    dashed = " (dashed: Adam)" if several_opts or paper_fig else ""
    caption = (f"{title}: left, {left_what} per epoch of our runs, one colour per cell{dashed}, each "
               f"named with its switches from its grid's base row; right, {right_what}, from "
               "variants.optim.schedule_curve, one legend entry per schedule naming the rows that use it.")
    return save(fig, out_dir, stem), caption


# ---- Figure A.3 ----

def figure_a3(out_dir: Path) -> tuple[list[Path], str]:
    import torch

    from variants.components.swoosh import Swish, SwooshL, SwooshR

    x = torch.linspace(-8, 8, 801)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    with torch.no_grad():
        for mod, name, style in ((Swish(), "Swish", "-"), (SwooshR(), "SwooshR", "--"),
                                 (SwooshL(), "SwooshL", "-.")):
            ax.plot(x.numpy(), mod(x).numpy(), style, label=name)
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("x")
    ax.set_ylabel("activation(x)")
    ax.set_title("Figure A.3: Swish, SwooshR and SwooshL")
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, out_dir, "figureA3-activations"), ("Figure A.3: the activation functions, computed "
                                                        "by variants.components.swoosh.")


# ---- forest plots of the verdicts ----

def forest_plots(grid_name: str, verdicts: list, out_dir: Path,
                 labels: Mapping[str, str] | None = None) -> list[tuple[list[Path], str]]:
    """One figure per test set: each row's difference from the baseline with its 95 % CI
    (a bare point where the decodes have no per-utterance results), the paper's difference
    for the same comparison marked; PNG and PDF. ``labels``: row name -> its tick label (the
    row with its switches from the base)."""
    labels = labels or {}
    out = []
    compared = [v for v in verdicts if v.delta is not None]
    for ts in sorted({v.test_set for v in compared}):
        vs = [v for v in compared if v.test_set == ts]
        several = len({v.method for v in vs}) > 1
        fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.45 * len(vs)))
        ticks = []
        for y, v in enumerate(reversed(vs)):
            name = labels.get(v.row, v.row)
            ticks.append(f"{name} ({v.method})" if several else name)
            if v.delta_ci is not None:
                ax.errorbar([v.delta], [y], xerr=[[v.delta - v.delta_ci[0]], [v.delta_ci[1] - v.delta]],
                            fmt="o", color=OURS, capsize=3, label="ours, 95% CI" if y == 0 else None)
            else:
                ax.plot([v.delta], [y], "o", mfc="white", color=OURS,
                        label="ours, no per-utterance results" if y == 0 else None)
            if v.paper_delta is not None:
                ax.plot([v.paper_delta], [y], "D", color=PAPER, ms=6, label="paper")
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles))
        ax.axvline(0.0, color="black", lw=0.8, ls="--")
        ax.set_yticks(range(len(vs)))
        ax.set_yticklabels(ticks, fontsize=8)
        ax.set_ylim(-0.7, len(vs) - 0.3)
        unit = "CER" if vs[0].unit == "char" else "WER"
        ax.set_xlabel(f"{unit} difference from {labels.get(vs[0].baseline, vs[0].baseline)} "
                      "(points; < 0: better)")
        ax.set_title(f"{grid_name}: {ts}")
        if unique:
            ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
        paths = save(fig, out_dir, f"forest-{slug(grid_name + '-' + ts)}")
        seeds = sorted({v.n_seeds for v in vs})
        out.append((paths, f"Forest plot, grid {grid_name}, {ts}: each row's {unit} minus the "
                           f"baseline row {vs[0].baseline}'s ({'/'.join(map(str, seeds))} seed(s) per row; "
                           "bars: 95% bootstrap CI over speakers and seeds); grey diamonds: the paper's "
                           "difference for the same comparison, where it reports one."))
    return out
