"""The files a decode leaves beside the checkpoints, as Kaldi and the authors' recipes do.

Per test set and method: ``recogs-<set>-<method>.txt`` (reference and
hypothesis of every utterance), ``errs-<set>-<method>.txt`` (the totals, each
utterance's alignment with errors marked ``(ref->hyp)``, and the most frequent
substitutions, deletions and insertions); per test set
``wer-summary-<set>.txt`` (one line per method, best first).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import kaldialign

from harness.atomic import atomic_write_text

from .error_rate import ErrorStats, Unit, error_rate, split_units

EPS = "*"


def write_recogs(path: Path, utt_ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str]) -> Path:
    """``<utt>:\\tref=...`` and ``<utt>:\\thyp=...`` for every utterance, by utterance id."""
    lines = []
    for utt, ref, hyp in sorted(zip(utt_ids, refs, hyps)):
        lines += [f"{utt}:\tref={ref}", f"{utt}:\thyp={hyp}"]
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")


def _aligned(ref: list[str], hyp: list[str]) -> list[tuple[str, str]]:
    return kaldialign.align(ref, hyp, EPS)


def errs_text(utt_ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str], unit: Unit = "word",
              top: int = 20) -> str:
    """The error report of one test set and method (Kaldi ``compute-wer --mode=present`` style)."""
    stats = error_rate(refs, hyps, unit)
    subs: Counter = Counter()
    dels: Counter = Counter()
    ins: Counter = Counter()
    # word -> [correct, errors as reference or hypothesis, times in reference, times in hypothesis]
    per_word: dict[str, list[int]] = {}
    detail = []

    def word(w: str) -> list[int]:
        return per_word.setdefault(w, [0, 0, 0, 0])

    for utt, ref, hyp in sorted(zip(utt_ids, refs, hyps)):
        shown = []
        for r, h in _aligned(split_units(ref, unit), split_units(hyp, unit)):
            if r == h:
                shown.append(r)
                word(r)[0] += 1
                word(r)[2] += 1
                word(r)[3] += 1
                continue
            shown.append(f"({r}->{h})")
            if r == EPS:
                ins[h] += 1
            elif h == EPS:
                dels[r] += 1
            else:
                subs[(r, h)] += 1
            if r != EPS:
                word(r)[1] += 1
                word(r)[2] += 1
            if h != EPS:
                word(h)[1] += 1
                word(h)[3] += 1
        detail.append(f"{utt}:\t{' '.join(shown)}")
    name = "words" if unit == "word" else "characters"
    out = [str(stats),
           f"Errors: {stats.ins} insertions, {stats.dels} deletions, {stats.subs} substitutions, over "
           f"{stats.ref_words} reference {name} ({stats.ref_words - stats.dels - stats.subs} correct)",
           "Sections below: PER-UTT DETAILS, SUBSTITUTIONS, DELETIONS, INSERTIONS, PER-WORD STATS "
           f"(the {top} most frequent of each kind)",
           "", "PER-UTT DETAILS: corr or (ref->hyp)", *detail,
           "", "SUBSTITUTIONS: count ref -> hyp",
           *(f"{n}   {r} -> {h}" for (r, h), n in subs.most_common(top)),
           "", "DELETIONS: count ref", *(f"{n}   {r}" for r, n in dels.most_common(top)),
           "", "INSERTIONS: count hyp", *(f"{n}   {h}" for h, n in ins.most_common(top)),
           "", "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp"]
    ranked = sorted(per_word.items(), key=lambda kv: (-kv[1][1], kv[0]))[:top]
    out += [f"{w}   {c[0]} {c[1]} {c[2]} {c[3]}" for w, c in ranked]
    return "\n".join(out) + "\n"


def write_errs(path: Path, utt_ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str],
               unit: Unit = "word") -> Path:
    return atomic_write_text(Path(path), errs_text(utt_ids, refs, hyps, unit))


def write_wer_summary(path: Path, results: dict[str, ErrorStats], header: str = "") -> Path:
    """``method<TAB>WER`` per method, lowest first (``header``: a comment line on what was decoded)."""
    unit = next(iter(results.values())).unit if results else "word"
    lines = ([f"# {header}"] if header else []) + [f"settings\t{'WER' if unit == 'word' else 'CER'}"]
    lines += [f"{m}\t{st.wer:.2f}" for m, st in sorted(results.items(), key=lambda kv: (kv[1].wer, kv[0]))]
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")
