"""The paper's tables regenerated from the store, the paper's values beside ours.

Table 2/8 (LibriSpeech), 3 (Aishell-1), 5 (ablations), 6
(activation constraints), and the inference benchmark behind Figure 3 with the
Zipformer / Conformer ratios per scale. Params and GFLOPs differences are
relative (%), WER/CER differences absolute (percentage points).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .data import CellRun, cell_wer_ci, configured_keys, norm_set, paper_values, prefer_decode
from .verdicts import RE_DECODE
from harness.tables import Table, fmt_pct, is_missing, pct_diff

LIBRISPEECH_CORPORA = ("librispeech", "synthetic", None)
SCALES = ("s", "m", "l")


def wer_diff(ours: Any, paper: Any) -> str:
    if isinstance(ours, str) or is_missing(ours) or is_missing(paper):
        return "—"
    return f"{float(ours) - float(paper):+.2f}"


def _params_m(v: Any) -> float | None:
    return None if is_missing(v) else float(v) / 1e6


def _ours_params_gflops(cell: CellRun | None, prof: Mapping[str, Any] | None,
                        use_profile_params: bool) -> tuple[float | None, float | None]:
    """Params (M) and GFLOPs of a cell, or of the registered variant from the profile.

    A cell trained with overrides is a different model: the profile's numbers
    (for the registered variant) are not used for it.
    """
    params = gflops = None
    if cell is not None:
        params, gflops = _params_m(cell.params), cell.gflops
    same_model = cell is None or not cell.overrides
    if prof and same_model:
        if params is None and use_profile_params:
            params = _params_m(prof.get("params"))
        if gflops is None:
            gflops = prof.get("gflops")
    return params, gflops


def comparison_table(section: str, title: str, cells: list[CellRun],
                     profile: Mapping[tuple[str, str], Mapping[str, Any]],
                     corpora: Iterable[str | None], *, with_gflops: bool = False,
                     use_profile_params: bool = True, extra_cells: bool = False,
                     unit: str = "WER", notes: Iterable[str] = ()) -> Table:
    """Paper rows of ``section`` of paper_values.yaml with our runs beside them.

    ``corpora``: the corpora whose cells belong in this table. Literature rows
    are shown as such; a paper row without a run still gets our profiled params
    and GFLOPs when ``use_profile_params``. ``extra_cells`` appends runs of models
    the paper has no row for.
    """
    spec = paper_values()[section]
    sets = list(spec["test_sets"])
    corpora = set(corpora)
    mine = [c for c in cells if c.corpus in corpora]
    columns = ["model", "type", "params paper (M)", "params ours (M)", "diff params"]
    if with_gflops:
        columns += ["GFLOPs paper", "GFLOPs ours", "diff GFLOPs"]
    for s in sets:
        columns += [f"{s} paper", f"{s} ours", f"diff {s}"]
    columns.append("source of ours")
    t = Table(title=title, columns=columns,
              digits={"params paper (M)": 1, "params ours (M)": 2, "GFLOPs paper": 1})
    used: set[str] = set()
    table_sets = {norm_set(x) for x in sets}

    def elsewhere(c: CellRun) -> bool:
        """Decoded, but only on other test sets (e.g. the synthetic corpus's): see the runs table."""
        return bool(c.wers) and not table_sets & set(c.wers)

    def add(model: str, type_: str, paper: Mapping[str, Any], cell: CellRun | None,
            prof: Mapping[str, Any] | None, source: str) -> None:
        params, gflops = _ours_params_gflops(cell, prof, use_profile_params)
        row: list[Any] = [model, type_, paper.get("params_m"), params,
                          fmt_pct(pct_diff(params, paper.get("params_m")))]
        if with_gflops:
            row += [paper.get("gflops"), gflops, fmt_pct(pct_diff(gflops, paper.get("gflops")))]
        for s in sets:
            ours = cell.wer_cell(s) if cell is not None else "not run"
            row += [paper.get(s), cell.wer_text(s) if cell is not None else ours, wer_diff(ours, paper.get(s))]
        row.append(source)
        t.add(row)

    for prow in spec["rows"]:
        type_ = prow.get("type") or prow.get("objective", "")
        if prow.get("literature"):
            t.add([prow["model"], type_, prow.get("params_m"), None, "—"]
                  + ([prow.get("gflops"), None, "—"] if with_gflops else [])
                  + sum(([prow.get(s), None, "—"] for s in sets), [])
                  + ["literature (quoted by the paper; not built here)"])
            continue
        key = (prow["variant"], prow["objective"])
        prof = profile.get(key)
        matching = [c for c in mine if (c.variant, c.objective) == key and not elsewhere(c)]
        if not matching:
            add(prow["model"], type_, prow, None, prof,
                f"{prow['variant']} profile; no run" if prof else f"{prow['variant']}: no run, no profile")
        for c in matching:
            used.add(c.cell_id)
            add(prow["model"], type_, prow, c, prof, c.describe())
    if extra_cells:
        for c in mine:
            if c.cell_id not in used and not elsewhere(c):
                add(f"{c.name} ({c.variant}" + (f"; {', '.join(c.switches)})" if c.switches else ")"),
                    c.objective, {}, c, profile.get((c.variant, c.objective)),
                    c.describe())
    t.notes = [
        "runs decoded only on other test sets (e.g. the built-in synthetic corpus's test and "
        "test_held_out) are listed in the measured-runs table (runs.md), not here.",
        f"ours: {unit} (%) at the run's last decoded epoch [its 95% bootstrap CI over speakers, where the "
        "decode stored per-utterance results], by the decoding method named in the source "
        "column (transducer: modified beam search 4 as in the paper, else greedy; CTC/AED: attention "
        "rescoring); 'failed' / 'diverged' / 'running' / 'pending' / 'no WER' say why a value is missing.",
        f"diff params/GFLOPs: (ours - paper) / paper; diff {unit}: ours - paper in points.",
    ] + list(notes)
    if any(c.corpus == "synthetic" for c in mine if c.cell_id in used or extra_cells):
        t.notes.append("Runs on the built-in synthetic corpus give WERs on synthetic speech: they show the "
                       "harness works end to end and rank models only roughly; they are not LibriSpeech "
                       "WERs and are not comparable to the paper's.")
    return t


def runs_table(cells: list[CellRun], wer_rows: list[Mapping[str, Any]],
               utt_rows: list[Mapping[str, Any]] = ()) -> Table:
    """Every cell's measured WER/CER per test set at its last decoded epoch, with each
    decoding method side by side (whatever corpus and test sets the cell used); one row per
    averaging a cell was decoded with (``harness decode --avg`` sweeps). A decode with
    per-utterance results (``utt_rows``) shows its 95 % CI."""
    from harness.store.results_store import PRIMARY_KEYS

    key_cols = PRIMARY_KEYS["utterances"]
    utts = {tuple(r[k] for k in key_cols): r for r in utt_rows}

    def value(r: Mapping[str, Any]) -> Any:
        ci = cell_wer_ci(utts.get(tuple(r[k] for k in key_cols)))
        w = float(r["wer"])
        return w if ci is None else f"{w:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"

    rows_by_cell: dict[str, list[Mapping[str, Any]]] = {}
    for r in wer_rows:
        if r.get("wer") is not None:
            rows_by_cell.setdefault(r["cell_id"], []).append(r)
    methods = sorted({r["method"] for rs in rows_by_cell.values() for r in rs})
    t = Table(title="Measured runs: WER/CER (%) per test set and decoding method",
              columns=["grid/cell", "switches vs base", "variant", "objective", "optimizer", "corpus",
                       "status",
                       "params (M)", "epoch", "decode", "test set", "unit"] + methods,
              digits={"params (M)": 2, "epoch": 0})
    for c in sorted(cells, key=lambda c: (c.grid or "", c.name)):
        head = [f"{c.grid}/{c.name}" if c.grid else c.name, ", ".join(c.switches) or "—", c.variant,
                c.objective, c.optimizer,
                c.corpus or "—", c.status, _params_m(c.params)]
        rs = rows_by_cell.get(c.cell_id, [])
        if not rs:
            why = c.wer_cell("-")
            t.add(head + [c.epoch, "—", "—", "—"] + [why] * len(methods))
            continue
        last = max(int(r["epoch"]) for r in rs)
        keys = configured_keys(c.config)
        groups: dict[tuple[str, str], dict[str, list[Mapping[str, Any]]]] = {}
        for r in rs:
            if int(r["epoch"]) == last:
                averaging = str(r.get("decode_key") or "").split("-beam")[0]
                groups.setdefault((str(r["test_set"]), averaging), {}).setdefault(
                    str(r["method"]), []).append(r)
        for (test_set, averaging), by_method in sorted(groups.items()):
            chosen = {m: prefer_decode(v, keys) for m, v in by_method.items()}
            unit = next(iter(chosen.values())).get("unit") or "word"
            beams = sorted({str(r.get("decode_key")).split("-beam")[1] for r in chosen.values()
                            if "-beam" in str(r.get("decode_key"))})
            decode = (averaging or "—") + (f", beam {'/'.join(beams)}" if beams else "")
            t.add(head + [last, decode, test_set, "CER" if unit == "char" else "WER"]
                  + [value(chosen[m]) if m in chosen else "—" for m in methods])
    t.notes = ["switches vs base: the settings in which the cell's config differs from its grid's base "
               "row (the baseline row where the grid has no base row; seeds aside). "
               "One row per cell, test set and averaging, at the cell's last decoded epoch "
               "(decode: avgN = the last N epochs averaged, -averaged-model = with the running "
               "average); '—': that method was not run for the cell; [lo, hi]: the 95% bootstrap "
               "CI over speakers of that one decode (decodes recorded before per-utterance results "
               f"were stored have none: {RE_DECODE}). Paper values for these "
               "corpora do not exist when the corpus is the built-in synthetic one (see the "
               "tables below for the paper's)."]
    return t


def librispeech_table(cells, profile) -> Table:
    return comparison_table(
        "librispeech", "Table 2/8: LibriSpeech WER, params and encoder GFLOPs (30 s input)", cells,
        profile, LIBRISPEECH_CORPORA, with_gflops=True, extra_cells=True,
        notes=["GFLOPs ours: `harness profile` (DeepSpeed with the authors' per-element rules for "
               "Zipformers; plain DeepSpeed where no rule applies)."])


def aishell_table(cells, profile) -> Table:
    return comparison_table("aishell", "Table 3: Aishell-1 CER", cells, profile, ("aishell",),
                            use_profile_params=False, unit="CER",
                            notes=["Aishell-1 models use a character vocabulary: params come from "
                                   "the trained cells only."])


def ablation_table(cells, profile) -> Table:
    return comparison_table("ablations", "Table 5: ablations of Zipformer-M (pruned transducer, "
                            "50 epochs in the paper)", cells, profile, LIBRISPEECH_CORPORA)


def constraints_table(cells, profile) -> Table:
    return comparison_table("activation_constraints", "Table 6: activation constraints of "
                            "Zipformer-M (40 epochs in the paper)", cells, profile,
                            LIBRISPEECH_CORPORA)


def has_runs(cells: list[CellRun], section: str, corpora: Iterable[str | None]) -> bool:
    """Whether the section's table would show one of ``cells`` in a paper row: a cell of one of
    its (variant, objective) rows on one of ``corpora``, not decoded only on other test sets
    (e.g. the synthetic corpus's, which such a row would show as 'no run')."""
    spec = paper_values()[section]
    keys = {(r["variant"], r["objective"]) for r in spec["rows"] if "variant" in r}
    sets = {norm_set(x) for x in spec["test_sets"]}
    corpora = set(corpora)
    return any((c.variant, c.objective) in keys and c.corpus in corpora and (not c.wers or sets & set(c.wers))
               for c in cells)


#: the paper's table of each paper_values.yaml section the verdicts match
SECTION_TABLES = {"librispeech": ("table2-librispeech", "Table 2"),
                  "ablations": ("table5-ablations", "Table 5"),
                  "activation_constraints": ("table6-activation-constraints", "Table 6")}


def paper_comparison_table(section: str, entries: list[tuple[str, Any, Any, Any, list[str], list[Any]]]
                           ) -> Table:
    """The comparisons of one paper table that a grid's rows repeat (the rows of the paper
    table they match, not the whole table): per entry ``(grid, row, baseline row, PaperClaim,
    the row's switches, its verdicts)``, the paper's two WERs and difference per paper test set
    beside our difference and verdict per test set and method (one line per verdict; "not
    decoded" where the store has none)."""
    spec = paper_values()[section]
    sets = list(spec["test_sets"])
    by_model = {r["model"]: r for r in spec["rows"] if "variant" in r}
    _, table = SECTION_TABLES[section]
    t = Table(title=f"{table}: the paper's comparisons that the grid's rows repeat",
              columns=["grid row", "switches vs base", "baseline row", "paper comparison"]
              + [f"{s} paper (row vs reference)" for s in sets]
              + ["our test set", "method", "ours: row [95% CI]", "ours: diff vs baseline [95% CI]",
                 "verdict"])
    for grid, row, base, claim, switches, verdicts in entries:
        mine, ref = (by_model.get(m, {}) for m in claim.rows)
        paper = []
        for ts in sets:
            a, b = mine.get(ts), ref.get(ts)
            d = claim.deltas.get(norm_set(ts))
            paper.append("—" if a is None or b is None or d is None else f"{a:.2f} vs {b:.2f} ({d:+.2f})")
        head = [f"{grid}/{row.name}", ", ".join(switches) or "—", base.name,
                f"{claim.rows[0]} vs {claim.rows[1]}"] + paper
        if not verdicts:
            t.add(head + ["—", "—", "not decoded", "—", "—"])
        for v in verdicts:
            t.add(head + [v.test_set, v.method, v.wer_text(), v.delta_text(), v.verdict_text()])
    t.notes = [
        f"Only the paper rows these grid rows repeat: a row whose model differs from its baseline "
        f"row's exactly as the paper's row differs from its reference (model specs compared, optimizer "
        f"included; Table 2: a Conformer vs a Zipformer of one paper scale). The full {table} is "
        "written when the store holds a cell of the paper's own variants on its test sets.",
        "paper: the row's and the reference's WER (%) and their difference in points; ours: the "
        "difference on our test sets (the paper's where they are LibriSpeech's), as in the verdicts "
        "table; verdict holds / reversed against the paper's sign where the CI excludes 0.",
    ]
    return t


# ---- inference benchmark (Figure 3) ----

def bench_setup(r: Mapping[str, Any]) -> tuple[str, int, float, int]:
    return (r["device"], int(r["batch"]), float(r["duration_s"]), int(r.get("threads") or 0))


def describe_setup(setup: tuple[str, int, float, int]) -> str:
    device, batch, duration, threads = setup
    return f"{device}, batch {batch} x {duration:g} s, {threads} thread(s)"


def bench_table(bench: list[Mapping[str, Any]]) -> Table:
    t = Table(title="Encoder inference time and peak memory (Figure 3 protocol)",
              columns=["variant", "device", "threads", "batch", "duration (s)", "runs",
                       "median time (s)", "p25 (s)", "p75 (s)", "peak memory (MB)", "memory measured as"],
              digits={"median time (s)": 3, "p25 (s)": 3, "p75 (s)": 3, "peak memory (MB)": 1,
                      "duration (s)": 1})
    for r in sorted(bench, key=lambda r: (bench_setup(r), r["variant"])):
        t.add([r["variant"], r["device"], r.get("threads"), r["batch"], r["duration_s"], r.get("runs"),
               r.get("median_s"), r.get("p25_s"), r.get("p75_s"), r.get("peak_mem_mb"),
               r.get("mem_method") or "—"])
    t.notes = ["Paper: batch 30 x 30 s on one V100, inference mode; time is the median of the timed "
               "runs after warm-up (CUDA synchronised), p25-p75 its spread."]
    return t


def train_bench_table(rows: list[Mapping[str, Any]]) -> Table:
    """``harness bench --train`` rows: training step time, peak memory, bytes saved for backward."""
    t = Table(title="Training step time and peak memory (forward + backward + optimizer step)",
              columns=["variant", "device", "precision", "objective", "threads", "batch",
                       "duration (s)", "steps", "median step (s)", "p25 (s)", "p75 (s)",
                       "peak memory (MB)", "live tensor peak (MB)", "saved for backward (MB)",
                       "MB saved per s of audio", "memory measured as"],
              digits={"median step (s)": 3, "p25 (s)": 3, "p75 (s)": 3, "peak memory (MB)": 1,
                      "live tensor peak (MB)": 1,
                      "saved for backward (MB)": 1, "MB saved per s of audio": 2, "duration (s)": 1})
    key = lambda r: (r["device"], r["precision"], int(r["batch"]), float(r["duration_s"]), r["variant"])
    for r in sorted(rows, key=key):
        audio = r["batch"] * r["duration_s"]
        saved = r.get("saved_mb")
        t.add([r["variant"], r["device"], r["precision"], r.get("objective"), r.get("threads"),
               r["batch"], r["duration_s"], r.get("steps"), r.get("median_s"), r.get("p25_s"),
               r.get("p75_s"), r.get("peak_mem_mb"), r.get("live_peak_mb"), saved,
               saved / audio if saved is not None and audio else None, r.get("mem_method") or "—"])
    t.notes = ["Measured by `harness bench --train`: the variant's objective and optimizer, schedules "
               "past warm-up, random features and transcripts; saved MB is what one forward keeps for "
               "the backward pass (parameters excluded); live tensor peak is the peak of live tensor bytes over "
               "one forward + backward (harness.profile.live_bytes; weights and input excluded, gradients "
               "included), the device-free proxy of peak memory."]
    return t


def scale_ratios(bench: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Zipformer-X / Conformer-X time and memory ratios per setup and scale."""
    by = {(bench_setup(r), r["variant"]): r for r in bench}
    out = []
    for setup in sorted({bench_setup(r) for r in bench}):
        for s in SCALES:
            z, c = by.get((setup, f"zipformer-{s}")), by.get((setup, f"conformer-{s}"))
            if not z or not c or not c.get("median_s") or not c.get("peak_mem_mb"):
                continue
            out.append({"setup": setup, "scale": s.upper(),
                        "time_ratio": z["median_s"] / c["median_s"],
                        "mem_ratio": (z["peak_mem_mb"] / c["peak_mem_mb"]) if c["peak_mem_mb"] else None})
    return out


def claim_verdicts(ratios: list[dict[str, Any]]) -> list[str]:
    """One plain sentence per setup: does 'Zipformer faster and lighter' hold there?"""
    lines = []
    for setup in sorted({r["setup"] for r in ratios}):
        rs = [r for r in ratios if r["setup"] == setup]
        faster = [r["scale"] for r in rs if r["time_ratio"] < 1]
        lighter = [r["scale"] for r in rs if r["mem_ratio"] is not None and r["mem_ratio"] < 1]
        scales = [r["scale"] for r in rs]
        if len(faster) == len(rs) and len(lighter) == len(rs):
            verdict = "holds at every scale measured"
        elif not faster and not lighter:
            verdict = "does not hold at any scale measured"
        else:
            verdict = (f"holds only in part: faster at {', '.join(faster) or 'no scale'}, "
                       f"lighter at {', '.join(lighter) or 'no scale'}")
        lines.append(f"On {describe_setup(setup)} (scales {', '.join(scales)}): the paper's claim "
                     f"(Zipformer faster and lighter than the Conformer of the same scale) {verdict}.")
    return lines


def ratio_table(bench: list[Mapping[str, Any]]) -> Table:
    ratios = scale_ratios(bench)
    t = Table(title="Zipformer / Conformer of the same scale: inference time and peak memory ratios",
              columns=["setup", "scale", "time ratio", "memory ratio", "faster", "lighter"],
              digits={"time ratio": 2, "memory ratio": 2})
    for r in ratios:
        t.add([describe_setup(r["setup"]), r["scale"], r["time_ratio"], r["mem_ratio"],
               r["time_ratio"] < 1, (r["mem_ratio"] or 1) < 1])
    t.notes = claim_verdicts(ratios) or ["No scale has both a Zipformer and a Conformer benchmark "
                                         "on one setup: run `harness bench` for both."]
    return t
